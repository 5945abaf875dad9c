"""Background loops: one shape for all of them, and their liveness.

A loop is a `run(stop)` coroutine that returns when `stop` is set. Periodic
loops also offer `run_once()`, which tests call directly. Every completed
iteration is a heartbeat; `/readyz` fails when a loop has missed a few.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from contextlib import suppress
from dataclasses import dataclass

from rtm_core.observability import Metrics

log = logging.getLogger(__name__)

#: A loop is wedged once it has missed this many of its intervals.
STALE_AFTER_INTERVALS = 3
#: Pause after a failed iteration, so a broken dependency is not hammered.
ERROR_BACKOFF_SECONDS = 1.0


@dataclass
class _Beat:
    max_age: float
    last: float


class LoopRegistry:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._beats: dict[str, _Beat] = {}
        # Ages are computed when metrics are collected, not only when /readyz runs.
        metrics.loop_age.refresh_with(self.refresh_gauges)

    def register(self, name: str, interval: float, first_delay: float = 0.0) -> None:
        # A fresh loop gets one full allowance (after any first delay) before it is wedged.
        self._beats[name] = _Beat(
            max_age=interval * STALE_AFTER_INTERVALS, last=time.monotonic() + first_delay
        )
        self._metrics.loop_age.set(0.0, worker=name)

    def unregister(self, name: str) -> None:
        """A stopped loop (a standby after losing the lease) stops exporting its age."""
        self._beats.pop(name, None)
        self._metrics.loop_age.discard(worker=name)

    def beat(self, name: str) -> None:
        if (beat := self._beats.get(name)) is not None:
            beat.last = time.monotonic()
        self._metrics.loop_iterations.add(1, {"worker": name})

    def refresh_gauges(self) -> None:
        now = time.monotonic()
        for name, beat in list(self._beats.items()):
            self._metrics.loop_age.set(round(max(now - beat.last, 0.0), 3), worker=name)

    def stale(self) -> list[str]:
        self.refresh_gauges()
        now = time.monotonic()
        return [n for n, b in self._beats.items() if now - b.last > b.max_age]


async def sleep_until(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` or until `stop`; True when stopping."""
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


class PeriodicLoop(ABC):
    """Run `run_once` every `interval` seconds until stopped."""

    name: str
    interval: float
    #: Seconds to wait before the first iteration (e.g. right after a boot pass).
    first_run_delay: float = 0.0
    #: The loop counts as wedged after missing this many seconds' worth of
    #: intervals (None: `interval`). For a loop that ticks often but whose
    #: iteration may legitimately take longer than a few ticks.
    liveness_interval: float | None = None

    def __init__(self, registry: LoopRegistry) -> None:
        self._registry = registry

    @abstractmethod
    async def run_once(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None:
        self._registry.register(
            self.name, self.liveness_interval or self.interval, self.first_run_delay
        )
        log.info("worker started", extra={"worker": self.name, "interval_s": self.interval})
        try:
            if self.first_run_delay and await sleep_until(stop, self.first_run_delay):
                return
            while not stop.is_set():
                try:
                    await self.run_once()
                    self._registry.beat(self.name)
                except Exception:
                    log.exception("worker iteration failed", extra={"worker": self.name})
                    if await sleep_until(stop, ERROR_BACKOFF_SECONDS):
                        break
                    continue
                if await sleep_until(stop, self.interval):
                    break
        finally:
            self._registry.unregister(self.name)
            log.info("worker stopped", extra={"worker": self.name})
