"""`?view=wide` (issue 13): the record plus its engine's latest usage, after the
watcher's usage sampler has run once over real Docker and PostgreSQL."""

from __future__ import annotations

import httpx
from rig import Rig

from rtm_core.domain.vocabulary import OpSource, StopReason
from rtm_core.settings import parse_size
from rtm_watcher.bootstrap import bootstrap as watcher_bootstrap
from rtm_watcher.usage_sampler import UsageSampler

RUNTIMES = "/api/v1/internal/runtimes"
V100 = "galaxy/test-engine:1.0.0"
USAGE_FIELDS = ["cpu_percent", "memory_bytes", "memory_limit_bytes", "restart_count", "sampled_at"]


async def sample_once(core: Rig) -> None:
    await UsageSampler(watcher_bootstrap(core.infra, core.adapters)).run_once()


async def test_the_wide_view_serves_the_sampled_usage(
    client: httpx.AsyncClient, core: Rig, game_id: str
) -> None:
    started = await client.post(
        f"{RUNTIMES}/{game_id}/start", json={"image_ref": V100}, headers={"X-Galaxy-Caller": "gm"}
    )
    assert started.status_code == 200 and "usage" not in started.json()

    wide = (await client.get(f"{RUNTIMES}/{game_id}", params={"view": "wide"})).json()
    assert wide["usage"] is None  # not sampled yet
    await sample_once(core)

    narrow = (await client.get(f"{RUNTIMES}/{game_id}")).json()
    assert "usage" not in narrow
    wide = (await client.get(f"{RUNTIMES}/{game_id}", params={"view": "wide"})).json()
    assert {k: v for k, v in wide.items() if k != "usage"} == narrow
    usage = wide["usage"]
    assert list(usage) == USAGE_FIELDS
    assert usage["memory_bytes"] > 0
    assert usage["memory_limit_bytes"] == parse_size(core.settings.default_memory)
    assert isinstance(usage["cpu_percent"], float) and usage["cpu_percent"] >= 0
    assert usage["restart_count"] == 0
    assert usage["sampled_at"].endswith("Z")

    listed = (await client.get(RUNTIMES, params={"view": "wide", "status": "running"})).json()
    (mine,) = [r for r in listed["items"] if r["game_id"] == game_id]
    assert mine == wide
    assert all("usage" not in r for r in (await client.get(RUNTIMES)).json()["items"])

    # A stopped engine uses nothing: its last sample is not served.
    await core.lifecycle.stop(game_id, StopReason.ADMIN_REQUEST.value, OpSource.ADMIN_REST)
    stopped = (await client.get(f"{RUNTIMES}/{game_id}", params={"view": "wide"})).json()
    assert (stopped["status"], stopped["usage"]) == ("stopped", None)


async def test_an_unknown_view_is_an_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.get(RUNTIMES, params={"view": "tall"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
