"""Every internal-REST example of reference 001, as written, against the real
app over real PostgreSQL, Redis and Docker; and every failure shape.

Requests mirror the curl lines: same method, path, headers and raw body
(only the game id and image differ: the test's own game and the test engine).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC
from urllib.parse import unquote

import aiodocker
import httpx
import pytest
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.records import RuntimeRecord
from rtm_core.settings import Settings

RUNTIMES = "/api/v1/internal/runtimes"
V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
V102 = "galaxy/test-engine:1.0.2"
V110 = "galaxy/test-engine:1.1.0"
V200 = "galaxy/test-engine:2.0.0"
NOT_SEMVER = "galaxy/test-engine:notsemver"
JSON = {"Content-Type": "application/json"}
GM = {"X-Galaxy-Caller": "gm"}
ADMIN = {"X-Galaxy-Caller": "admin"}

#: Reference 001 "Probe a runtime record", in that order.
RECORD_FIELDS = [
    "game_id",
    "status",
    "current_container_id",
    "current_image_ref",
    "engine_endpoint",
    "state_path",
    "docker_network",
    "started_at",
    "stopped_at",
    "removed_at",
    "last_op_at",
    "created_at",
]
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TIMESTAMPS = ("started_at", "stopped_at", "removed_at", "last_op_at", "created_at")


# ------------------------------------------------------------------ the curls


async def post_json(
    client: httpx.AsyncClient, game_id: str, action: str, caller: dict[str, str], body: str
) -> httpx.Response:
    """`curl -X POST -H 'Content-Type: application/json' -H 'X-Galaxy-Caller: …' -d '…'`"""
    return await client.post(
        f"{RUNTIMES}/{game_id}/{action}", headers={**JSON, **caller}, content=body
    )


async def start(client: httpx.AsyncClient, game_id: str, image_ref: str = V100) -> httpx.Response:
    return await post_json(client, game_id, "start", GM, f'{{"image_ref": "{image_ref}"}}')


async def stop(
    client: httpx.AsyncClient, game_id: str, reason: str = "admin_request"
) -> httpx.Response:
    return await post_json(client, game_id, "stop", ADMIN, f'{{"reason": "{reason}"}}')


async def restart(client: httpx.AsyncClient, game_id: str) -> httpx.Response:
    return await client.post(f"{RUNTIMES}/{game_id}/restart", headers=ADMIN)


async def patch(client: httpx.AsyncClient, game_id: str, image_ref: str) -> httpx.Response:
    return await post_json(client, game_id, "patch", ADMIN, f'{{"image_ref": "{image_ref}"}}')


async def cleanup(client: httpx.AsyncClient, game_id: str) -> httpx.Response:
    return await client.delete(f"{RUNTIMES}/{game_id}/container", headers=ADMIN)


async def probe(client: httpx.AsyncClient, game_id: str) -> httpx.Response:
    return await client.get(f"{RUNTIMES}/{game_id}", headers=GM)


# ------------------------------------------------------------------ helpers


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of an error envelope, checking its exact shape."""
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message"], body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def rendered(record: RuntimeRecord) -> dict:
    """What the API must answer for this row: 001's shape, field for field."""
    out = {name: getattr(record, name) for name in RECORD_FIELDS}
    for name in TIMESTAMPS:
        if out[name] is not None:
            out[name] = out[name].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


async def row(core: Rig, game_id: str) -> RuntimeRecord:
    record = await core.repos.get_record(game_id)
    assert record is not None
    return record


async def container(docker: aiodocker.Docker, ref: str) -> dict:
    return (await docker.containers.get(ref))._container


async def op_rows(core: Rig, game_id: str) -> list[tuple[str, str, str, str | None]]:
    """(op_kind, op_source, outcome, error_code), newest first."""
    return [
        (r.op_kind, r.op_source, r.outcome, r.error_code)
        for r in await core.repos.operations(game_id)
    ]


# ------------------------------------------------------------------ start + probe


async def test_start_then_probe_answer_the_record_as_001_shows_it(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    started = ok(await start(client, game_id))
    assert list(started) == RECORD_FIELDS
    c = await container(docker, f"galaxy-game-{game_id}")
    assert c["State"]["Running"] and c["Config"]["Labels"]["com.galaxy.image_ref"] == V100
    assert started["game_id"] == game_id and started["status"] == "running"
    assert started["current_container_id"] == c["Id"]
    assert started["current_image_ref"] == V100
    assert started["engine_endpoint"] == f"http://galaxy-game-{game_id}:8080"
    assert started["state_path"] == str(core.settings.game_state_root / game_id)
    assert started["docker_network"] == core.settings.docker_network
    assert started["stopped_at"] is None and started["removed_at"] is None
    for name in ("started_at", "last_op_at", "created_at"):
        assert RFC3339_Z.match(started[name]), started[name]
    assert started == rendered(await row(core, game_id))

    probed = await probe(client, game_id)
    assert ok(probed) == started and list(probed.json()) == RECORD_FIELDS
    assert '"stopped_at":null' in probed.text and '"removed_at":null' in probed.text
    assert await op_rows(core, game_id) == [("start", "gm_rest", "success", None)]


async def test_start_again_with_the_same_image_is_a_replay(
    client: httpx.AsyncClient, core: Rig, game_id: str
) -> None:
    first = ok(await start(client, game_id))
    again = ok(await start(client, game_id))
    assert again["current_container_id"] == first["current_container_id"]
    assert (await op_rows(core, game_id))[0] == ("start", "gm_rest", "success", "replay_no_op")


async def test_invalid_image_ref_is_start_config_invalid_as_001_shows_it(
    client: httpx.AsyncClient, core: Rig, game_id: str
) -> None:
    response = await start(client, game_id, "galaxy/Game::1.4.0")
    assert response.json() == {
        "error": {
            "code": "start_config_invalid",
            "message": "image_ref shape rejected by docker reference parser",
        }
    }
    assert response.status_code == 400
    assert await core.docker.list_owned(game_id) == []
    assert await core.repos.get_record(game_id) is None


async def test_start_while_another_image_runs_is_a_conflict(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    first = ok(await start(client, game_id, V100))
    status, code, message = error(await start(client, game_id, V101))
    assert (status, code) == (409, "conflict") and "patch" in message
    c = await container(docker, f"galaxy-game-{game_id}")
    assert c["Id"] == first["current_container_id"] and c["State"]["Running"]


@pytest.mark.parametrize(
    ("overrides", "image_ref", "code"),
    [
        ({"image_pull_policy": "if_not_present"}, "rtm-test/absent:1.0.0", "image_pull_failed"),
        ({"docker_host": "unix:///nonexistent/docker.sock"}, V100, "docker_unavailable"),
    ],
)
async def test_docker_failures_are_502(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    make_client: Callable[..., httpx.AsyncClient],
    game_id: str,
    overrides: dict[str, str],
    image_ref: str,
    code: str,
) -> None:
    core = make_core(make_settings(**overrides))
    status, got, message = error(await start(make_client(core), game_id, image_ref))
    assert (status, got) == (502, code) and message
    assert (await op_rows(core, game_id))[0] == ("start", "gm_rest", "failure", code)


@pytest.mark.parametrize("bad", ["-lead", "_lead", "a%20b", "a+b", "x" * 129])
async def test_a_game_id_outside_the_grammar_writes_nothing(
    client: httpx.AsyncClient, core: Rig, redis: Redis, bad: str
) -> None:
    status, code, _ = error(await start(client, bad))
    assert (status, code) == (400, "start_config_invalid")
    for response in (
        await probe(client, bad),
        await client.get(f"{RUNTIMES}/{bad}/operations"),
        await stop(client, bad),
        await restart(client, bad),
        await patch(client, bad, V101),
        await cleanup(client, bad),
    ):
        assert error(response)[:2] == (400, "invalid_request"), response.request.url
    assert list(core.settings.game_state_root.iterdir()) == []
    assert await redis.exists(core.settings.notification_intents_stream) == 0
    assert await core.repos.operations(unquote(bad)) == []


# ------------------------------------------------------------------ list


async def test_list_all_runtimes_and_filter_by_status(
    client: httpx.AsyncClient, core: Rig, game_id: str
) -> None:
    other = f"{game_id}-b"
    ok(await start(client, game_id))
    ok(await start(client, other))
    ok(await stop(client, other))

    listed = await client.get(RUNTIMES, headers=ADMIN)
    body = ok(listed)
    assert list(body) == ["items"]
    mine = {item["game_id"]: item for item in body["items"] if item["game_id"] in {game_id, other}}
    assert mine == {
        game_id: rendered(await row(core, game_id)),
        other: rendered(await row(core, other)),
    }
    assert all(list(item) == RECORD_FIELDS for item in body["items"])

    running = ok(await client.get(RUNTIMES, params={"status": "running"}, headers=ADMIN))
    assert {i["status"] for i in running["items"]} == {"running"}
    assert game_id in {i["game_id"] for i in running["items"]}
    assert other not in {i["game_id"] for i in running["items"]}

    status, code, message = error(await client.get(RUNTIMES, params={"status": "sleeping"}))
    assert (status, code) == (400, "invalid_request") and "status" in message


# ------------------------------------------------------------------ stop


async def test_stop_keeps_the_container_and_records_stopped(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    started = ok(await start(client, game_id))
    stopped = ok(await stop(client, game_id, "admin_request"))
    assert list(stopped) == RECORD_FIELDS
    assert stopped["status"] == "stopped" and RFC3339_Z.match(stopped["stopped_at"])
    assert stopped["current_container_id"] == started["current_container_id"]
    c = await container(docker, started["current_container_id"])
    assert not c["State"]["Running"]
    assert stopped == rendered(await row(core, game_id))

    again = ok(await stop(client, game_id, "finished"))
    assert again["status"] == "stopped"
    assert (await op_rows(core, game_id))[:2] == [
        ("stop", "admin_rest", "success", "replay_no_op"),
        ("stop", "admin_rest", "success", None),
    ]


async def test_every_reason_of_001_stops(client: httpx.AsyncClient, game_id: str) -> None:
    reasons = ["orphan_cleanup", "cancelled", "finished", "admin_request", "timeout"]
    games = [f"{game_id}-{reason}" for reason in reasons]
    for started in await asyncio.gather(*(start(client, game) for game in games)):
        ok(started)
    stopped = await asyncio.gather(
        *(stop(client, g, r) for g, r in zip(games, reasons, strict=True))
    )
    assert [ok(response)["status"] for response in stopped] == ["stopped"] * len(reasons)


async def test_a_bad_reason_is_invalid_request_and_touches_nothing(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    started = ok(await start(client, game_id))
    status, code, message = error(await stop(client, game_id, "bored"))
    assert (status, code) == (400, "invalid_request")
    assert "orphan_cleanup | cancelled | finished | admin_request | timeout" in message
    assert (await container(docker, started["current_container_id"]))["State"]["Running"]
    assert (await row(core, game_id)).status == "running"
    assert len(await op_rows(core, game_id)) == 1


# ------------------------------------------------------------------ restart, patch


async def test_restart_recreates_with_the_current_image(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    first = ok(await start(client, game_id, V101))
    again = ok(await restart(client, game_id))
    assert again["status"] == "running" and again["current_image_ref"] == V101
    assert again["current_container_id"] != first["current_container_id"]
    for same in ("engine_endpoint", "state_path", "docker_network", "created_at"):
        assert again[same] == first[same]
    assert (await container(docker, f"galaxy-game-{game_id}"))["Id"] == again[
        "current_container_id"
    ]
    ok(await stop(client, game_id))
    assert ok(await restart(client, game_id))["status"] == "running"
    newest = (await op_rows(core, game_id))[0]
    assert newest == ("restart", "admin_rest", "success", None)


async def test_patch_moves_to_the_new_patch_version(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    first = ok(await start(client, game_id, V100))
    patched = ok(await patch(client, game_id, V102))
    assert patched["current_image_ref"] == V102 and patched["status"] == "running"
    assert patched["current_container_id"] != first["current_container_id"]
    assert patched["engine_endpoint"] == first["engine_endpoint"]
    c = await container(docker, f"galaxy-game-{game_id}")
    assert c["Config"]["Labels"]["com.galaxy.image_ref"] == V102
    (latest,) = await core.repos.operations(game_id, limit=1)
    assert (latest.op_kind, latest.image_ref, latest.previous_image_ref) == ("patch", V102, V100)


async def test_a_refused_patch_is_400_and_touches_nothing(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    first = ok(await start(client, game_id, V100))
    for target, code in (
        (NOT_SEMVER, "image_ref_not_semver"),
        (V110, "semver_patch_only"),
        (V200, "semver_patch_only"),
    ):
        assert error(await patch(client, game_id, target))[:2] == (400, code), target
        c = await container(docker, f"galaxy-game-{game_id}")
        assert c["Id"] == first["current_container_id"] and c["State"]["Running"]
        assert ok(await probe(client, game_id)) == first


# ------------------------------------------------------------------ cleanup


async def test_cleanup_refuses_running_then_removes_a_stopped_container(
    client: httpx.AsyncClient, core: Rig, docker: aiodocker.Docker, game_id: str
) -> None:
    started = ok(await start(client, game_id))
    status, code, message = error(await cleanup(client, game_id))
    assert (status, code) == (409, "conflict") and "stop it first" in message
    assert (await container(docker, started["current_container_id"]))["State"]["Running"]

    ok(await stop(client, game_id))
    removed = ok(await cleanup(client, game_id))
    assert removed["status"] == "removed" and RFC3339_Z.match(removed["removed_at"])
    assert removed == rendered(await row(core, game_id))
    with pytest.raises(aiodocker.DockerError):
        await container(docker, started["current_container_id"])
    assert (core.settings.game_state_root / game_id).is_dir()
    assert (await op_rows(core, game_id))[0] == ("cleanup_container", "admin_rest", "success", None)


# ------------------------------------------------------------------ unknown, busy, malformed


async def test_an_unknown_game_is_not_found(client: httpx.AsyncClient, game_id: str) -> None:
    for response in (
        await probe(client, game_id),
        await stop(client, game_id),
        await restart(client, game_id),
        await patch(client, game_id, V101),
        await cleanup(client, game_id),
    ):
        status, code, message = error(response)
        assert (status, code) == (404, "not_found") and game_id in message
    assert (
        ok(await client.get(f"{RUNTIMES}/{game_id}/operations"))["items"][0]["error_code"]
        == "not_found"
    )


async def test_a_held_lease_is_operation_in_progress(
    client: httpx.AsyncClient, core: Rig, redis: Redis, game_id: str
) -> None:
    key = f"rtmanager:game_lease:{game_id}"
    await redis.set(key, "someone-else", ex=30)
    assert error(await start(client, game_id))[:2] == (409, "operation_in_progress")
    assert await core.docker.list_owned(game_id) == []
    assert await redis.get(key) == "someone-else"
    await redis.delete(key)

    ok(await start(client, game_id))
    await redis.set(key, "someone-else", ex=30)
    for response in (
        await stop(client, game_id),
        await restart(client, game_id),
        await patch(client, game_id, V101),
        await cleanup(client, game_id),
    ):
        assert error(response)[:2] == (409, "operation_in_progress")
    assert (await row(core, game_id)).status == "running"


@pytest.mark.parametrize(
    ("content", "headers", "hint"),
    [
        (b'{"image_ref": "galaxy/test-engine:1.0.0"', JSON, "not valid JSON"),
        (b"{}", JSON, "body.image_ref: Field required"),
        (b'{"image_ref": 100}', JSON, "body.image_ref"),
        (b'["galaxy/test-engine:1.0.0"]', JSON, "body"),
        (b"", JSON, "body: Field required"),
        (b'{"image_ref": "galaxy/test-engine:1.0.0"}', {"Content-Type": "text/plain"}, "body"),
    ],
)
async def test_a_malformed_body_is_invalid_request(
    client: httpx.AsyncClient,
    core: Rig,
    game_id: str,
    content: bytes,
    headers: dict[str, str],
    hint: str,
) -> None:
    response = await client.post(
        f"{RUNTIMES}/{game_id}/start", headers={**headers, **GM}, content=content
    )
    status, code, message = error(response)
    assert (status, code) == (400, "invalid_request") and hint in message, message
    assert await core.repos.operations(game_id) == []


# ------------------------------------------------------------------ history


async def test_operations_are_newest_first_with_the_callers_source(
    client: httpx.AsyncClient, core: Rig, game_id: str
) -> None:
    ok(await start(client, game_id))  # X-Galaxy-Caller: gm
    ok(await stop(client, game_id))  # admin
    # Replays of the stop (no Docker call) with other callers:
    for caller in ({}, GM, {"X-Galaxy-Caller": "lobby"}):  # → admin_rest, gm_rest, admin_rest
        ok(await post_json(client, game_id, "stop", caller, '{"reason": "finished"}'))
    ok(await client.post(f"{RUNTIMES}/{game_id}/restart", headers=GM))

    body = ok(await client.get(f"{RUNTIMES}/{game_id}/operations", headers=ADMIN))
    items = body["items"]
    assert [(i["op_kind"], i["op_source"]) for i in items] == [
        ("restart", "gm_rest"),
        ("stop", "admin_rest"),
        ("stop", "gm_rest"),
        ("stop", "admin_rest"),
        ("stop", "admin_rest"),
        ("start", "gm_rest"),
    ]
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)
    assert all(
        RFC3339_Z.match(i["started_at"]) and RFC3339_Z.match(i["finished_at"]) for i in items
    )
    assert items[-1]["image_ref"] == V100 and items[-1]["outcome"] == "success"
    assert list(items[0]) == [
        "id",
        "game_id",
        "op_kind",
        "op_source",
        "outcome",
        "error_code",
        "error_message",
        "image_ref",
        "previous_image_ref",
        "container_id",
        "started_at",
        "finished_at",
    ]

    two = ok(await client.get(f"{RUNTIMES}/{game_id}/operations", params={"limit": 2}))
    assert two["items"] == items[:2]
    for bad in ("0", "501", "many"):
        response = await client.get(f"{RUNTIMES}/{game_id}/operations", params={"limit": bad})
        status, code, message = error(response)
        assert (status, code) == (400, "invalid_request") and "limit" in message
