"""Issue 13's REST reads against the real `rtm-api` process (and in process for
the paging): engine logs, health events, the health snapshot, `view=wide`, and
keyset paging of 10,000 records while games are being added."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
from harness import wait_for
from rig import Rig
from sqlalchemy.dialects.postgresql import insert

from rtm_core.adapters.postgres.tables import RuntimeRecordRow
from rtm_core.domain.records import RuntimeRecord
from rtm_core.settings import Settings

RUNTIMES = "/api/v1/internal/runtimes"
V100 = "galaxy/test-engine:1.0.0"
TOKEN = "observe-token"


async def _started(http: httpx.AsyncClient, game_id: str) -> dict:
    response = await http.post(f"{RUNTIMES}/{game_id}/start", json={"image_ref": V100})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


async def test_logs_tail_follow_to_the_engines_end_and_envelopes(
    spawn_api, make_settings, core: Rig, game_id: str
) -> None:
    api = await spawn_api(make_settings(internal_api_token=TOKEN, api_max_followers="1"))
    await api.process.wait_for_message("internal http listening")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api.base_url, headers=auth, timeout=60) as http:
        record = await _started(http, game_id)

        async def listening() -> bool:
            response = await http.get(f"{RUNTIMES}/{game_id}/logs")
            return "listening on :8080" in response.text

        await wait_for(listening, timeout=30, interval=0.3)
        one = await http.get(f"{RUNTIMES}/{game_id}/logs", params={"tail": 1})
        assert one.headers["content-type"] == "text/plain; charset=utf-8"
        assert one.text.count("\n") == 1

        async with http.stream(
            "GET", f"{RUNTIMES}/{game_id}/logs", params={"follow": "true"}
        ) as follow:
            assert follow.status_code == 200
            lines = follow.aiter_lines()
            assert "listening on :8080" in await anext(lines)
            # One follower is the cap here: the next one is refused before streaming.
            _envelope(
                await http.get(f"{RUNTIMES}/{game_id}/logs?follow=true"), 429, "too_many_followers"
            )
            (Path(record["state_path"]) / "exit_code").write_text("0\n")
            rest = [line async for line in lines]  # ends: the engine stopped
        assert rest == ["engine[1.0.0]: exiting with code 0"]

        _envelope(await http.get(f"{RUNTIMES}/no-such-game/logs"), 404, "not_found")
        _envelope(await http.get(f"{RUNTIMES}/{game_id}/logs?tail=-1"), 400, "invalid_request")
        _envelope(await http.get(f"{RUNTIMES}/{game_id}/logs?since=soon"), 400, "invalid_request")
        bare = httpx.AsyncClient(base_url=api.base_url)
        async with bare:
            _envelope(await bare.get(f"{RUNTIMES}/{game_id}/logs"), 401, "unauthorized")
        # Followers were given back: a follow of a stopped engine ends at once.
        done = await http.get(f"{RUNTIMES}/{game_id}/logs", params={"follow": "true"})
        assert done.status_code == 200 and "exiting with code 0" in done.text


async def test_a_log_driver_that_cannot_be_read_back_is_a_501(
    spawn_api, make_settings, core: Rig, game_id: str
) -> None:
    api = await spawn_api(make_settings(docker_log_driver="none"))
    await api.process.wait_for_message("internal http listening")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
        await _started(http, game_id)
        response = await http.get(f"{RUNTIMES}/{game_id}/logs")
        _envelope(response, 501, "logs_not_readable")
        assert "cannot be read back" in response.json()["error"]["message"]


async def test_events_recent_and_followed_as_server_sent_events(
    spawn_api, make_settings, core: Rig, game_id: str
) -> None:
    api = await spawn_api(make_settings(events_follow_max_duration="3s"))
    await api.process.wait_for_message("internal http listening")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
        first = await _started(http, game_id)
        recent = (await http.get(f"{RUNTIMES}/{game_id}/events")).json()["items"]
        assert [(e["event_type"], e["container_id"]) for e in recent] == [
            ("container_started", first["current_container_id"])
        ]
        following = asyncio.create_task(_follow(http, game_id, None))
        restarted = await http.post(f"{RUNTIMES}/{game_id}/restart")
        new_container = restarted.json()["current_container_id"]
        streams = [await following]  # the recent event, then live ones, then `end`
        # A follow ends after 3 s here (`end`); a client resumes after the last
        # event it saw, as rtmctl does, and misses nothing in between.
        seen = [d for d in streams[0] if "container_id" in d]
        while new_container not in [d["container_id"] for d in seen]:
            assert len(streams) < 30, streams
            streams.append(await _follow(http, game_id, seen[-1]["id"]))
            seen += [d for d in streams[-1] if "container_id" in d]
            assert streams[-1][-1] == {"reason": "max_duration"}
        assert [d["container_id"] for d in seen] == [
            first["current_container_id"],
            new_container,
        ]
        assert streams[0][-1] == {"reason": "max_duration"}
        everyone = (await http.get("/api/v1/internal/events", params={"limit": 1000})).json()
        assert game_id in {e["game_id"] for e in everyone["items"]}
        _envelope(await http.get(f"{RUNTIMES}/no-such-game/events"), 404, "not_found")


async def _follow(http: httpx.AsyncClient, game_id: str, after: str | None) -> list[dict]:
    """One events follow, to its `end`: the `data` of each frame."""
    params = {"follow": "true", **({"after": after} if after else {})}
    async with http.stream("GET", f"{RUNTIMES}/{game_id}/events", params=params) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        body = (await sse.aread()).decode()
    lines = [line for frame in body.split("\n\n") for line in frame.splitlines()]
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


async def test_health_snapshot_and_the_wide_view(
    spawn_api, settings: Settings, core: Rig, game_id: str
) -> None:
    api = await spawn_api(settings)
    await api.process.wait_for_message("internal http listening")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
        _envelope(await http.get(f"{RUNTIMES}/{game_id}/health"), 404, "not_found")
        record = await _started(http, game_id)
        health = (await http.get(f"{RUNTIMES}/{game_id}/health")).json()
        assert (health["game_id"], health["status"], health["source"]) == (
            game_id,
            "container_started",
            "inspect",
        )
        assert health["container_id"] == record["current_container_id"]
        plain = (await http.get(f"{RUNTIMES}/{game_id}")).json()
        assert plain == record and "usage" not in plain
        wide = (await http.get(f"{RUNTIMES}/{game_id}", params={"view": "wide"})).json()
        assert wide == {**record, "usage": None}
        listed = (await http.get(RUNTIMES, params={"view": "wide"})).json()
        assert set(listed) == {"items"} and {**record, "usage": None} in listed["items"]
        _envelope(await http.get(RUNTIMES, params={"view": "tall"}), 400, "invalid_request")


async def test_paging_10000_records_sees_each_once_while_games_are_added(
    make_client, core: Rig
) -> None:
    """10,000 rows go in through the repository's own session, 1,000 per
    transaction: each batch shares one `created_at` (PostgreSQL's `now()` is the
    transaction's), so pages also cut through runs of equal timestamps, where the
    game_id half of the key decides. Pages are read through the app while
    another task keeps adding games through `save_record`, as the lifecycle does."""
    prefix = "page-"
    originals = {f"{prefix}{n:05d}" for n in range(10_000)}
    names = sorted(originals)
    table = RuntimeRecordRow.__table__  # type: ignore[attr-defined]
    for at in range(0, len(names), 1000):
        async with core.repos.session() as session, session.begin():
            rows = [{"game_id": g, "status": "stopped"} for g in names[at : at + 1000]]
            await session.execute(insert(table).values(rows))
    client = make_client(core)
    added: list[str] = []
    paging = asyncio.Event()

    async def add_games() -> None:
        n = 0
        while not paging.is_set():
            game = f"{prefix}new-{n:05d}"
            await core.repos.save_record(RuntimeRecord(game_id=game, status="running"))
            added.append(game)
            n += 1
            await asyncio.sleep(0)

    adder = asyncio.create_task(add_games())
    try:
        await _page_through(client, prefix, originals, added, paging, adder)
    finally:
        async with core.repos.session() as session, session.begin():
            # Leave the session's database as the other suites expect it.
            await session.execute(table.delete().where(table.c.game_id.startswith(prefix)))


async def _page_through(
    client: httpx.AsyncClient,
    prefix: str,
    originals: set[str],
    added: list[str],
    paging: asyncio.Event,
    adder: asyncio.Task[None],
) -> None:
    seen: list[str] = []
    pages = 0
    cursor = None
    try:
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            response = await client.get(RUNTIMES, params=params)
            assert response.status_code == 200, response.text
            answer = response.json()
            seen += [r["game_id"] for r in answer["items"] if r["game_id"].startswith(prefix)]
            pages += 1
            cursor = answer["next_cursor"]
            if cursor is None:
                break
    finally:
        paging.set()
        await adder
    assert len(seen) == len(set(seen)), "a record was listed twice"
    assert originals <= set(seen), f"{len(originals - set(seen))} records were skipped"
    assert added and pages >= 20
    assert set(seen) - originals <= set(added)

    legacy = (await client.get(RUNTIMES, params={"status": "stopped"})).json()
    assert list(legacy) == ["items"]  # no limit, no cursor: the answer of 001
    _envelope(await client.get(RUNTIMES, params={"cursor": "bm9wZQ"}), 400, "invalid_request")


async def test_follows_end_when_rtm_api_shuts_down(
    spawn_api, make_settings, core: Rig, game_id: str
) -> None:
    """A follow never holds up a drain: SIGTERM ends a logs follow of a running
    engine and an events follow (`end` with reason `shutdown`), then exits 0."""
    api = await spawn_api(make_settings(shutdown_timeout="20s"))
    await api.process.wait_for_message("internal http listening")
    async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as http:
        await _started(http, game_id)
        async with (
            http.stream("GET", f"{RUNTIMES}/{game_id}/logs?follow=true") as logs,
            http.stream("GET", f"{RUNTIMES}/{game_id}/events?follow=true") as events,
        ):
            assert (logs.status_code, events.status_code) == (200, 200)
            assert api.process.proc is not None
            api.process.proc.send_signal(signal.SIGTERM)
            await logs.aread()  # ends although the engine still runs
            tail = (await events.aread()).decode()
        assert 'event: end\ndata: {"reason": "shutdown"}' in tail
    try:
        code = await api.exited(timeout=30)
    except TimeoutError:
        raise AssertionError(f"rtm-api still running:\n{api.process.output}") from None
    assert code == 0, api.process.output
    info = await core.docker.inspect(f"galaxy-game-{game_id}")
    assert info is not None and info.running
