"""The usage sampler (issue 13) against real Docker and PostgreSQL: one
`run_once` is one interval; then a real `rtm-watcher` with
RTMANAGER_ENGINE_USAGE=on, scraped as Prometheus would."""

from __future__ import annotations

import signal
from collections.abc import Callable

import httpx
from harness import wait_for
from processes import RtmProcess, free_port, settings_env
from prometheus_client.parser import text_string_to_metric_families
from rig import Rig
from watcher.helpers import ENGINE, start_engine, watcher_deps

from rtm_core.domain.vocabulary import OpSource, StopReason
from rtm_core.settings import Settings, Switch, parse_size
from rtm_watcher.usage_sampler import UsageSampler


def gauge(core: Rig, game_id: str) -> tuple[float | None, float | None]:
    metrics = core.metrics
    return (
        metrics.engine_cpu_percent.get(game_id=game_id),
        metrics.engine_memory_bytes.get(game_id=game_id),
    )


async def test_a_running_engine_gets_its_usage_persisted_and_exported(
    core: Rig, game_id: str
) -> None:
    container_id = await start_engine(core, game_id)
    sampler = UsageSampler(watcher_deps(core))
    await sampler.run_once()

    usage = (await core.repos.usages([game_id]))[game_id]
    assert usage.container_id == container_id
    assert usage.memory_bytes > 0
    assert usage.memory_limit_bytes == parse_size(core.settings.default_memory)
    assert usage.cpu_percent >= 0.0
    assert usage.restart_count == 0
    cpu, memory = gauge(core, game_id)
    assert memory == usage.memory_bytes and cpu == usage.cpu_percent

    await sampler.run_once()  # CPU from this pass's read and the last one
    again = (await core.repos.usages([game_id]))[game_id]
    assert again.sampled_at > usage.sampled_at and again.memory_bytes > 0

    await core.lifecycle.stop(game_id, StopReason.ADMIN_REQUEST.value, OpSource.ADMIN_REST)
    await sampler.run_once()
    assert await core.repos.usages([game_id]) == {}
    assert gauge(core, game_id) == (None, None)


async def test_without_the_per_game_label_the_gauges_are_fleet_totals(
    make_core: Callable[[Settings], Rig], settings: Settings, game_id: str
) -> None:
    core = make_core(settings.model_copy(update={"engine_usage_per_game_label": Switch.OFF}))
    await start_engine(core, f"{game_id}-a")
    await start_engine(core, f"{game_id}-b")
    await UsageSampler(watcher_deps(core)).run_once()

    stored = await core.repos.usages([f"{game_id}-a", f"{game_id}-b"])
    assert len(stored) == 2
    assert core.metrics.engine_memory_bytes.get(game_id=f"{game_id}-a") is None
    total = core.metrics.engine_memory_bytes.get()
    assert total == sum(u.memory_bytes for u in stored.values()) > 0


async def test_rtm_watcher_samples_engines_when_switched_on(
    core: Rig, settings: Settings, game_id: str
) -> None:
    await start_engine(core, game_id, ENGINE)
    metrics_port = free_port()
    env = settings_env(settings, ops_http_addr=f"127.0.0.1:{free_port()}", engine_usage="on")
    env.update(
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
    )
    watcher = RtmProcess("rtm-watcher", env)
    try:
        await watcher.start()
        await watcher.wait_for_message("worker started", worker="usage_sampler", timeout=60)

        async def scraped_memory() -> float | None:
            async with httpx.AsyncClient(trust_env=False) as http:
                text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if (
                        s.name == "rtmanager_engine_memory_bytes"
                        and s.labels.get("game_id") == game_id
                    ):
                        return s.value if s.value > 0 else None
            return None

        memory = await wait_for(scraped_memory, timeout=30)
        usage = await wait_for(lambda: core.repos.usages([game_id]), timeout=30)
        assert memory > 0 and usage[game_id].memory_bytes > 0
        assert await watcher.signal(signal.SIGTERM) == 0
    finally:
        await watcher.close()
