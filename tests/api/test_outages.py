"""REST during a PostgreSQL outage (issue 10 §5): 503 `service_unavailable`
with the error envelope, and `/readyz` naming postgres.

The outage is real and private: a PostgreSQL server of this module's own
(`private_servers.PrivatePostgres`), stopped under the app and started
again; the session's shared server is never touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from api.conftest import MakeClient
from harness import fresh_database, wait_for
from private_servers import PrivatePostgres
from rig import Rig

from rtm_core.settings import Settings

RUNTIMES = "/api/v1/internal/runtimes"
V100 = "galaxy/test-engine:1.0.0"


@pytest.fixture(scope="module")
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    server = PrivatePostgres()
    await server.start()
    yield server
    server.remove()


@pytest.fixture
async def postgres(private_postgres: PrivatePostgres) -> AsyncIterator[tuple[PrivatePostgres, str]]:
    """The private server (up at the start and the end of the test) and a migrated
    database on it."""
    async with fresh_database(private_postgres.server_dsn, "rtm_outage_") as dsn:
        try:
            yield private_postgres, dsn
        finally:
            if not private_postgres.running:
                await private_postgres.start()


def unavailable(response: httpx.Response) -> bool:
    body = response.json()
    return (
        response.status_code == 503
        and list(body) == ["error"]
        and body["error"]["code"] == "service_unavailable"
        and body["error"]["message"].startswith("postgres unavailable: ")
    )


async def test_rest_answers_503_service_unavailable_while_postgres_is_away(
    postgres: tuple[PrivatePostgres, str],
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    make_client: MakeClient,
    game_id: str,
) -> None:
    server, dsn = postgres
    client = make_client(make_core(make_settings(postgres_primary_dsn=dsn)))
    assert (await client.get(f"{RUNTIMES}/{game_id}")).status_code == 404
    assert (await client.get("/readyz")).status_code == 200
    await server.stop()

    requests = [
        ("GET", f"{RUNTIMES}/{game_id}", None),
        ("GET", RUNTIMES, None),
        ("GET", f"{RUNTIMES}/{game_id}/operations", None),
        ("POST", f"{RUNTIMES}/{game_id}/start", {"image_ref": V100}),
        ("POST", f"{RUNTIMES}/{game_id}/stop", {"reason": "admin_request"}),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body)
        assert unavailable(response), (method, path, response.status_code, response.text)

    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "service_unavailable"
    assert ready.json()["error"]["message"].startswith("postgres unavailable: ")

    await server.start()

    async def back() -> bool:
        return (await client.get(f"{RUNTIMES}/{game_id}")).status_code == 404

    await wait_for(back, timeout=10)
    assert (await client.get("/readyz")).status_code == 200
