"""Engine usage as arithmetic (issue 13): CPU from two readings, which sample
the REST wide view may show."""

from __future__ import annotations

from datetime import UTC, datetime

from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.usage import CpuTimes, EngineUsage, UsageReading, cpu_percent, sample, usage_of

AT = datetime(2030, 1, 1, tzinfo=UTC)


def reading(engine_ns: int, system_ns: int, *, pre: CpuTimes | None = None) -> UsageReading:
    return UsageReading(
        cpu=CpuTimes(engine_ns, system_ns, online_cpus=4),
        memory_bytes=10,
        memory_limit_bytes=100,
        restart_count=1,
        pre_cpu=pre,
    )


def test_cpu_percent_is_the_engines_share_of_the_host_times_its_cpus() -> None:
    before = CpuTimes(engine_ns=1_000, system_ns=10_000, online_cpus=4)
    # The host's CPUs ran 8000 ns (summed) meanwhile; the engine 1000 ns of it:
    # an eighth of four CPUs is half of one.
    assert cpu_percent(CpuTimes(2_000, 18_000, 4), before) == 50.0
    assert cpu_percent(CpuTimes(2_000, 18_000, 4), None) is None
    assert cpu_percent(CpuTimes(2_000, 10_000, 4), before) is None  # no host time passed
    assert cpu_percent(CpuTimes(500, 18_000, 4), before) is None  # counters reset


def test_a_first_reading_uses_the_daemons_own_previous_sample() -> None:
    pre = CpuTimes(1_000, 10_000, 4)
    first = sample("g1", "c1", reading(2_000, 18_000, pre=pre), None, AT)
    assert first == EngineUsage("g1", "c1", 50.0, 10, 100, 1, AT)
    assert sample("g1", "c1", reading(2_000, 18_000), None, AT) is None  # one-shot, unseen
    later = sample("g1", "c1", reading(4_000, 26_000), reading(2_000, 18_000), AT)
    assert later is not None and later.cpu_percent == 100.0


def test_the_wide_view_shows_only_the_current_engines_sample() -> None:
    usage = EngineUsage("g1", "c1", 1.0, 10, 100, 0, AT)
    running = RuntimeRecord(game_id="g1", status="running", current_container_id="c1")
    assert usage_of(running, usage) is usage
    assert usage_of(running, None) is None
    restarted = RuntimeRecord(game_id="g1", status="running", current_container_id="c2")
    assert usage_of(restarted, usage) is None
    stopped = RuntimeRecord(game_id="g1", status="stopped", current_container_id="c1")
    assert usage_of(stopped, usage) is None
