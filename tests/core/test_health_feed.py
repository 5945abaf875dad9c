"""`HealthEventFeed` on real Redis: the auto-restart loop's view of
`runtime:health_events` through its own consumer group (issue 12)."""

from __future__ import annotations

from redis.asyncio import Redis
from rig import Rig

from rtm_core.adapters.redis.health_feed import HealthEventFeed
from rtm_core.domain.vocabulary import HealthEventType
from rtm_core.domain.wire import HealthEvent


def exited(game_id: str, n: int) -> HealthEvent:
    return HealthEvent(
        game_id=game_id,
        container_id=f"c{n}",
        event_type=HealthEventType.CONTAINER_EXITED,
        occurred_at_ms=n,
        details={"exit_code": 1, "oom": False},
    )


def feed_of(core: Rig) -> HealthEventFeed:
    s = core.settings
    return HealthEventFeed(
        core.redis, stream=s.redis_health_events_stream, group=s.auto_restart_consumer_group
    )


async def test_the_feed_delivers_each_event_until_acknowledged_across_readers(
    core: Rig, redis: Redis, game_id: str
) -> None:
    publish = core.publishers.health_event
    await publish(exited(game_id, 0))  # before the group existed: not acted on
    first = feed_of(core)
    assert await first.read(10) == []
    ids = [await publish(exited(game_id, n)) for n in (1, 2, 3)]
    await redis.xadd(core.settings.redis_health_events_stream, {"game_id": game_id, "x": "y"})

    got = await first.read(10)
    assert [e.entry_id for e in got][:3] == ids
    assert [e.event.container_id for e in got[:3] if e.event] == ["c1", "c2", "c3"]
    assert got[3].event is None and got[3].problem
    await first.ack([ids[0], got[3].entry_id])
    # The same reader is not handed again what it keeps for later.
    assert await first.read(10) == []

    # A new leader (a new reader) is handed what was never acknowledged, once,
    # then new entries.
    second = feed_of(core)
    again = await second.read(10)
    assert [e.entry_id for e in again] == ids[1:]
    newer = await publish(exited(game_id, 4))
    assert [e.entry_id for e in await second.read(10)] == [newer]
    await second.ack([*ids[1:], newer])
    assert [e.entry_id for e in await feed_of(core).read(10)] == []


async def test_the_feed_starts_over_when_redis_lost_its_stream(
    core: Rig, redis: Redis, game_id: str
) -> None:
    feed = feed_of(core)
    await feed.read(10)
    await redis.delete(core.settings.redis_health_events_stream)
    assert await feed.read(10) == []  # group recreated at the (new) end
    entry_id = await core.publishers.health_event(exited(game_id, 9))
    assert [e.entry_id for e in await feed.read(10)] == [entry_id]
