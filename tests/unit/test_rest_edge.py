"""The REST edge (SPEC §6): every error leaves as `{"error":{"code","message"}}`
with the SPEC's status — as a pure table (`rtm_api.errors`), and through the
real app (`rtm_api.app.create_app`) over the lifecycle on the fakes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from rtm_api.errors import rtm_error_response
from rtm_core.domain import errors
from rtm_core.domain.errors import DockerUnavailable, RtmError
from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes, MakeUnit
from unit.helpers import GAME, LATEST, MISSING, V100, V101, V110, rest_client

#: SPEC §6 "Status codes", code by code.
SPEC_STATUS = {
    "invalid_request": 400,
    "start_config_invalid": 400,
    "image_ref_not_semver": 400,
    "semver_patch_only": 400,
    "unauthorized": 401,
    "not_found": 404,
    "conflict": 409,
    "operation_in_progress": 409,
    "image_pull_failed": 502,
    "container_start_failed": 502,
    "docker_unavailable": 502,
    "service_unavailable": 503,
    "internal_error": 500,
    # Added by issue 12 (opt-in patch health gate), beside the SPEC's codes.
    "patch_rolled_back": 502,
    # Added by issue 13 (engine logs over REST, follow streams).
    "logs_not_readable": 501,
    "too_many_followers": 429,
}
ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, RtmError) and cls is not RtmError
]
RUNTIMES = "/api/v1/internal/runtimes"


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__name__)
def test_each_error_code_has_the_spec_status_and_the_envelope(error: type[RtmError]) -> None:
    response = rtm_error_response(error("why"))
    assert response.status_code == SPEC_STATUS[error.code]
    assert json.loads(bytes(response.body)) == {"error": {"code": error.code, "message": "why"}}
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_every_spec_code_has_an_error_class() -> None:
    assert {cls.code for cls in ERRORS} == set(SPEC_STATUS)


async def _ready() -> str | None:
    return None


@pytest.fixture
async def client(lifecycle: Lifecycle, fakes: Fakes) -> AsyncIterator[httpx.AsyncClient]:
    async with rest_client(lifecycle, fakes) as http:
        yield http


async def test_start_answers_the_record_and_logs_the_callers_source(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await client.post(
        f"{RUNTIMES}/{GAME}/start", json={"image_ref": V100}, headers={"X-Galaxy-Caller": "gm"}
    )
    assert response.status_code == 200
    record = fakes.record(GAME)
    assert record is not None
    assert response.json() == {
        "game_id": GAME,
        "status": "running",
        "current_container_id": record.current_container_id,
        "current_image_ref": V100,
        "engine_endpoint": f"http://galaxy-game-{GAME}:8080",
        "state_path": str(fakes.settings.game_state_root / GAME),
        "docker_network": "unit-net",
        "started_at": "2030-01-01T00:00:00Z",
        "stopped_at": None,
        "removed_at": None,
        "last_op_at": "2030-01-01T00:00:00Z",
        "created_at": "2030-01-01T00:00:00Z",
    }
    (row,) = fakes.rows(GAME)
    assert row.op_source == "gm_rest"
    await client.post(f"{RUNTIMES}/{GAME}/stop", json={"reason": "finished"})
    assert fakes.rows(GAME)[-1].op_source == "admin_rest"  # no header: admin

    operations = (await client.get(f"{RUNTIMES}/{GAME}/operations")).json()
    assert [item["op_kind"] for item in operations["items"]] == ["stop", "start"]
    listed = (await client.get(RUNTIMES, params={"status": "stopped"})).json()
    assert [item["game_id"] for item in listed["items"]] == [GAME]


Arrange = Callable[[Fakes], Any]


async def _running(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"{RUNTIMES}/{GAME}/start", json={"image_ref": V100})).is_success


@pytest.mark.parametrize(
    ("running", "arrange", "method", "path", "body", "status", "code"),
    [
        (
            False,
            None,
            "POST",
            f"{GAME}/start",
            {"image_ref": "Not A Ref"},
            400,
            "start_config_invalid",
        ),
        (False, None, "POST", "-bad/start", {"image_ref": V100}, 400, "start_config_invalid"),
        (False, None, "POST", "-bad/stop", {"reason": "finished"}, 400, "invalid_request"),
        (False, None, "POST", f"{GAME}/start", {}, 400, "invalid_request"),
        (True, None, "POST", f"{GAME}/stop", {"reason": "bored"}, 400, "invalid_request"),
        (True, None, "POST", f"{GAME}/patch", {"image_ref": LATEST}, 400, "image_ref_not_semver"),
        (True, None, "POST", f"{GAME}/patch", {"image_ref": V110}, 400, "semver_patch_only"),
        (False, None, "GET", GAME, None, 404, "not_found"),
        (False, None, "POST", f"{GAME}/stop", {"reason": "finished"}, 404, "not_found"),
        (False, None, "POST", f"{GAME}/restart", None, 404, "not_found"),
        (True, None, "POST", f"{GAME}/start", {"image_ref": V101}, 409, "conflict"),
        (True, None, "DELETE", f"{GAME}/container", None, 409, "conflict"),
        (
            False,
            lambda f: f.leases.occupy(GAME),
            "POST",
            f"{GAME}/start",
            {"image_ref": V100},
            409,
            "operation_in_progress",
        ),
        (False, None, "POST", f"{GAME}/start", {"image_ref": MISSING}, 502, "image_pull_failed"),
        (
            False,
            lambda f: f.engine.add_container(GAME, V100, stack="another"),
            "POST",
            f"{GAME}/start",
            {"image_ref": V100},
            502,
            "container_start_failed",
        ),
        (
            True,
            lambda f: setattr(f.engine, "down", True),
            "POST",
            f"{GAME}/restart",
            None,
            502,
            "docker_unavailable",
        ),
        (
            True,
            lambda f: f.engine.fail("inspect", KeyError("surprise")),
            "POST",
            f"{GAME}/start",
            {"image_ref": V100},
            500,
            "internal_error",
        ),
    ],
)
async def test_each_failure_answers_its_spec_status_and_code(
    client: httpx.AsyncClient,
    fakes: Fakes,
    running: bool,
    arrange: Arrange | None,
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    if running:
        await _running(client)
    if arrange is not None:
        arrange(fakes)
    response = await client.request(method, f"{RUNTIMES}/{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"]}
    }
    assert response.json()["error"]["message"]


async def test_malformed_json_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{RUNTIMES}/{GAME}/start",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


async def test_a_configured_token_is_required(make_unit: MakeUnit) -> None:
    lifecycle, fakes = make_unit(internal_api_token="s3cret-token")
    async with rest_client(lifecycle, fakes) as http:
        refused = await http.get(RUNTIMES)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"]["code"] == "unauthorized"
        wrong = await http.get(RUNTIMES, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await http.get(RUNTIMES, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json() == {"items": []}


async def test_a_rest_failure_still_leaves_its_one_row(
    client: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.engine.fail("create", DockerUnavailable("docker create: connection reset"))
    response = await client.post(f"{RUNTIMES}/{GAME}/start", json={"image_ref": V100})
    assert response.status_code == 502
    assert response.json() == {
        "error": {"code": "docker_unavailable", "message": "docker create: connection reset"}
    }
    (row,) = fakes.rows(GAME)
    assert (row.op_source, row.outcome, row.error_code) == (
        "admin_rest",
        "failure",
        "docker_unavailable",
    )
