"""Issue 13's REST reads over the fakes: logs (and the follower cap), keyset
paging, the wide view, the snapshot. The real Docker/Redis/PostgreSQL side
is tests/api/test_observe.py; this tier pins the edge's rules fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from rtm_api.streams import Followers
from rtm_core.domain.records import HealthSnapshot, RuntimeRecord
from rtm_core.domain.vocabulary import OpSource
from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes
from unit.helpers import GAME, V100, rest_client

RUNTIMES = "/api/v1/internal/runtimes"


async def _ready() -> str | None:
    return None


@pytest.fixture
def followers() -> Followers:
    return Followers(1)


@pytest.fixture
async def client(
    lifecycle: Lifecycle, fakes: Fakes, followers: Followers
) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_client(lifecycle, fakes, followers=followers) as http:
        yield http


async def _running(lifecycle: Lifecycle, fakes: Fakes) -> str:
    await lifecycle.start(GAME, V100, OpSource.ADMIN_REST)
    record = fakes.record(GAME)
    assert record is not None and record.current_container_id
    return record.current_container_id


async def test_logs_tail_and_a_follow_that_ends_with_the_engine(
    client: httpx.AsyncClient, lifecycle: Lifecycle, fakes: Fakes, followers: Followers
) -> None:
    container = await _running(lifecycle, fakes)
    for n in range(3):
        await fakes.engine.say(container, f"line {n}")
    assert (await client.get(f"{RUNTIMES}/{GAME}/logs")).text == "line 0\nline 1\nline 2\n"
    assert (await client.get(f"{RUNTIMES}/{GAME}/logs?tail=1")).text == "line 2\n"

    async def later() -> None:
        await asyncio.sleep(0.05)
        assert followers.active == 1
        refused = await client.get(f"{RUNTIMES}/{GAME}/logs?follow=true&tail=0")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_followers"
        await fakes.engine.say(container, "after")
        await fakes.engine.halt(container)

    follow, _ = await asyncio.gather(
        client.get(f"{RUNTIMES}/{GAME}/logs?follow=true&tail=0"), later()
    )
    assert (follow.status_code, follow.text) == (200, "after\n")
    assert followers.active == 0


async def test_logs_envelopes(
    client: httpx.AsyncClient, lifecycle: Lifecycle, fakes: Fakes, followers: Followers
) -> None:
    missing = await client.get(f"{RUNTIMES}/{GAME}/logs")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    container = await _running(lifecycle, fakes)
    fakes.engine.unreadable_logs.add(container)
    unreadable = await client.get(f"{RUNTIMES}/{GAME}/logs?follow=true")
    assert (unreadable.status_code, unreadable.json()["error"]["code"]) == (
        501,
        "logs_not_readable",
    )
    assert followers.active == 0  # a refused follow gives its slot back
    fakes.engine.vanish(container)
    gone = await client.get(f"{RUNTIMES}/{GAME}/logs")
    assert gone.status_code == 404 and "no longer exists" in gone.json()["error"]["message"]


async def test_pages_in_creation_order_and_the_plain_list_stays_001s(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    for n in range(7):
        fakes.clock.advance(seconds=1)
        await fakes.repos.save_record(RuntimeRecord(game_id=f"g{6 - n}", status="stopped"))
    plain = (await client.get(RUNTIMES)).json()
    assert list(plain) == ["items"]
    assert [r["game_id"] for r in plain["items"]] == [f"g{n}" for n in range(7)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(RUNTIMES, params=params)).json()
        seen += [r["game_id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"g{6 - n}" for n in range(7)] and pages == 3
    bad = await client.get(RUNTIMES, params={"cursor": "%%%"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")


async def test_wide_view_and_health_snapshot(
    client: httpx.AsyncClient, lifecycle: Lifecycle, fakes: Fakes
) -> None:
    container = await _running(lifecycle, fakes)
    plain = (await client.get(f"{RUNTIMES}/{GAME}")).json()
    wide = (await client.get(f"{RUNTIMES}/{GAME}?view=wide")).json()
    assert wide == {**plain, "usage": None}
    listed = (await client.get(RUNTIMES, params={"view": "wide", "limit": 10})).json()
    assert listed == {"items": [wide], "next_cursor": None}

    observed = fakes.clock() + timedelta(seconds=5)
    await fakes.repos.upsert_snapshots(
        [
            HealthSnapshot(
                game_id=GAME,
                status="probe_failed",
                source="probe",
                observed_at=observed,
                container_id=container,
                details={"consecutive_failures": 3},
            )
        ]
    )
    health = (await client.get(f"{RUNTIMES}/{GAME}/health")).json()
    assert health == {
        "game_id": GAME,
        "container_id": container,
        "status": "probe_failed",
        "source": "probe",
        "observed_at": "2030-01-01T00:00:05Z",
        "details": {"consecutive_failures": 3},
    }
    unknown = await client.get(f"{RUNTIMES}/nobody/health")
    assert unknown.status_code == 404
