"""SIGKILL of each RTM container while Lobby's start/stop jobs flow.

Twenty games, each driven as Lobby drives one: a start job, and once its
first result is out, a stop job. The games go in four waves; while each wave
is in flight one RTM process is killed with SIGKILL (no shutdown, no lease
release, no offset write) — rtm-jobs first, then rtm-reconciler, rtm-watcher
and rtm-api — and compose's restart policy (`unless-stopped`) must bring its
container back to healthy.

The signal goes to the RTM process itself, from the host (`kill -9 <pid>`,
as the OOM killer or a crash would end it), not through `docker kill -s
KILL`: Docker records `docker kill` as a manual stop and then never applies
the restart policy (verified here: RestartCount stays 0, the container stays
exited). Needs root on the Docker host, like the rest of this suite.

What at-least-once delivery (SPEC §7) promises, and what is asserted:

- every job gets **at least one** result; a job re-processed after a kill
  (result published, process killed before XACK) gets another one, and that
  repeat is `success` + `replay_no_op`, never a second effect. So each game
  has >= 2 results, all `success`, each `""` or `replay_no_op`, all naming
  the game's one container;
- the operation log shows each job **took effect exactly once**: one effective
  start (or, if rtm-jobs died between creating the container and committing
  the record, the reconciler's `reconcile_adopt` of that container) and one
  effective stop, every other start/stop row a `replay_no_op`, no failure;
- every entry is acknowledged in the end (consumer group: nothing pending,
  no lag) and each game ends exactly as Lobby left it: record `stopped`, one
  container, exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import wait_for
from integration.compose import START_JOBS, STOP_JOBS, ComposeStack

pytestmark = pytest.mark.integration

GAMES = 20
#: Killed in this order, one per wave of GAMES / 4 games.
VICTIMS = ("rtm-jobs", "rtm-reconciler", "rtm-watcher", "rtm-api")
#: A killed container back to healthy: restart, boot, first healthcheck (10 s).
RECOVERY_TIMEOUT = 120.0
#: A game's first result; covers a rtm-jobs restart and a lease left by the
#: killed process (RTMANAGER_GAME_LEASE_TTL_SECONDS, 20 s in `make integration`).
RESULT_TIMEOUT = 150.0
DRAIN_TIMEOUT = 150.0
REPLAY = "replay_no_op"


async def _restart_count(compose: ComposeStack, service: str) -> int:
    return int((await compose.container(service))["RestartCount"])


def _rtm_pid(init_pid: int) -> int:
    """The RTM process of a container: the only child of its init (`init: true`)."""
    children = Path(f"/proc/{init_pid}/task/{init_pid}/children").read_text().split()
    assert len(children) == 1, f"expected one child of pid {init_pid}, got {children}"
    return int(children[0])


async def _kill_and_wait_back(compose: ComposeStack, service: str) -> None:
    info = await compose.container(service)
    before = int(info["RestartCount"])
    os.kill(_rtm_pid(int(info["State"]["Pid"])), signal.SIGKILL)

    async def back() -> bool:
        return await _restart_count(compose, service) > before and await compose.healthy(service)

    try:
        await wait_for(back, timeout=RECOVERY_TIMEOUT, interval=0.5)
    except AssertionError:
        info = await compose.container(service)
        raise AssertionError(
            f"{service} not restarted to healthy within {RECOVERY_TIMEOUT}s after SIGKILL: "
            f"restarts {before} -> {info['RestartCount']}, state {info['State']}"
        ) from None


async def _lobby(compose: ComposeStack, game: str) -> None:
    """Lobby's side of one game: start, and once the start is answered, stop."""
    await compose.start_job(game)
    await compose.wait_results(game, 1, timeout=RESULT_TIMEOUT)
    await compose.stop_job(game, "finished")


async def _rest_reader(compose: ComposeStack, games: list[str], stop: asyncio.Event) -> int:
    """GM reading records throughout; a dead rtm-api just fails those reads."""
    answered = 0
    while not stop.is_set():
        for game in games:
            with contextlib.suppress(httpx.HTTPError):
                await compose.record(game)
                answered += 1
        await asyncio.sleep(0.2)
    return answered


def _effective(ops: list[dict[str, Any]], kinds: set[str]) -> list[dict[str, Any]]:
    return [o for o in ops if o["op_kind"] in kinds and o["error_code"] != REPLAY]


async def _check_game(compose: ComposeStack, game: str) -> int:
    """Asserts one game's end state; returns how many results it got beyond one per job."""
    results = await compose.results(game)
    record = await compose.record(game)
    engines = await compose.engines(game)
    ops = await compose.operations(game)
    where = f"{game}: results={results} ops={[(o['op_kind'], o['error_code']) for o in ops]}"

    assert record is not None and record["status"] == "stopped", where
    assert len(engines) == 1, where
    (engine,) = engines
    assert engine["Id"] == record["current_container_id"], where
    assert engine["State"]["Status"] == "exited", where

    assert len(results) >= 2, where
    assert {r["outcome"] for r in results} == {"success"}, where
    assert {r["error_code"] for r in results} <= {"", REPLAY}, where
    assert {r["container_id"] for r in results} == {engine["Id"]}, where

    assert {o["outcome"] for o in ops} == {"success"}, where
    assert {o["op_kind"] for o in ops} <= {"start", "stop", "reconcile_adopt"}, where
    assert len(_effective(ops, {"start", "reconcile_adopt"})) == 1, where
    assert len(_effective(ops, {"stop"})) == 1, where
    return len(results) - 2


async def test_sigkill_of_each_rtm_container_while_jobs_flow(compose: ComposeStack) -> None:
    games = [compose.new_game("kill") for _ in range(GAMES)]
    waves = [games[i :: len(VICTIMS)] for i in range(len(VICTIMS))]
    restarts = {svc: await _restart_count(compose, svc) for svc in VICTIMS}
    reading = asyncio.Event()
    reader = asyncio.create_task(_rest_reader(compose, games, reading))
    lobby: list[asyncio.Task[None]] = []
    try:
        for wave, victim in zip(waves, VICTIMS, strict=True):
            lobby += [asyncio.create_task(_lobby(compose, game)) for game in wave]

            # Kill while this wave is under way: its first answer is out, the rest in flight.
            async def wave_started(wave: list[str] = wave) -> bool:
                answered = await compose.entries("runtime:job_results", set(wave))
                return any(answered.values())

            await wait_for(wave_started, timeout=RESULT_TIMEOUT, interval=0.05)
            await _kill_and_wait_back(compose, victim)
        await asyncio.gather(*lobby)
    finally:
        reading.set()
        for task in lobby:
            task.cancel()
        await asyncio.gather(*lobby, return_exceptions=True)
        answered = await reader

    # Every entry processed and acknowledged, every game stopped.
    async def drained() -> bool:
        if not await compose.drained():
            return False
        records = [await compose.record(g) for g in games]
        return all(r is not None and r["status"] == "stopped" for r in records)

    try:
        await wait_for(drained, timeout=DRAIN_TIMEOUT, interval=0.5)
    except AssertionError:
        backlog = {s: await compose.group_backlog(s) for s in (START_JOBS, STOP_JOBS)}
        states = Counter([((await compose.record(g)) or {}).get("status") for g in games])
        raise AssertionError(f"not drained: backlog {backlog}, records {states}") from None

    repeats = [await _check_game(compose, game) for game in games]
    for service in VICTIMS:
        assert await _restart_count(compose, service) == restarts[service] + 1, service
        assert await compose.healthy(service), service
    assert answered > 0
    print(f"sigkill: {GAMES} games, {sum(repeats)} repeated results (replay_no_op)")
