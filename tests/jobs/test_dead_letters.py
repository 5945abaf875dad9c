"""Poison jobs and the dead-letter stream (issue 10 §3), on real Redis.

An entry whose processing never completes comes back on every claim (a
replica died in it) or every restart of its replica (it crashes the
process), and each delivery raises its count in the group's pending list.
Delivered more than `RTMANAGER_JOBS_MAX_DELIVERIES` times it is not run
again: answered `failure` + `internal_error`, copied to
`RTMANAGER_REDIS_DEAD_LETTER_STREAM`, acknowledged, counted.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import aiodocker
import pytest
from harness import wait_for
from jobs.conftest import RunJobs
from jobs.helpers import REQUESTED_AT_MS, V100, nothing_pending, untraced, wait_results
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.asyncio import Redis
from rig import Rig

from rtm_core.observability import Metrics
from rtm_core.settings import Settings

DEFAULT_MAX_DELIVERIES = 5


def counter(reader: InMemoryMetricReader, name: str) -> dict[tuple, float]:
    data = reader.get_metrics_data()
    return {
        tuple(sorted(p.attributes.items())): p.value
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for p in metric.data.data_points
    }


async def deliver(redis: Redis, stream: str, group: str, entry: str, times: int, how: str) -> None:
    """Deliveries that never completed: each crashed replica claimed the entry from
    the one before (`claimed`), or one replica crashed on it and read it again
    from its own pending entries at each restart (`restarted`)."""
    await redis.xreadgroup(group, "replica-0" if how == "claimed" else "me", {stream: ">"})
    for i in range(1, times):
        if how == "claimed":
            await redis.xclaim(stream, group, f"replica-{i}", 0, [entry])
        else:
            await redis.xreadgroup(group, "me", {stream: "0"})
    (pending,) = await redis.xpending_range(stream, group, min=entry, max=entry, count=1)
    assert pending["times_delivered"] == times


@pytest.mark.parametrize("how", ["claimed", "restarted"])
async def test_a_job_delivered_too_often_is_dead_lettered_once(
    how: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    defaults = make_settings()
    assert defaults.jobs_max_deliveries == DEFAULT_MAX_DELIVERIES
    assert defaults.redis_dead_letter_stream == "runtime:dead_letter"
    dead_stream = f"{defaults.redis_start_jobs_stream}:dead_letter"  # this test's own
    settings = make_settings(jobs_claim_idle="300ms", redis_dead_letter_stream=dead_stream)
    core = make_core(settings)
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    job = {"game_id": game_id, "image_ref": V100, "requested_at_ms": REQUESTED_AT_MS}
    entry = await redis.xadd(stream, job)  # type: ignore[arg-type]
    await deliver(redis, stream, group, entry, DEFAULT_MAX_DELIVERIES, how)
    reader = InMemoryMetricReader()
    metrics = Metrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    assert counter(reader, "rtmanager.jobs_dead_lettered") == {
        (("stream", "start_jobs"),): 0,  # exported at zero from the start
        (("stream", "stop_jobs"),): 0,
    }

    loops = await run_jobs(core, consumer="me" if how == "restarted" else "live", metrics=metrics)
    (result,) = await wait_results(redis, settings, 1)

    delivered = DEFAULT_MAX_DELIVERIES + 1
    reason = f"delivered {delivered} times without completing (RTMANAGER_JOBS_MAX_DELIVERIES=5)"
    assert untraced(result) == {
        "game_id": game_id,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "internal_error",
        "error_message": f"job given up: {reason}; copied to {dead_stream}",
    }
    ((_, letter),) = await redis.xrange(dead_stream)
    own = ["source_stream", "source_id", "deliveries", "dead_letter_reason", "dead_lettered_at_ms"]
    assert list(letter) == [*job, *own]
    assert letter == {
        **job,
        "source_stream": stream,
        "source_id": entry,
        "deliveries": str(delivered),
        "dead_letter_reason": reason,
        "dead_lettered_at_ms": letter["dead_lettered_at_ms"],
    }
    assert re.fullmatch(r"[0-9]{13}", letter["dead_lettered_at_ms"])
    await wait_for(lambda: nothing_pending(redis, settings))
    start_loop = loops[0]
    assert await redis.get(start_loop.state.offset_key) == entry
    assert counter(reader, "rtmanager.jobs_dead_lettered")[(("stream", "start_jobs"),)] == 1
    failed = (("outcome", "failure"), ("stream", "start_jobs"))
    assert counter(reader, "rtmanager.jobs_processed")[failed] == 1
    # Never run again: no engine, no operation.
    assert (
        await docker.containers.list(
            all=True, filters=json.dumps({"label": [f"com.galaxy.game_id={game_id}"]})
        )
        == []
    )
    assert await core.repos.operations(game_id) == []
    # Dead-lettered once: the claim sweeps that follow (every 0.25 s) find nothing.
    await asyncio.sleep(1)
    assert await redis.xlen(dead_stream) == 1
    assert await redis.xlen(settings.redis_job_results_stream) == 1
    await redis.delete(dead_stream)


async def test_a_job_within_the_limit_runs_and_undecodable_ones_keep_their_answer(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    game_id: str,
) -> None:
    dead_stream = f"{make_settings().redis_start_jobs_stream}:dead_letter"
    settings = make_settings(
        jobs_claim_idle="300ms", jobs_max_deliveries=3, redis_dead_letter_stream=dead_stream
    )
    core = make_core(settings)
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    fields = {"game_id": game_id, "image_ref": V100, "requested_at_ms": REQUESTED_AT_MS}
    runs = await redis.xadd(stream, fields)  # type: ignore[arg-type]
    await deliver(redis, stream, group, runs, 2, "claimed")  # the live claim is the 3rd
    malformed = f"{game_id}-malformed"
    refused = await redis.xadd(stream, {"game_id": malformed, "image_ref": V100})
    await deliver(redis, stream, group, refused, 5, "claimed")
    await redis.xadd(stream, {"no": "game"})  # poison: dropped at once, no result

    await run_jobs(core, consumer="live")
    results = {r["game_id"]: r for r in await wait_results(redis, settings, 2, timeout=30)}

    assert (results[game_id]["outcome"], results[game_id]["error_code"]) == ("success", "")
    assert (results[malformed]["outcome"], results[malformed]["error_code"]) == (
        "failure",
        "start_config_invalid",
    )
    await wait_for(lambda: nothing_pending(redis, settings))
    assert await redis.xlen(dead_stream) == 0
    assert await redis.xlen(settings.redis_job_results_stream) == 2
