"""Waiting for a freshly launched engine to answer `/healthz` (issue 12).

One rule for both users: a health-gated patch wants
`RTMANAGER_PATCH_GATE_PROBES` consecutive successes within
`RTMANAGER_PATCH_GATE_DEADLINE`; a start that waits for its engine wants the
first success within `RTMANAGER_START_READY_TIMEOUT`. Probes go where the
probe worker's go (`EngineProbe`), one every `interval`; a failure resets the
run of successes. An engine whose container is no longer running fails at
once, naming its exit code, rather than being probed until the deadline.

Times are real (the event loop's monotonic clock), not the lifecycle's
`clock`: a deadline is a wait, not a timestamp that is stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rtm_core.lifecycle.deps import LifecycleDeps
from rtm_core.ports import ProbeOutcome


@dataclass(frozen=True)
class GateResult:
    passed: bool
    #: Probes made, and the longest run of consecutive successes.
    probes: int
    best_run: int
    #: Failed probes in a row at the end (what a `probe_failed` event reports).
    failing: int = 0
    #: The check that failed, in words an operator reads in the error message.
    reason: str = ""
    last: ProbeOutcome | None = None


def _describe(outcome: ProbeOutcome) -> str:
    if outcome.status:
        return f"/healthz answered {outcome.status}"
    return f"/healthz failed: {outcome.error or 'no answer'}"


async def await_healthy(
    deps: LifecycleDeps,
    *,
    endpoint: str,
    container_id: str,
    successes: int,
    deadline: float,
    interval: float,
) -> GateResult:
    """Probe until `successes` in a row (passed) or `deadline` seconds (failed)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + deadline
    probes = run = best = failing = 0
    last: ProbeOutcome | None = None
    while True:
        info = await deps.docker.inspect(container_id)
        if info is None or not info.running:
            code = "gone" if info is None else f"exited with code {info.exit_code}"
            reason = f"the engine container {code}"
            return GateResult(False, probes, best, max(failing, 1), reason, last)
        last = await deps.probe.healthz(endpoint, container_id)
        probes += 1
        run = run + 1 if last.ok else 0
        failing = 0 if last.ok else failing + 1
        best = max(best, run)
        if run >= successes:
            return GateResult(True, probes, best, last=last)
        remaining = ends - loop.time()
        if remaining <= 0:
            wanted = (
                f"{successes} consecutive successful /healthz"
                if successes > 1
                else ("a successful /healthz")
            )
            seen = "last probe: " + ("ok" if last.ok else _describe(last))
            return GateResult(
                False,
                probes,
                best,
                max(failing, 1),
                f"no {wanted} within {deadline:g}s ({probes} probes, {seen})",
                last,
            )
        await asyncio.sleep(min(interval, remaining))
