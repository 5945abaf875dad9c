"""The drill from start to verdict: stack check, waves of games with one fault
each, convergence, the report, the last line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration.compose import JOB_RESULTS, START_JOBS, STOP_JOBS

from chaos import report
from chaos.faults import Chaos, Injection, inject
from chaos.load import Clock, Event, Load, Results
from chaos.plan import GamePlan, Options, plan_games
from chaos.stackctl import TRANSIENT, Stack, close, connect
from chaos.tally import Engine, GameView, Job, Result, Verdict, last_line, verdict

REPO = Path(__file__).resolve().parents[2]
#: How long a wave may take to be in flight before its fault goes in anyway.
WAVE_IN_FLIGHT = 60.0


@dataclass
class DrillRecord:
    """Everything the report says, gathered by the run."""

    options: Options
    started: float  # epoch
    clock: Clock
    machine: dict[str, str]
    stack: dict[str, str]
    plans: list[GamePlan]
    injections: list[Injection] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    verdict: Verdict | None = None
    converged_in: float | None = None
    last_fault_end: float = 0.0
    finished: float = 0.0
    logs: dict[str, list[tuple[float, str, str]]] = field(default_factory=dict)
    dead_letters: int = 0
    #: Games of this run whose lease is still held after the drill (key → ms to live).
    leases_held: dict[str, int] = field(default_factory=dict)
    rest_finals: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    line: str = ""


def say(clock: Clock, text: str) -> None:
    print(f"[chaos t+{clock.now():6.1f}s] {text}", file=sys.stderr, flush=True)


async def run(options: Options) -> int:
    if os.geteuid() != 0:
        print("chaos: needs root on the Docker host (host signals, dockerd)", file=sys.stderr)
        return 2
    stack = await connect()
    clock = Clock()
    try:
        return await _run(stack, clock, options)
    finally:
        await close(stack)


async def _run(stack: Stack, clock: Clock, options: Options) -> int:

    def talk(text: str) -> None:
        say(clock, text)

    wrong = await stack.unhealthy(options.replicas)
    if wrong and await stack.wait_whole(options.replicas, 180) is None:
        print(
            f"chaos: the stack is not whole ({', '.join(wrong)}): `make chaos` brings it up "
            f"with rtm-jobs scaled to {options.replicas}",
            file=sys.stderr,
        )
        return 2
    compose = stack.compose
    since = {s: await stack.last_id(s) for s in (JOB_RESULTS, START_JOBS, STOP_JOBS)}
    game_ids = [compose.new_game("chaos") for _ in range(options.games)]
    waves = max(1, len(options.faults))
    plans = plan_games(game_ids, waves, options)
    record = DrillRecord(
        options, time.time(), clock, await _machine(stack), _stack_facts(stack, options), plans
    )
    talk(
        f"{options.games} games in {waves} wave(s), faults: {', '.join(options.faults) or 'none'}"
        f"; claim idle {stack.settings.claim_idle:.0f} s, lease {stack.settings.lease_ttl:.0f} s"
    )

    results = Results(stack, clock, set(game_ids), since[JOB_RESULTS])
    stop_following = asyncio.Event()
    follower = asyncio.create_task(results.follow(stop_following))
    load = Load(stack, clock, options, results)
    load.start_reader()
    ctx = Chaos(stack, load, clock, options, _dev_dir(), talk)
    try:
        await _waves(record, ctx, waves)
        record.last_fault_end = (
            max(i.end for i in record.injections) if record.injections else clock.now()
        )
        talk("faults done; waiting for the state to be right")
        v, record.converged_in = await _converge(stack, load, results, record, since)
        record.verdict = v
    finally:
        await load.cancel()
        await load.stop_reader()
        stop_following.set()
        await follower
    record.finished = time.time()
    record.events = sorted(load.events + results.events, key=lambda e: e.t)
    record.rest_finals = {g: log.rest_final for g, log in load.games.items()}
    record.machine["load average at the end"] = _loadavg()
    await _gather_logs(stack, record)
    record.dead_letters = await _dead_letters(stack, set(game_ids))
    record.leases_held = await _leases_held(stack)
    record.line = last_line(v, record.converged_in, options.converge_bound)
    options.report.parent.mkdir(parents=True, exist_ok=True)
    options.report.write_text(report.render(record))
    talk(f"report: {options.report}")
    if not options.keep_games:
        talk("removing this run's games (stop + cleanup through REST)")
        with contextlib.suppress(*TRANSIENT, AssertionError):
            await compose.remove_games()
    print(record.line, flush=True)
    return 0 if v.passed and record.converged_in is not None else 1


async def _waves(record: DrillRecord, ctx: Chaos, waves: int) -> None:
    """Launch each wave, and once it is in flight inject its fault. An error of the
    drill's own here is noted and ends the faults; the verdict is still taken."""
    options, load, stack = record.options, ctx.load, ctx.stack
    try:
        for wave in range(waves):
            members = [p for p in record.plans if p.wave == wave]
            load.launch(members)
            if not options.faults:
                continue
            name = options.faults[wave]
            busy = await _in_flight(stack, load, members)
            ctx.say(f"wave {wave + 1}: {len(members)} games launched; injecting {name} ({busy})")
            injection = await inject(name, ctx)
            injection.observations.insert(0, f"injected with {busy}")
            record.injections.append(injection)
            for line in injection.observations:
                ctx.say(f"  {name}: {line}")
            await asyncio.sleep(options.gap)
    except Exception as exc:  # the drill's own failure: say it, keep the evidence
        record.notes.append(f"the fault sequence stopped early: {type(exc).__name__}: {exc}")
        ctx.say(record.notes[-1])


async def _in_flight(stack: Stack, load: Load, members: list[GamePlan]) -> str:
    """Wait until stream jobs are being worked on (entries pending in RTM's groups), or
    else until the wave has an answer, so that the fault lands on work in progress."""
    started = time.monotonic()
    while time.monotonic() - started < WAVE_IN_FLIGHT / 2:
        with contextlib.suppress(*TRANSIENT):
            pending, _lag = await stack.backlog()
            if n := sum(pending.values()):
                return f"{n} job entr{'y' if n == 1 else 'ies'} pending"
        await asyncio.sleep(0.1)
    answered = await load.answered_any(members, WAVE_IN_FLIGHT / 2)
    return "the wave answering" if answered else "the wave not answering yet"


# ---------------------------------------------------------------- convergence


async def _converge(
    stack: Stack, load: Load, results: Results, record: DrillRecord, since: dict[str, str]
) -> tuple[Verdict, float | None]:
    bound = record.options.converge_bound
    clock = record.clock
    deadline = record.last_fault_end + bound
    last: Verdict | None = None
    while True:
        try:
            last = await snapshot(stack, load, results, since)
        except (*TRANSIENT, AssertionError) as exc:
            say(clock, f"snapshot failed ({type(exc).__name__}: {exc}); again")
        else:
            if last.right:
                return last, clock.now() - record.last_fault_end
        if clock.now() > deadline:
            break
        await asyncio.sleep(1.0)
    await load.cancel()
    for _ in range(10):  # the stack may still be coming back: one more honest look
        try:
            return await snapshot(stack, load, results, since), None
        except (*TRANSIENT, AssertionError):
            await asyncio.sleep(3)
    assert last is not None, "the stack never answered a snapshot"
    return last, None


async def snapshot(stack: Stack, load: Load, results: Results, since: dict[str, str]) -> Verdict:
    games = set(load.games)

    async def read(stream: str) -> list[tuple[str, dict[str, str]]]:
        async def call(r: Any) -> list[tuple[str, dict[str, str]]]:
            return list(await r.xrange(stream, min=f"({since[stream]}", max="+"))

        return await stack.redis(call, timeout=15)

    jobs = [
        Job(entry_id, kind, fields["game_id"])
        for stream, kind in ((START_JOBS, "start"), (STOP_JOBS, "stop"))
        for entry_id, fields in await read(stream)
        if fields.get("game_id") in games
    ]
    seen = {
        entry_id: Result.of(entry_id, fields)
        for entry_id, fields in await read(JOB_RESULTS)
        if fields.get("game_id") in games
    }
    for got in results.by_game.values():  # trimmed meanwhile? the follower kept them
        seen.update({r.entry_id: r for r in got})
    pending, lag = await stack.backlog()
    views = await _views(stack, load)
    return verdict(
        jobs, list(seen.values()), views, pending, lag, flows_unfinished=len(load.unfinished())
    )


async def _views(stack: Stack, load: Load) -> list[GameView]:
    response = await stack.compose.api.get("/api/v1/internal/runtimes", timeout=15)
    response.raise_for_status()
    records = {r["game_id"]: r for r in response.json()["items"] if r["game_id"] in load.games}
    labels = ["com.galaxy.owner=rtmanager", f"com.galaxy.stack={stack.settings.stack}"]
    engines: dict[str, list[Engine]] = defaultdict(list)
    for c in await stack.docker.containers.list(all=True, filters={"label": labels}):
        game = c["Labels"].get("com.galaxy.game_id")
        if game in load.games:
            engines[game].append(Engine(c.id, c["State"] == "running", str(c["State"])))
    return [
        GameView(game, log.last_command, tuple(engines[game]), records.get(game))
        for game, log in load.games.items()
    ]


# ---------------------------------------------------------------- facts


async def _gather_logs(stack: Stack, record: DrillRecord) -> None:
    for service in ("rtm-jobs", "rtm-api", "rtm-watcher", "rtm-reconciler"):
        try:
            record.logs[service] = await stack.log_messages(service, record.started - 1)
        except TRANSIENT as exc:
            record.notes.append(f"logs of {service} unreadable: {exc}")


async def _dead_letters(stack: Stack, games: set[str]) -> int:
    try:
        entries = await stack.redis(lambda r: r.xrange("runtime:dead_letter"), timeout=15)
    except TRANSIENT:
        return -1
    return sum(1 for _id, fields in entries if fields.get("game_id") in games)


async def _leases_held(stack: Stack) -> dict[str, int]:
    """Game leases of this run still held: after the drill nothing should hold one."""
    pattern = f"rtmanager:game_lease:it-{stack.compose.run_id}-*"

    async def read(r: Any) -> dict[str, int]:
        return {str(key): int(await r.pttl(key)) async for key in r.scan_iter(match=pattern)}

    try:
        return await stack.redis(read, timeout=15)
    except TRANSIENT:
        return {}


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


async def _machine(stack: Stack) -> dict[str, str]:
    mem = "?"
    with contextlib.suppress(OSError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    version: dict[str, Any] = {}
    with contextlib.suppress(*TRANSIENT):
        version = await stack.docker.version()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    image = "?"
    with contextlib.suppress(*TRANSIENT, KeyError, ValueError):
        info = await stack.compose.container("rtm-api")
        image = f"{info['Config']['Image']} ({info['Image'][7:19]})"
    return {
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "load average at the start": _loadavg(),
        "docker": f"{version.get('Version', '?')} (API {version.get('ApiVersion', '?')})",
        "RTM image": image,
        "git HEAD": _git("rev-parse", "--short", "HEAD")
        + (f" + {len(dirty.splitlines())} uncommitted file(s) in the tree" if dirty else ""),
    }


def _stack_facts(stack: Stack, options: Options) -> dict[str, str]:
    s = stack.settings
    return {
        "stack label": s.stack,
        "rtm-jobs replicas": str(options.replicas),
        "claim idle (RTMANAGER_JOBS_CLAIM_IDLE)": f"{s.claim_idle:g} s",
        "game lease (RTMANAGER_GAME_LEASE_TTL_SECONDS)": f"{s.lease_ttl:g} s",
        "reconcile interval": f"{s.reconcile_interval:g} s",
        "job deadline (RTMANAGER_JOBS_DEADLINE)": f"{s.job_deadline:g} s",
        "max deliveries (RTMANAGER_JOBS_MAX_DELIVERIES)": str(s.max_deliveries),
    }


def _dev_dir() -> Path:
    return Path(os.environ.get("RTM_DEV_DIR") or REPO / ".rtm-dev")
