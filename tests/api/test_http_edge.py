"""The HTTP edge of rtm-api: token, envelopes for the framework's own errors,
request ids, the request span, the last-resort 500 and the OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from api.helpers import api_deps
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rig import Rig

from rtm_api.openapi import document, render
from rtm_core.adapters.postgres.tables import RuntimeRecordRow
from rtm_core.settings import Settings

RUNTIMES = "/api/v1/internal/runtimes"
REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token-for-tests"


def envelope(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message"], body
    return response.status_code, body["error"]["code"]


async def test_health_and_readiness(client: httpx.AsyncClient, wait_ready) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await wait_ready(client)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_the_token_guards_the_api_but_not_health(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    make_client: Callable[..., httpx.AsyncClient],
    game_id: str,
    wait_ready,
) -> None:
    client = make_client(make_core(make_settings(internal_api_token=TOKEN)))
    stop_body = {"Content-Type": "application/json"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        for response in (
            await client.get(RUNTIMES, headers=headers),
            await client.get(f"{RUNTIMES}/{game_id}", headers=headers),
            await client.post(
                f"{RUNTIMES}/{game_id}/stop",
                headers={**headers, **stop_body},
                content=b'{"reason": "admin_request"}',
            ),
            await client.delete(f"{RUNTIMES}/{game_id}/container", headers=headers),
        ):
            assert envelope(response) == (401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get(RUNTIMES, headers=good)).status_code == 200
    assert envelope(await client.get(f"{RUNTIMES}/{game_id}", headers=good)) == (404, "not_found")
    assert (await client.get("/healthz")).status_code == 200
    assert (await wait_ready(client)).status_code == 200


async def test_unknown_routes_and_methods_use_the_envelope(client: httpx.AsyncClient) -> None:
    assert envelope(await client.get("/api/v1/internal/nothing")) == (404, "not_found")
    assert envelope(await client.get(f"{RUNTIMES}/g1/start")) == (405, "method_not_allowed")
    response = await client.put(f"{RUNTIMES}/g1")
    assert envelope(response) == (405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_a_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    echoed = await client.get(RUNTIMES, headers={"X-Request-Id": "req-42"})
    assert echoed.headers["x-request-id"] == "req-42"
    failed = await client.get(f"{RUNTIMES}/-bad", headers={"X-Request-Id": "req-43"})
    assert failed.status_code == 400 and failed.headers["x-request-id"] == "req-43"
    assert "x-request-id" not in (await client.get(RUNTIMES)).headers


async def test_one_server_span_per_request_named_by_route(
    core: Rig, make_client: Callable[..., httpx.AsyncClient], game_id: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(core, tracer_provider=provider)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await client.get(
        f"{RUNTIMES}/{game_id}",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-Id": "r-1"},
    )
    assert response.status_code == 404
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /api/v1/internal/runtimes/{game_id}"
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/api/v1/internal/runtimes/{game_id}"
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["http.request.header.x-request-id"] == "r-1"
    provider.shutdown()


async def test_an_unexpected_failure_is_a_logged_500_internal_error(
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    make_client: Callable[..., httpx.AsyncClient],
    database_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL answers, but the database is not there: nothing maps that error."""
    base, _, query = database_dsn.partition("?")
    missing = f"{base.rsplit('/', 1)[0]}/rtm_no_such_database?{query}"
    client = make_client(make_core(make_settings(postgres_primary_dsn=missing)))
    with caplog.at_level(logging.ERROR, logger="rtm_api.http"):
        response = await client.get(RUNTIMES, headers={"X-Request-Id": "req-500"})
    assert envelope(response) == (500, "internal_error")
    assert "req-500" in response.json()["error"]["message"]
    (logged,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert logged.exc_info is not None and getattr(logged, "path", None) == RUNTIMES


async def test_the_committed_openapi_document_is_the_live_one(
    client: httpx.AsyncClient, core: Rig
) -> None:
    from rtm_api.app import create_app

    committed = json.loads((REPO / "docs" / "api" / "openapi.json").read_text())
    live = create_app(api_deps(core)).openapi()
    assert committed == live, "regenerate: python -m rtm_api.openapi > docs/api/openapi.json"
    assert render(document()) == (REPO / "docs" / "api" / "openapi.json").read_text()
    assert (await client.get("/openapi.json")).json() == live


def test_the_openapi_document_says_what_the_server_does() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    # The REST record is the `001` contract's RuntimeRecord, field for field and in
    # order, plus issue 12's additive `quarantined` (rendered only with
    # RTMANAGER_AUTO_RESTART=on); the table holds the contract's columns first, then
    # RTM-internal ones (placement_node) and quarantined. Issue 13's wide view is
    # the same record plus `usage` (from `engine_usage`, not this table).
    contract = [
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
    assert list(schemas["RuntimeRecord"]["properties"]) == [*contract, "quarantined"]
    wide = [*contract, "quarantined", "usage"]
    assert list(schemas["RuntimeRecordWide"]["properties"]) == wide
    columns = [c.name for c in RuntimeRecordRow.__table__.columns]
    assert columns[: len(contract)] == contract
    assert columns[len(contract) :] == ["placement_node", "quarantined"]
    assert doc["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["HTTPBearer"]["description"],
        }
    }
    assert "HTTPValidationError" not in schemas
    envelope_ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == envelope_ref
            if path.startswith(RUNTIMES):
                assert operation["security"] == [{"HTTPBearer": []}]
                assert {"400", "401", "500"} <= responses.keys(), (method, path)
    start = doc["paths"][RUNTIMES + "/{game_id}/start"]["post"]["responses"]
    assert "start_config_invalid" in start["400"]["description"]
    assert {"409", "502"} <= start.keys()
