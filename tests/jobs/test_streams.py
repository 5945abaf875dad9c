"""The Lobby door in process: `001`'s stream entries in, the documented result
entries out, against real PostgreSQL, Redis and Docker.

Every job is written the way Lobby writes it (a plain XADD of exactly the
`001` fields) and every assertion reads what Lobby or an operator would:
the `runtime:job_results` entry, the container, the row, XPENDING, the
offset keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import aiodocker
import pytest
from harness import stream_entries, wait_for
from jobs.conftest import RunJobs
from jobs.helpers import (
    REQUESTED_AT_MS,
    RESULT_FIELDS,
    V100,
    V101,
    hold_lease,
    nothing_pending,
    pending_count,
    start_job,
    stop_job,
    untraced,
    wait_results,
)
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings


def endpoint(game_id: str) -> str:
    return f"http://galaxy-game-{game_id}:8080"


async def container_of(docker: aiodocker.Docker, game_id: str) -> dict:
    return (await docker.containers.get(f"galaxy-game-{game_id}"))._container


async def our_containers(docker: aiodocker.Docker, game_id: str) -> list:
    return await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.galaxy.game_id={game_id}"]})
    )


async def test_start_job_of_001_gets_the_success_envelope(
    core: Rig, run_jobs: RunJobs, redis: Redis, docker: aiodocker.Docker, game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    # redis-cli XADD runtime:start_jobs '*' game_id … image_ref … requested_at_ms 1714081234567
    await start_job(redis, settings, game_id, V100)

    (result,) = await wait_results(redis, settings, 1)
    container = await container_of(docker, game_id)
    assert list(result) == RESULT_FIELDS
    assert untraced(result) == {
        "game_id": game_id,
        "outcome": "success",
        "container_id": container["Id"],
        "engine_endpoint": endpoint(game_id),
        "error_code": "",
        "error_message": "",
    }
    assert container["State"]["Running"]
    assert container["Config"]["Labels"]["com.galaxy.image_ref"] == V100
    (row,) = await core.repos.operations(game_id)
    assert (row.op_kind, row.op_source, row.outcome) == ("start", "lobby_stream", "success")
    (event,) = await stream_entries(redis, settings.redis_health_events_stream)
    assert (event["event_type"], event["container_id"]) == ("container_started", container["Id"])

    await wait_for(lambda: nothing_pending(redis, settings))
    group = settings.jobs_consumer_group
    for stream in (settings.redis_start_jobs_stream, settings.redis_stop_jobs_stream):
        # Refreshed from XINFO GROUPS by the loops.
        await wait_for(lambda s=stream: core.metrics.stream_pending.get(stream=s, group=group) == 0)
        assert core.metrics.stream_lag.get(stream=stream, group=group) is not None


async def test_start_failure_gets_the_failure_envelope(
    core: Rig, run_jobs: RunJobs, redis: Redis, game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    await start_job(redis, settings, game_id, "galaxy/game:1.4.0")  # absent, pull policy never

    (result,) = await wait_results(redis, settings, 1)
    assert untraced(result) == {
        "game_id": game_id,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "image_pull_failed",
        "error_message": "image galaxy/game:1.4.0 is not present and pull policy is never",
    }
    (intent,) = await stream_entries(redis, settings.notification_intents_stream)
    assert json.loads(intent["envelope"])["type"] == "runtime.image_pull_failed"


async def test_a_start_job_written_twice_is_a_replay(
    core: Rig, run_jobs: RunJobs, redis: Redis, docker: aiodocker.Docker, game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    await start_job(redis, settings, game_id)
    await start_job(redis, settings, game_id)

    first, again = await wait_results(redis, settings, 2)
    assert first["error_code"] == "" and first["outcome"] == "success"
    assert untraced(again) == {
        "game_id": game_id,
        "outcome": "success",
        "container_id": first["container_id"],
        "engine_endpoint": endpoint(game_id),
        "error_code": "replay_no_op",
        "error_message": "",
    }
    assert len(await our_containers(docker, game_id)) == 1


async def test_stop_jobs_get_results_success_replay_and_not_found(
    core: Rig, run_jobs: RunJobs, redis: Redis, docker: aiodocker.Docker, game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    await start_job(redis, settings, game_id)
    (started,) = await wait_results(redis, settings, 1)

    # redis-cli XADD runtime:stop_jobs '*' game_id … reason 'cancelled' requested_at_ms …
    await stop_job(redis, settings, game_id, "cancelled")
    _, stopped = await wait_results(redis, settings, 2)
    assert untraced(stopped) == {
        "game_id": game_id,
        "outcome": "success",
        "container_id": started["container_id"],
        "engine_endpoint": endpoint(game_id),
        "error_code": "",
        "error_message": "",
    }
    container = await container_of(docker, game_id)
    assert not container["State"]["Running"]  # stopped, kept for inspection and cleanup
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "stopped"

    await stop_job(redis, settings, game_id, "finished")
    unknown = f"{game_id}-unknown"
    await stop_job(redis, settings, unknown, "timeout")
    # Two games: their results may come in either order.
    last_two = {r["game_id"]: r for r in (await wait_results(redis, settings, 4))[2:]}
    replay, missing = last_two[game_id], last_two[unknown]
    assert untraced(replay) == {**untraced(stopped), "error_code": "replay_no_op"}
    assert untraced(missing) == {
        "game_id": unknown,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "not_found",
        "error_message": f"no runtime for game {unknown}",
    }
    rows = await core.repos.operations(game_id)
    assert {(r.op_kind, r.op_source) for r in rows} == {
        ("start", "lobby_stream"),
        ("stop", "lobby_stream"),
    }
    assert len(rows) == 3


async def test_poison_entries_are_answered_or_dropped_and_never_block(
    core: Rig,
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = core.settings
    start, stop = settings.redis_start_jobs_stream, settings.redis_stop_jobs_stream
    g = {n: f"{game_id}-{n}" for n in ("late", "nomillis", "noimage", "blob", "good", "bytes")}
    await run_jobs(core)
    ms = REQUESTED_AT_MS
    entries: list[tuple[str, dict[str, str | bytes]]] = [
        (start, {"image_ref": V100, "requested_at_ms": ms}),  # no game_id: no result
        (start, {"game_id": g["late"], "image_ref": V100, "requested_at_ms": "yesterday"}),
        (start, {"game_id": g["nomillis"], "image_ref": V100}),
        (start, {"game_id": "../escape", "image_ref": V100, "requested_at_ms": ms}),
        (start, {"game_id": g["noimage"], "requested_at_ms": ms}),
        (start, {"payload": '{"game_id": "x", not json'}),  # bad JSON blob: no result
        (start, {"bytes": b"\xff\xfe\x00"}),  # not even text: no result
        (start, {"game_id": g["bytes"], "image_ref": b"\xff\xfe", "requested_at_ms": ms}),
        (stop, {"game_id": g["good"], "reason": "because", "requested_at_ms": ms}),
        (stop, {"game_id": g["good"]}),
        # Good ones behind the poison, one of them written as a JSON blob.
        (
            start,
            {"job": json.dumps({"game_id": g["blob"], "image_ref": V100, "requested_at_ms": 1})},
        ),
        (start, {"game_id": g["good"], "image_ref": V100, "requested_at_ms": ms}),
    ]
    for stream, fields in entries:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]

    results = await wait_results(redis, settings, 9)
    codes = sorted((r["game_id"], r["outcome"], r["error_code"]) for r in results)
    assert codes == sorted(
        [
            (g["late"], "failure", "start_config_invalid"),
            (g["nomillis"], "failure", "start_config_invalid"),
            ("../escape", "failure", "start_config_invalid"),
            (g["noimage"], "failure", "start_config_invalid"),
            (g["bytes"], "failure", "start_config_invalid"),
            (g["good"], "failure", "invalid_request"),
            (g["good"], "failure", "invalid_request"),
            (g["blob"], "success", ""),
            (g["good"], "success", ""),
        ]
    )
    for result in results:
        assert list(result) == RESULT_FIELDS
        if result["outcome"] == "failure":
            assert result["container_id"] == result["engine_endpoint"] == ""
            assert result["error_message"]
    assert len(await our_containers(docker, g["good"])) == 1
    assert len(await our_containers(docker, g["blob"])) == 1
    assert await core.repos.get_record("../escape") is None  # nothing written for it
    await wait_for(lambda: nothing_pending(redis, settings))
    dropped = [r for r in caplog.records if r.message.startswith("malformed job entry")]
    assert len(dropped) == 3


async def test_games_run_side_by_side_and_each_game_in_stream_order(
    core: Rig, run_jobs: RunJobs, redis: Redis, game_id: str
) -> None:
    settings = core.settings
    slow, quick = f"{game_id}-slow", f"{game_id}-quick"
    lease = await hold_lease(redis, slow)
    await run_jobs(core)
    await start_job(redis, settings, slow, V100)
    await start_job(redis, settings, slow, V101)  # must run second: a conflict then
    await start_job(redis, settings, quick, V100)

    # The quick game is not held up by the slow one waiting for its lease.
    (first,) = await wait_results(redis, settings, 1)
    assert (first["game_id"], first["outcome"]) == (quick, "success")
    group = settings.jobs_consumer_group
    assert await pending_count(redis, settings.redis_start_jobs_stream, group) == 2

    await redis.delete(lease)
    _, one, two = await wait_results(redis, settings, 3)
    assert (one["game_id"], one["outcome"], one["error_code"]) == (slow, "success", "")
    assert (two["game_id"], two["outcome"], two["error_code"]) == (slow, "failure", "conflict")
    record = await core.repos.get_record(slow)
    assert record is not None and record.current_image_ref == V100


async def test_a_job_waits_for_a_busy_lease_at_most_one_ttl(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    game_id: str,
) -> None:
    core = make_core(make_settings(game_lease_ttl_seconds=1))
    await hold_lease(redis, game_id)
    await run_jobs(core)
    await start_job(redis, core.settings, game_id)
    (result,) = await wait_results(redis, core.settings, 1)
    assert (result["outcome"], result["error_code"]) == ("failure", "operation_in_progress")


async def test_offset_keys_hold_the_last_fully_processed_id(
    core: Rig, run_jobs: RunJobs, redis: Redis, game_id: str
) -> None:
    settings = core.settings
    start_key, stop_key = "rtmanager:stream_offsets:startjobs", "rtmanager:stream_offsets:stopjobs"
    await run_jobs(core, binding_offsets=True)
    first = await start_job(redis, settings, f"{game_id}-a")
    await wait_results(redis, settings, 1)
    assert await wait_for(lambda: redis.get(start_key)) == first

    # A job still running holds the offset back, whatever finished after it.
    slow = f"{game_id}-slow"
    lease = await hold_lease(redis, slow)
    await start_job(redis, settings, slow)
    await start_job(redis, settings, f"{game_id}-b")
    last = await start_job(redis, settings, f"{game_id}-c")
    await wait_results(redis, settings, 3)
    assert await redis.get(start_key) == first

    await redis.delete(lease)
    await wait_results(redis, settings, 4)
    await wait_for(lambda: redis.get(start_key))
    assert await wait_for(lambda: _equals(redis, start_key, last)) == last

    stopped = await stop_job(redis, settings, f"{game_id}-a")
    await wait_results(redis, settings, 5)
    assert await wait_for(lambda: _equals(redis, stop_key, stopped)) == stopped


async def _equals(redis: Redis, key: str, value: str) -> str | None:
    current = await redis.get(key)
    return current if current == value else None


async def test_an_entry_left_by_a_dead_replica_is_claimed_and_replayed(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    core = make_core(make_settings(jobs_claim_idle="300ms"))
    settings = core.settings
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    await start_job(redis, settings, game_id)
    # A replica read the entry and started the engine, then died before answering.
    await redis.xreadgroup(group, "dead-replica", {stream: ">"}, count=1)
    done = await core.lifecycle.start(game_id, V100, OpSource.LOBBY_STREAM)
    assert done.record is not None

    await run_jobs(core, consumer="live-replica")
    (result,) = await wait_results(redis, settings, 1)
    assert untraced(result) == {
        "game_id": game_id,
        "outcome": "success",
        "container_id": done.record.current_container_id,
        "engine_endpoint": endpoint(game_id),
        "error_code": "replay_no_op",
        "error_message": "",
    }
    assert len(await our_containers(docker, game_id)) == 1
    await wait_for(lambda: nothing_pending(redis, settings))


async def test_a_lost_group_is_recreated_and_consumption_goes_on(
    core: Rig, run_jobs: RunJobs, redis: Redis, game_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = core.settings
    caplog.set_level(logging.INFO)
    await run_jobs(core)
    await start_job(redis, settings, f"{game_id}-a")
    await wait_results(redis, settings, 1)
    await redis.xgroup_destroy(settings.redis_start_jobs_stream, settings.jobs_consumer_group)

    await wait_for(
        lambda: any(r.message == "consumer group missing; recreating it" for r in caplog.records)
    )
    await start_job(redis, settings, f"{game_id}-b")
    _, second = await wait_results(redis, settings, 2)
    assert (second["game_id"], second["outcome"]) == (f"{game_id}-b", "success")


async def test_a_job_running_longer_than_the_claim_idle_is_not_claimed_by_a_peer(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    core = make_core(make_settings(jobs_claim_idle="300ms"))
    settings = core.settings
    lease = await hold_lease(redis, game_id)
    await run_jobs(core, consumer="replica-a")
    await run_jobs(core, consumer="replica-b")
    entry = await start_job(redis, settings, game_id)
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group

    async def delivered() -> list:
        return await redis.xpending_range(stream, group, min=entry, max=entry, count=1)

    (first,) = await wait_for(delivered)
    # The job waits for the lease four claim-idle periods; its replica keeps it.
    await asyncio.sleep(1.2)
    (still,) = await delivered()
    assert (still["consumer"], still["times_delivered"]) == (first["consumer"], 1)

    await redis.delete(lease)
    (result,) = await wait_results(redis, settings, 1)
    assert result["outcome"] == "success"
    await wait_for(lambda: nothing_pending(redis, settings))
    assert await redis.xlen(settings.redis_job_results_stream) == 1
    assert not [r for r in caplog.records if r.message == "claimed idle entries"]


async def test_a_replica_restarted_under_its_name_runs_its_own_pending_entries_first(
    core: Rig, run_jobs: RunJobs, redis: Redis, game_id: str
) -> None:
    settings = core.settings  # claim idle 60 s: only the own-entries read can pick it up
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    await start_job(redis, settings, game_id)
    # The previous life of "replica-x" read the entry and was killed before answering.
    await redis.xreadgroup(group, "replica-x", {stream: ">"}, count=1)

    await run_jobs(core, consumer="replica-x")
    (result,) = await wait_results(redis, settings, 1)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    await wait_for(lambda: nothing_pending(redis, settings))
