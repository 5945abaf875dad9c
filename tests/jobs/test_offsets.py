"""A finished job is one Redis step: result out, entry acknowledged, offset moved."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from rtm_core.domain.wire import DeadLetter, JobResult
from rtm_jobs.offsets import DeadLetterCopy, GroupState


async def test_complete_publishes_acks_and_advances_together(redis: Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stream, results, offset_key = f"{prefix}:jobs", f"{prefix}:results", f"{prefix}:offset"
    state = GroupState(redis, stream=stream, group="g", consumer="c", offset_key=offset_key)
    await state.ensure_group()
    first = await redis.xadd(stream, {"game_id": "g1"})
    second = await redis.xadd(stream, {"game_id": "g2"})
    delivered = await redis.xreadgroup("g", "c", {stream: ">"})
    assert [entry_id for entry_id, _ in delivered[0][1]] == [first, second]

    # The second job finishes first: its result is out, but the offset may
    # not pass the first, still pending, entry.
    fields = {
        "game_id": "g2",
        "outcome": "success",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "",
        "error_message": "",
    }
    await state.complete(second, results_stream=results, result=JobResult(**fields), maxlen=1000)
    # The result as given (issue 13's `traceparent` is the consumer's to stamp).
    assert [f for _, f in await redis.xrange(results)] == [fields | {"traceparent": ""}]
    assert (await redis.xpending(stream, "g"))["pending"] == 1
    assert await redis.get(offset_key) is None

    first_result = JobResult(**fields | {"game_id": "g1"})
    await state.complete(first, results_stream=results, result=first_result, maxlen=0)
    assert [f["game_id"] for _, f in await redis.xrange(results)] == ["g2", "g1"]
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    assert await redis.get(offset_key) == second
    await redis.delete(stream, results, offset_key)


async def test_an_entry_is_answered_once_however_often_its_step_runs(redis: Redis) -> None:
    """A result step retried after a lost reply, or run by a peer that claimed the
    job too, finds the entry acknowledged and publishes nothing."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stream, results, offset_key = f"{prefix}:jobs", f"{prefix}:results", f"{prefix}:offset"
    state = GroupState(redis, stream=stream, group="g", consumer="c", offset_key=offset_key)
    await state.ensure_group()
    entry = await redis.xadd(stream, {"game_id": "g1"})
    await redis.xreadgroup("g", "c", {stream: ">"})
    result = JobResult(
        game_id="g1",
        outcome="success",
        container_id="",
        engine_endpoint="",
        error_code="",
        error_message="",
    )

    first = await state.complete(entry, results_stream=results, result=result, maxlen=0)
    again = await state.complete(entry, results_stream=results, result=result, maxlen=0)

    assert (first.published, first.offset) == (True, entry)
    assert (again.published, again.offset) == (False, entry)
    assert await redis.xlen(results) == 1
    await redis.delete(stream, results, offset_key)


async def test_a_dead_letter_goes_out_with_the_result_in_the_same_step(redis: Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    stream, results, dead = f"{prefix}:jobs", f"{prefix}:results", f"{prefix}:dead"
    offset_key = f"{prefix}:offset"
    state = GroupState(redis, stream=stream, group="g", consumer="c", offset_key=offset_key)
    await state.ensure_group()
    job = {"game_id": "g1", "reason": "cancelled", "requested_at_ms": "1"}
    entry = await redis.xadd(stream, job)
    await redis.xreadgroup("g", "c", {stream: ">"})
    assert await state.deliveries([entry]) == {entry: 1}
    await redis.xclaim(stream, "g", "c", 0, [entry])  # a claim is one more delivery
    assert await state.deliveries([entry]) == {entry: 2}
    result = JobResult(
        game_id="g1",
        outcome="failure",
        container_id="",
        engine_endpoint="",
        error_code="internal_error",
        error_message="given up",
    )
    letter = DeadLetter(
        source_stream=stream,
        source_id=entry,
        deliveries=2,
        dead_letter_reason="delivered 2 times",
        dead_lettered_at_ms=5,
    )
    copy = DeadLetterCopy(dead, letter.entry({k.encode(): v.encode() for k, v in job.items()}))

    done = await state.complete(
        entry, results_stream=results, result=result, maxlen=1000, dead_letter=copy
    )

    assert done.published
    assert [f for _, f in await redis.xrange(results)] == [result.fields()]
    ((_, copied),) = await redis.xrange(dead)
    assert list(copied.items()) == [
        ("game_id", "g1"),
        ("reason", "cancelled"),
        ("requested_at_ms", "1"),
        ("source_stream", stream),
        ("source_id", entry),
        ("deliveries", "2"),
        ("dead_letter_reason", "delivered 2 times"),
        ("dead_lettered_at_ms", "5"),
    ]
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    assert await redis.get(offset_key) == entry
    await redis.delete(stream, results, dead, offset_key)
