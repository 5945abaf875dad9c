"""The Docker daemon is not the engine: what the watcher knows of the daemon.

A daemon restart is not a crash of every engine (issue 10 §4). What a
restart looks like from here (dockerd 20.10, measured):

- Without live-restore, `kill -TERM` of dockerd first stops accepting new
  API connections, then sends every running engine its stop signal (a
  `kill` event), the engines die (`die` events, still delivered on the open
  events stream, and inspects over an already open connection still answer),
  and only then does the events stream end. The engines stay exited when the
  daemon comes back (restart policy `no`).
- With live-restore the engines keep running; only the stream ends, and
  nothing is announced when the daemon is back.

The rule: an engine the daemon stopped is reported once, by the events
listener, from its real state: `container_exited` {exit_code, oom} for a
non-zero exit (as its `die` event, or by the catch-up pass once the daemon
answers again; a claim per container makes it one), then the reconciler
marks the record `stopped` (`reconcile_observed_exited`). The inspect and
probe workers add nothing for such a death: no `inspect_unhealthy` for its
state, no `probe_failed` for its silence. An engine that survived (live
restore) yields nothing at all. Deaths the daemon did not cause keep all
three views (runbook "Engine container died").

The listener keeps this one object per process (`WatcherDeps.daemon`) and
the two workers ask it before reporting:

- *settled*: false from the start of a leader term, and from the moment the
  daemon is lost, until the listener's catch-up pass has run against it.
- *outage*: from the daemon's loss (backdated to the first `kill` seen in
  the shutdown window before it: a shutdown kills before the stream ends)
  until the catch-up. Its start is kept in Redis (`OutageMark`), so a new
  leader carries on an outage the previous one saw begin.
- *daemon stops*: containers that died during an outage, claimed in Redis
  by the catch-up pass (`Claims`, kind `daemon_stop`): the workers never
  report them.
- *kills and deaths seen*: an engine killed through Docker (a shutdown, or
  an operator's `docker stop`) is left alone by the workers for one shutdown
  window, long enough to see whether the daemon goes away; a death the
  listener has not seen yet (its `kill` may still be queued) is left for
  the next cycle, for at most that window.

Without a running listener (tools, tests of one worker) nobody watches the
daemon, and the workers report as the SPEC says, unconditionally.
"""

from __future__ import annotations

import enum
import logging
import time

from rtm_core.domain.engine import ContainerInfo, parse_docker_time
from rtm_watcher.memory import Claims, OutageMark

log = logging.getLogger(__name__)

#: How long a daemon's shutdown may take from its first `kill` to the end of
#: the events stream: dockerd waits up to `--shutdown-timeout` (15 s) for
#: engines that ignore their stop signal, then kills them.
SHUTDOWN_WINDOW_SECONDS = 20.0
#: Docker's clock (FinishedAt) against this process's (the moment of loss).
CLOCK_SLACK_MS = 1000
#: Claim kind of an engine the daemon stopped.
DAEMON_STOP = "daemon_stop"


class Verdict(enum.Enum):
    #: Not the daemon's doing: report as the SPEC says.
    REPORT = "report"
    #: Not known yet: leave it for the next cycle.
    WAIT = "wait"
    #: The daemon stopped it; the listener reported the death.
    QUIET = "quiet"


def _finished_ms(info: ContainerInfo) -> int | None:
    finished = parse_docker_time(info.finished_at)  # None: never finished
    return int(finished.timestamp() * 1000) if finished else None


class DaemonWatch:
    def __init__(
        self,
        claims: Claims,
        mark: OutageMark,
        *,
        window: float = SHUTDOWN_WINDOW_SECONDS,
    ) -> None:
        self._claims = claims
        self._mark = mark
        self._window = window
        self._listening = False
        self._settled = True
        self._outage_began_ms: int | None = None
        #: container id → (monotonic time seen, daemon time of the event in ms)
        self._kills: dict[str, tuple[float, int]] = {}
        #: container id → monotonic time its death was seen
        self._deaths: dict[str, float] = {}

    @property
    def settled(self) -> bool:
        """True once the listener's catch-up has run since the term began or the
        daemon was last lost (always true without a listener)."""
        return self._settled

    @property
    def outage_began_ms(self) -> int | None:
        return self._outage_began_ms

    # the listener ----------------------------------------------------------

    def begin_term(self) -> None:
        """A leader term starts: unsettled until its first catch-up."""
        self._listening, self._settled = True, False
        self._outage_began_ms = None
        self._kills.clear()
        self._deaths.clear()

    async def resume_outage(self) -> None:
        """Carry on an outage the previous leader saw begin and did not see end."""
        if self._outage_began_ms is None:
            self._outage_began_ms = await self._mark.load()

    def end_term(self) -> None:
        self._listening, self._settled = False, True
        self._kills.clear()
        self._deaths.clear()

    def killed(self, container_id: str, time_nano: int) -> None:
        self._prune()
        self._kills[container_id] = (time.monotonic(), time_nano // 1_000_000)

    def died(self, container_id: str) -> None:
        self._prune()
        self._deaths[container_id] = time.monotonic()

    async def lost(self, reason: str) -> None:
        """The daemon went away (stream ended, ping failed). Called on every failed
        reconnect; only the first call of an outage starts it."""
        self._settled = False
        if self._outage_began_ms is not None:
            return
        self._prune()
        kills = [at_ms for _, at_ms in self._kills.values()]
        began = min([*kills, time.time_ns() // 1_000_000])
        self._outage_began_ms = began
        log.warning(
            "docker daemon lost; deaths from now on are the daemon's",
            extra={"error": reason, "outage_began_ms": began, "kills_before": len(kills)},
        )
        try:
            await self._mark.save(began)
        except Exception as exc:  # the outage is still known in this process
            log.warning(
                "docker outage not persisted", extra={"error": str(exc) or type(exc).__name__}
            )

    async def claim_daemon_stop(self, info: ContainerInfo) -> bool:
        """During the catch-up pass: a container that died since the outage began
        is the daemon's doing. True when this call claimed it."""
        self.died(info.id)
        began, finished = self._outage_began_ms, _finished_ms(info)
        if began is None or finished is None or finished < began - CLOCK_SLACK_MS:
            return False
        return await self._claims.claim(DAEMON_STOP, info.id)

    async def caught_up(self) -> int | None:
        """The catch-up pass has run against the daemon: settled again. Returns how
        long the outage lasted (ms), if there was one."""
        began = self._outage_began_ms
        if began is not None:
            await self._mark.clear()
        self._outage_began_ms = None
        self._settled = True
        return None if began is None else max(time.time_ns() // 1_000_000 - began, 0)

    # the workers -----------------------------------------------------------

    async def death_verdict(self, info: ContainerInfo) -> Verdict:
        """May the inspect worker report this not-running container?"""
        if not self._listening:
            return Verdict.REPORT
        if not self._settled or self._killed_lately(info.id):
            return Verdict.WAIT
        if info.id not in self._deaths and self._died_lately(info):
            return Verdict.WAIT  # the listener has not seen it die (nor its kill) yet
        if await self._claims.claimed(DAEMON_STOP, info.id):
            return Verdict.QUIET
        return Verdict.REPORT

    async def failure_counts(self, container_id: str) -> bool:
        """Does a failed probe of this engine count towards `probe_failed`?"""
        if not self._listening:
            return True
        if not self._settled or self._killed_lately(container_id):
            return False
        return not await self._claims.claimed(DAEMON_STOP, container_id)

    # ------------------------------------------------------------------------

    def _killed_lately(self, container_id: str) -> bool:
        seen = self._kills.get(container_id)
        return seen is not None and time.monotonic() - seen[0] < self._window

    def _died_lately(self, info: ContainerInfo) -> bool:
        finished = _finished_ms(info)
        return finished is not None and time.time() * 1000 - finished < self._window * 1000

    def _prune(self) -> None:
        horizon = time.monotonic() - self._window
        for cid in [c for c, (at, _) in self._kills.items() if at < horizon]:
            del self._kills[cid]
        for cid in [c for c, at in self._deaths.items() if at < horizon]:
            del self._deaths[cid]
