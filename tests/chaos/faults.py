"""The faults, each injected from the host as an outage would happen, each
timed until the stack is whole again, with what was seen on the way.

A crash is a SIGKILL of the RTM process from the host (the only child of the
container's init), never `docker kill`: Docker records that as a manual stop
and its restart policy would not apply (tests/integration/test_sigkill.py).
Compose's `restart: unless-stopped` brings each killed container back; the
drill only waits for it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from integration.compose import START_JOBS, STOP_JOBS
from integration.test_sigkill import _rtm_pid

from chaos.load import Clock, Load
from chaos.plan import FAULTS, Options
from chaos.stackctl import TRANSIENT, Stack, pending_rows

DOCKER_PIDFILE = Path("/var/run/docker.pid")
#: A killed or restarted service back to healthy (restart, boot, health checks).
RECOVERY = 180.0
#: dockerd stops every container first (the RTM ones get their 40 s grace).
DOCKERD_STOP = 180.0
DOCKERD_START = 60.0


@dataclass
class Injection:
    name: str
    injected: float = 0.0
    #: End of a lasting fault: unpaused, daemon started again, restart returned.
    released: float | None = None
    #: Every service healthy again (all replicas).
    whole: float | None = None
    observations: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return FAULTS[self.name]

    @property
    def end(self) -> float:
        return self.released if self.released is not None else self.injected

    def saw(self, text: str) -> None:
        self.observations.append(text)


@dataclass
class Chaos:
    stack: Stack
    load: Load
    clock: Clock
    options: Options
    dev_dir: Path
    say: Callable[[str], None]


async def until(
    check: Callable[[], Awaitable[Any]], timeout: float, every: float = 0.25
) -> float | None:
    """Seconds until `check()` is truthy (errors count as not yet), None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if await check():
                return time.monotonic() - started
        except TRANSIENT:
            pass
        await asyncio.sleep(every)
    return None


def _s(value: float | None) -> str:
    return "not within the bound" if value is None else f"{value:.1f} s"


async def inject(name: str, ctx: Chaos) -> Injection:
    """Inject one fault; a fault that could not be injected (or measured) is said so
    in its observations, and the drill goes on."""
    injection = Injection(name, injected=ctx.clock.now())
    try:
        await HANDLERS[name](ctx, injection)
    except Exception as exc:
        injection.saw(f"INJECTION FAILED: {type(exc).__name__}: {exc}")
    if injection.whole is None:
        took = await ctx.stack.wait_whole(ctx.options.replicas, RECOVERY)
        injection.whole = None if took is None else ctx.clock.now()
    if injection.whole is None:
        injection.saw(f"stack NOT whole after {RECOVERY:.0f} s: {await ctx.stack.unhealthy(3)}")
    return injection


# ---------------------------------------------------------------- helpers


async def _kill(ctx: Chaos, injection: Injection, infos: list[dict[str, Any]]) -> None:
    """SIGKILL the RTM process of each container at once; wait for compose to
    restart every one of them (restart count up) and the stack to be whole."""
    before = {info["Id"]: int(info["RestartCount"]) for info in infos}
    pids = [_rtm_pid(int(info["State"]["Pid"])) for info in infos]
    injection.injected = ctx.clock.now()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    service = infos[0]["Config"]["Labels"]["com.docker.compose.service"]

    async def restarted() -> bool:
        now = {i["Id"]: int(i["RestartCount"]) for i in await ctx.stack.replicas(service)}
        return all(now.get(cid, 0) > count for cid, count in before.items())

    took = await until(restarted, RECOVERY)
    injection.saw(f"compose restarted {len(infos)} container(s) after {_s(took)}")
    whole = await ctx.stack.wait_whole(ctx.options.replicas, RECOVERY)
    if whole is not None:
        injection.whole = ctx.clock.now()
        injection.saw(f"healthy again {injection.whole - injection.injected:.1f} s after the kill")


async def _pending_ids(stack: Stack, consumers: set[str] | None = None) -> set[str]:
    """Entry ids pending in RTM's groups (of these consumers, or of anyone)."""
    ids: set[str] = set()
    for stream in (START_JOBS, STOP_JOBS):
        rows = await stack.redis(partial(pending_rows, stream=stream))
        ids |= {
            f"{stream}/{row['message_id']}"
            for row in rows
            if consumers is None or str(row["consumer"]) in consumers
        }
    return ids


async def _answered(
    ctx: Chaos, injection: Injection, held: set[str], since: str, t0: float
) -> None:
    """Time from `t0` (the fault, on the drill's clock) until none of `held` is pending."""
    if not held:
        injection.saw(f"no job entry was pending at the {since}")
        return
    took = await _when(ctx, t0, lambda: _none_left(ctx.stack, held), RECOVERY)
    injection.saw(
        f"the {_entries(len(held))} pending at the {since} acknowledged {_s(took)} after it"
    )


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


async def _when(
    ctx: Chaos, t0: float, check: Callable[[], Awaitable[Any]], timeout: float
) -> float | None:
    """Seconds from `t0` (drill clock) until `check()` holds, None after `timeout`."""
    took = await until(check, timeout, 0.2)
    return None if took is None else ctx.clock.now() - t0


async def _none_left(stack: Stack, held: set[str]) -> bool:
    return not (held & await _pending_ids(stack))


async def _first_result_after(ctx: Chaos, injection: Injection, moment: float, what: str) -> None:
    async def check() -> bool:
        return any(e.t > moment for e in ctx.load.results.events)

    took = await _when(ctx, moment, check, RECOVERY)
    injection.saw(f"first job result {_s(took)} after the {what}")


# ---------------------------------------------------------------- the faults


async def kill_api(ctx: Chaos, injection: Injection) -> None:
    await _kill(ctx, injection, await ctx.stack.replicas("rtm-api"))


async def _kill_leader(ctx: Chaos, injection: Injection, service: str, role: str) -> None:
    token = await ctx.stack.leader_token(role)
    kill = asyncio.create_task(_kill(ctx, injection, await ctx.stack.replicas(service)))
    await asyncio.sleep(0)

    async def new_leader() -> bool:
        now = await ctx.stack.leader_token(role)
        return now is not None and now != token

    took = await until(new_leader, RECOVERY, 0.25)
    await kill
    injection.saw(f"{role} leader lease taken again after {_s(took)} (previous holder killed)")


async def kill_watcher(ctx: Chaos, injection: Injection) -> None:
    await _kill_leader(ctx, injection, "rtm-watcher", "watcher")


async def kill_reconciler(ctx: Chaos, injection: Injection) -> None:
    await _kill_leader(ctx, injection, "rtm-reconciler", "reconciler")


async def kill_jobs_one(ctx: Chaos, injection: Injection) -> None:
    infos = await ctx.stack.replicas("rtm-jobs")
    pending = await ctx.stack.consumer_pending()
    victim = max(infos, key=lambda i: pending.get(i["Config"]["Hostname"], 0))
    consumer = victim["Config"]["Hostname"]
    held = await _pending_ids(ctx.stack, {consumer})
    kill = asyncio.create_task(_kill(ctx, injection, [victim]))
    await asyncio.sleep(0)
    injection.saw(f"victim {victim['Name'].lstrip('/')} (consumer {consumer})")
    await _answered(ctx, injection, held, "kill", injection.injected)
    await kill


async def kill_jobs_all(ctx: Chaos, injection: Injection) -> None:
    infos = await ctx.stack.replicas("rtm-jobs")
    held = await _pending_ids(ctx.stack)
    kill = asyncio.create_task(_kill(ctx, injection, infos))
    await asyncio.sleep(0)
    await asyncio.gather(
        _first_result_after(ctx, injection, injection.injected, "kill"),
        _answered(ctx, injection, held, "kill", injection.injected),
    )
    await kill


async def _restart_dependency(ctx: Chaos, injection: Injection, service: str) -> None:
    (info,) = await ctx.stack.replicas(service)
    container = ctx.stack.docker.containers.container(info["Id"])
    injection.injected = ctx.clock.now()
    await container.restart(timeout=30)
    injection.released = ctx.clock.now()
    injection.saw(f"docker restart took {injection.released - injection.injected:.1f} s")
    await _first_result_after(ctx, injection, injection.released, "restart")


async def restart_redis(ctx: Chaos, injection: Injection) -> None:
    await _restart_dependency(ctx, injection, "redis")


async def restart_postgres(ctx: Chaos, injection: Injection) -> None:
    await _restart_dependency(ctx, injection, "postgres")


async def pause_jobs(ctx: Chaos, injection: Injection) -> None:
    """Every replica frozen past the claim idle and the game lease: on unpause each
    finds its peers' entries claimable and its own leases gone (fencing)."""
    settings = ctx.stack.settings
    hold = max(settings.claim_idle, settings.lease_ttl) + 5.0
    infos = await ctx.stack.replicas("rtm-jobs")
    containers = [ctx.stack.docker.containers.container(i["Id"]) for i in infos]
    held = await _pending_ids(ctx.stack)
    injection.injected = ctx.clock.now()
    try:
        await asyncio.gather(*(_pause(c, injection) for c in containers))
        await asyncio.sleep(hold)
    finally:
        await asyncio.gather(*(c.unpause() for c in containers), return_exceptions=True)
    injection.released = ctx.clock.now()
    injection.saw(
        f"{len(containers)} replicas paused {injection.released - injection.injected:.1f} s "
        f"(claim idle {settings.claim_idle:.0f} s, game lease {settings.lease_ttl:.0f} s)"
    )
    held |= await _pending_ids(ctx.stack)
    await asyncio.gather(
        _first_result_after(ctx, injection, injection.released, "unpause"),
        _answered(ctx, injection, held, "pause or the unpause", injection.released),
    )


async def _pause(container: Any, injection: Injection) -> None:
    """`docker pause`, again when the cgroup freezer gives up (it may, on a busy
    host: "unable to freeze")."""
    for attempt in range(5):
        try:
            await container.pause()
            return
        except TRANSIENT as exc:
            injection.saw(f"pause attempt {attempt + 1} of {container.id[:12]} failed: {exc}")
            await asyncio.sleep(1.0)
    raise RuntimeError(f"could not pause {container.id[:12]}")


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def docker_restart(ctx: Chaos, injection: Injection) -> None:
    """What an operator does without systemd: SIGTERM dockerd, wait for it to exit,
    start it again with the same command line in its own session (as
    scripts/ensure-deps.sh starts it; output appended to RTM_DEV_DIR/dockerd.log).
    Whatever happens in between, a daemon that went away is started again."""
    pid = int(DOCKER_PIDFILE.read_text().strip())
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    stack = ctx.stack
    engines_before = await _running_engines(ctx)
    injection.saw(f"dockerd pid {pid}: `{' '.join(argv)}`; {len(engines_before)} engines running")
    family = {pid, *_children(pid)}  # its containerd (and docker-proxy) go with it
    injection.injected = ctx.clock.now()
    os.kill(pid, signal.SIGTERM)
    try:

        async def gone() -> bool:
            return not any(_alive(p) for p in family)

        took = await until(gone, DOCKERD_STOP, 0.2)
        injection.saw(f"dockerd and its children exited after {_s(took)}")
    finally:
        # Whatever happened (the drill cancelled, too), the host gets its daemon back:
        # blocking on purpose, this must finish even in a cancelled task.
        deadline = time.monotonic() + DOCKERD_STOP
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(pid) and not _docker_answers():
            start_dockerd(argv, ctx.dev_dir / "dockerd.log")
            injection.released = ctx.clock.now()
    if injection.released is None:
        injection.saw("dockerd did not exit (or something else restarted it); not started")
        return

    async def answers() -> bool:
        await stack.docker.version()
        return True

    took = await until(answers, DOCKERD_START, 0.2)
    injection.saw(f"dockerd answers {_s(took)} after its start")
    whole = await stack.wait_whole(ctx.options.replicas, RECOVERY + 60)
    if whole is not None:
        injection.whole = ctx.clock.now()
        injection.saw(
            f"compose services healthy {injection.whole - injection.released:.1f} s "
            "after the start (restart policy)"
        )
    after = await _running_engines(ctx)
    killed = engines_before - after
    injection.saw(
        f"{len(killed)} of the {len(engines_before)} engines running before stayed exited "
        f"(no restart policy); {len(after)} engines running now"
    )


def _docker_answers() -> bool:
    try:
        done = subprocess.run(
            ["docker", "info"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def start_dockerd(argv: list[str], log: Path) -> None:
    """dockerd in a session of its own (a signal to the drill's process group must not
    reach it), its output appended to `log`; it outlives the drill."""
    with log.open("ab") as out:
        subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def _running_engines(ctx: Chaos) -> set[str]:
    labels = ["com.galaxy.owner=rtmanager", f"com.galaxy.stack={ctx.stack.settings.stack}"]
    found = await ctx.stack.docker.containers.list(filters={"label": labels})
    games = set(ctx.load.games)
    return {c.id for c in found if c["Labels"].get("com.galaxy.game_id") in games}


HANDLERS: dict[str, Callable[[Chaos, Injection], Awaitable[None]]] = {
    "kill-api": kill_api,
    "kill-watcher": kill_watcher,
    "kill-reconciler": kill_reconciler,
    "kill-jobs-one": kill_jobs_one,
    "kill-jobs-all": kill_jobs_all,
    "restart-redis": restart_redis,
    "restart-postgres": restart_postgres,
    "pause-jobs": pause_jobs,
    "docker-restart": docker_restart,
}
assert set(HANDLERS) == set(FAULTS)
