"""What an engine uses (issue 13): CPU, memory and restarts, as arithmetic.

A backend answers one `UsageReading` per engine: cumulative CPU times, not a
percentage, because one reading alone says nothing about CPU. The watcher's
usage sampler keeps each engine's last reading and turns two readings into a
percentage (`cpu_percent`), the way `docker stats` does; an engine seen for
the first time is read once with the daemon's own previous sample
(`UsageReading.pre_cpu`), so its first `EngineUsage` has a real figure too.
`EngineUsage` is the latest sample per game that PostgreSQL keeps and the
REST wide view serves.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import RuntimeStatus


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU nanoseconds of the engine and of the whole host, at one instant."""

    engine_ns: int
    system_ns: int
    online_cpus: int


@dataclass(frozen=True)
class UsageReading:
    """One read of an engine's usage, as a backend reports it."""

    cpu: CpuTimes
    #: Memory in use, page cache the kernel can reclaim left out (as `docker stats`).
    memory_bytes: int
    #: The engine's memory limit (the host's memory when it has none).
    memory_limit_bytes: int
    restart_count: int
    #: The daemon's previous CPU sample, when it took one (a slow, non-one-shot read).
    pre_cpu: CpuTimes | None = None


@dataclass(frozen=True)
class EngineUsage:
    """The latest usage sample of a game's engine (`engine_usage`, migration 0006)."""

    game_id: str
    container_id: str
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    restart_count: int
    sampled_at: datetime


def cpu_percent(now: CpuTimes, before: CpuTimes | None) -> float | None:
    """Share of one CPU the engine used between `before` and `now`, in percent
    (200.0 = two CPUs busy); None without a usable earlier sample."""
    if before is None:
        return None
    system = now.system_ns - before.system_ns
    engine = now.engine_ns - before.engine_ns
    if system <= 0 or engine < 0:
        return None  # no host time passed, or the engine restarted (counters reset)
    return round(engine / system * max(now.online_cpus, 1) * 100.0, 3)


def sample(
    game_id: str,
    container_id: str,
    reading: UsageReading,
    previous: UsageReading | None,
    at: datetime,
) -> EngineUsage | None:
    """The engine's sample from this reading and the one before it (else the
    daemon's own previous sample); None when CPU cannot be told yet."""
    percent = cpu_percent(reading.cpu, previous.cpu if previous else None)
    if percent is None:
        percent = cpu_percent(reading.cpu, reading.pre_cpu)
    if percent is None:
        return None
    return EngineUsage(
        game_id=game_id,
        container_id=container_id,
        cpu_percent=percent,
        memory_bytes=reading.memory_bytes,
        memory_limit_bytes=reading.memory_limit_bytes,
        restart_count=reading.restart_count,
        sampled_at=at,
    )


def usage_of(record: RuntimeRecord, usage: EngineUsage | None) -> EngineUsage | None:
    """The sample only while it describes the engine the record runs now: a
    stopped game, or one restarted since, has no current usage."""
    if usage is None or record.status != RuntimeStatus.RUNNING.value:
        return None
    if usage.container_id != record.current_container_id:
        return None
    return usage
