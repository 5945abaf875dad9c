"""A finished job is one Redis step: result out, entry acknowledged, offset moved."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from rtm_core.domain.wire import JobResult
from rtm_jobs.offsets import GroupState


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
    assert [f for _, f in await redis.xrange(results)] == [fields]
    assert (await redis.xpending(stream, "g"))["pending"] == 1
    assert await redis.get(offset_key) is None

    first_result = JobResult(**fields | {"game_id": "g1"})
    await state.complete(first, results_stream=results, result=first_result, maxlen=0)
    assert [f["game_id"] for _, f in await redis.xrange(results)] == ["g2", "g1"]
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    assert await redis.get(offset_key) == second
    await redis.delete(stream, results, offset_key)
