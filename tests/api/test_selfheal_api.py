"""The REST side of issue 12 over the real app: `quarantined` (only with auto
restart on), `?quarantined=`, `POST …/quarantine/lift`, `?wait_ready=`, and
`patch_rolled_back` answered by a health-gated patch."""

from __future__ import annotations

from collections.abc import Callable

from api.conftest import MakeClient
from rig import Rig

from rtm_core.domain.crashloop import CrashHistory
from rtm_core.settings import Settings

RUNTIMES = "/api/v1/internal/runtimes"
V100 = "galaxy/test-engine:1.0.0"
BAD = "galaxy/test-engine:1.0.9"
ADMIN = {"X-Galaxy-Caller": "admin"}
#: The REST record of 001, field for field.
RECORD_001 = [
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


async def test_with_auto_restart_off_the_record_is_001s(
    make_client: MakeClient, core: Rig, game_id: str
) -> None:
    client = make_client(core)
    started = await client.post(f"{RUNTIMES}/{game_id}/start", json={"image_ref": V100})
    assert started.status_code == 200 and list(started.json()) == RECORD_001
    listed = await client.get(RUNTIMES, params={"quarantined": "false"})
    assert game_id in [r["game_id"] for r in listed.json()["items"]]
    assert all(list(r) == RECORD_001 for r in listed.json()["items"])
    assert (await client.get(RUNTIMES, params={"quarantined": "true"})).json()["items"] == []
    # Lifting what is not quarantined is a replay, whatever the setting.
    lifted = await client.post(f"{RUNTIMES}/{game_id}/quarantine/lift", headers=ADMIN)
    assert lifted.status_code == 200 and list(lifted.json()) == RECORD_001


async def test_quarantine_read_filtered_and_lifted(
    make_client: MakeClient,
    make_core: Callable[[Settings], Rig],
    make_settings: Callable[..., Settings],
    game_id: str,
) -> None:
    rig = make_core(make_settings(auto_restart="on"))
    client = make_client(rig)
    started = await client.post(f"{RUNTIMES}/{game_id}/start", json={"image_ref": V100})
    assert started.json()["quarantined"] is False
    assert list(started.json()) == [*RECORD_001, "quarantined"]
    await rig.repos.save_crash_history(
        CrashHistory(
            game_id=game_id,
            quarantined=True,
            last_container_id=started.json()["current_container_id"],
        )
    )

    one = (await client.get(f"{RUNTIMES}/{game_id}")).json()
    assert one["quarantined"] is True
    only = (await client.get(RUNTIMES, params={"quarantined": "true"})).json()["items"]
    assert [r["game_id"] for r in only] == [game_id]
    others = (await client.get(RUNTIMES, params={"quarantined": "false"})).json()["items"]
    assert game_id not in [r["game_id"] for r in others]

    lifted = await client.post(f"{RUNTIMES}/{game_id}/quarantine/lift", headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json()["quarantined"] is False
    history = (await client.get(f"{RUNTIMES}/{game_id}/operations")).json()["items"]
    assert (history[0]["op_kind"], history[0]["op_source"], history[0]["error_code"]) == (
        "quarantine_lift",
        "admin_rest",
        None,
    )
    missing = await client.post(f"{RUNTIMES}/nobody-{game_id}/quarantine/lift")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_patch_rolled_back_is_answered_502(
    make_client: MakeClient,
    make_core: Callable[[Settings], Rig],
    make_settings: Callable[..., Settings],
    game_id: str,
) -> None:
    rig = make_core(
        make_settings(
            patch_health_gate="on",
            # 5 passes 300 ms apart outlast the at most 1 s that 1.0.9 is healthy.
            patch_gate_probes=5,
            patch_gate_deadline="5s",
            patch_gate_interval="300ms",
            probe_address_mode="container_ip",
            probe_timeout="1s",
            container_stop_timeout_seconds=2,
        )
    )
    client = make_client(rig)
    started = await client.post(
        f"{RUNTIMES}/{game_id}/start", params={"wait_ready": "true"}, json={"image_ref": V100}
    )
    assert started.status_code == 200

    patched = await client.post(f"{RUNTIMES}/{game_id}/patch", json={"image_ref": BAD})

    assert patched.status_code == 502
    body = patched.json()
    assert list(body) == ["error"] and body["error"]["code"] == "patch_rolled_back"
    assert "health gate" in body["error"]["message"]
    record = (await client.get(f"{RUNTIMES}/{game_id}")).json()
    assert record["status"] == "running" and record["current_image_ref"] == V100
    kinds = [
        r["op_kind"] for r in (await client.get(f"{RUNTIMES}/{game_id}/operations")).json()["items"]
    ]
    assert kinds == ["patch_rollback", "patch", "start"]
