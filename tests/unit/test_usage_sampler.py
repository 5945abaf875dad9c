"""The usage sampler's pass over fakes (issue 13): which reads it makes, what it
keeps and exports, and what a failed read leaves. tests/watcher runs it against
real engines."""

from __future__ import annotations

from typing import cast

import pytest

from rtm_core.domain.errors import DockerUnavailable
from rtm_core.domain.vocabulary import StopReason
from rtm_core.lifecycle import Lifecycle
from rtm_core.runtime.loops import LoopRegistry
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.daemon import DaemonWatch
from rtm_watcher.memory import WatcherMemory
from rtm_watcher.usage_sampler import UsageSampler
from unit.fakes import Fakes, MakeUnit
from unit.helpers import LOBBY, V100

SECOND = 1_000_000_000


def sampler(fakes: Fakes) -> UsageSampler:
    deps = WatcherDeps(
        settings=fakes.settings,
        engine=fakes.engine,
        records=fakes.repos,
        health=fakes.health,
        exits=fakes.exits,
        leases=fakes.leases,
        metrics=fakes.metrics,
        loops=LoopRegistry(fakes.metrics),
        # The sampler keeps no coordination state in Redis and asks nothing of the daemon watch.
        memory=cast(WatcherMemory, None),
        operation_wait=1.0,
        daemon=cast(DaemonWatch, None),
        usages=fakes.repos,
    )
    return UsageSampler(deps)


async def start(lifecycle: Lifecycle, game_id: str) -> str:
    result = await lifecycle.start(game_id, V100, LOBBY)
    assert result.record is not None and result.record.current_container_id
    return result.record.current_container_id


async def test_cpu_comes_from_two_reads_of_each_engine(lifecycle: Lifecycle, fakes: Fakes) -> None:
    a, b = await start(lifecycle, "g-a"), await start(lifecycle, "g-b")
    fakes.engine.burn(a, SECOND, host_ns=4 * SECOND, memory=64 << 20)
    fakes.engine.burn(b, 0, host_ns=0, memory=32 << 20)
    loop = sampler(fakes)

    await loop.run_once()  # first sight: slow reads, the daemon's own second sample
    assert sorted(fakes.engine.usage_reads) == sorted([(a, False), (b, False)])
    first = fakes.repos.usage
    assert (first["g-a"].memory_bytes, first["g-b"].memory_bytes) == (64 << 20, 32 << 20)

    # Over the next interval g-a keeps one of the host's two CPUs busy.
    fakes.engine.burn(a, 4 * SECOND, host_ns=8 * SECOND, memory=80 << 20)
    fakes.engine.usage_reads.clear()
    await loop.run_once()
    assert sorted(fakes.engine.usage_reads) == sorted([(a, True), (b, True)])
    usage = fakes.repos.usage
    assert (usage["g-a"].cpu_percent, usage["g-b"].cpu_percent) == (100.0, 0.0)
    assert fakes.metrics.engine_cpu_percent.get(game_id="g-a") == 100.0
    assert fakes.metrics.engine_memory_bytes.get(game_id="g-a") == 80 << 20

    await lifecycle.stop("g-b", StopReason.CANCELLED.value, LOBBY)
    await loop.run_once()
    assert set(fakes.repos.usage) == {"g-a"}
    assert fakes.metrics.engine_memory_bytes.get(game_id="g-b") is None


async def test_a_failed_read_keeps_the_last_sample_and_a_dead_daemon_fails_the_pass(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await start(lifecycle, "g-a")
    b = await start(lifecycle, "g-b")
    loop = sampler(fakes)
    await loop.run_once()
    before = dict(fakes.repos.usage)

    # The next read (g-a's: records come in game order) meets a Docker error.
    fakes.engine.burn(b, SECOND, host_ns=4 * SECOND, memory=1 << 20)
    fakes.engine.fail("stats", DockerUnavailable("docker stats: timed out"))
    await loop.run_once()
    assert fakes.repos.usage["g-a"] is before["g-a"]  # kept while g-a is running
    assert fakes.repos.usage["g-b"] is not before["g-b"]  # sampled afresh

    fakes.engine.down = True
    with pytest.raises(DockerUnavailable):
        await loop.run_once()
    assert set(fakes.repos.usage) == {"g-a", "g-b"}


async def test_without_the_per_game_label_one_fleet_total_each(make_unit: MakeUnit) -> None:
    lifecycle, fakes = make_unit(engine_usage_per_game_label="off")
    a, b = await start(lifecycle, "g-a"), await start(lifecycle, "g-b")
    fakes.engine.burn(a, 0, host_ns=SECOND, memory=10)
    fakes.engine.burn(b, 0, host_ns=SECOND, memory=20)
    await sampler(fakes).run_once()
    assert fakes.metrics.engine_memory_bytes.get() == 30.0
    assert fakes.metrics.engine_memory_bytes.get(game_id="g-a") is None
