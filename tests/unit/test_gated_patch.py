"""Patch behind the health gate, and start that waits, over the fakes (issue 12).
Snapshots are real copies in the test's tmp state root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    PatchRolledBack,
)
from rtm_core.domain.records import PatchPhase, PatchProgress
from rtm_core.lifecycle import Lifecycle, snapshots
from rtm_core.ports import ProbeOutcome
from unit.fakes import Fakes, MakeUnit
from unit.helpers import ADMIN, GAME, GM, V100, V101, row_of

GATE: dict[str, Any] = {
    "patch_health_gate": "on",
    "patch_gate_probes": 3,
    "patch_gate_deadline": "300ms",
    "patch_gate_interval": "10ms",
}
FAILING = ProbeOutcome(ok=False, status=503, error="unexpected status 503")


@pytest.fixture
def gated(make_unit: MakeUnit) -> tuple[Lifecycle, Fakes]:
    return make_unit(**GATE)


def state_dir(fakes: Fakes) -> Path:
    return fakes.settings.game_state_root / GAME


def files(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


async def started_with_state(lifecycle: Lifecycle, fakes: Fakes) -> str:
    result = await lifecycle.start(GAME, V100, GM)
    assert result.record is not None and result.record.current_container_id
    (state_dir(fakes) / "game.dat").write_bytes(b"turn=41\n")
    (state_dir(fakes) / "saves").mkdir()
    (state_dir(fakes) / "saves" / "1.sav").write_bytes(b"\x00\x01save")
    return result.record.current_container_id


def corrupt_on_next_start(fakes: Fakes) -> None:
    """The new engine writes to its state as it starts (a bad release)."""

    def corrupt() -> None:
        (state_dir(fakes) / "game.dat").write_bytes(b"garbage")
        (state_dir(fakes) / "corrupted_by").write_text("1.0.1\n")

    fakes.engine.before("start", corrupt)


async def test_a_patch_that_passes_the_gate_keeps_the_new_image(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    old = await started_with_state(lifecycle, fakes)

    result = await lifecycle.patch(GAME, V101, ADMIN)

    assert result.record is not None and result.record.current_image_ref == V101
    new = result.record.current_container_id
    assert new != old and len(fakes.probe.probed) == 3
    assert fakes.repos.patches == {}
    assert [(r.op_kind, r.outcome) for r in fakes.rows(GAME)] == [
        ("start", "success"),
        ("patch", "success"),
    ]
    (snapshot,) = snapshots.game_snapshots(fakes.settings.game_state_root, GAME).iterdir()
    assert files(snapshot) == files(state_dir(fakes))
    assert "1.0.1" not in str(snapshot)


async def test_a_patch_that_fails_the_gate_is_rolled_back_state_included(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    old = await started_with_state(lifecycle, fakes)
    before = files(state_dir(fakes))
    fakes.probe.default = FAILING
    corrupt_on_next_start(fakes)

    with pytest.raises(PatchRolledBack) as raised:
        await lifecycle.patch(GAME, V101, ADMIN)

    assert raised.value.http_status == 502 and raised.value.code == "patch_rolled_back"
    assert "health gate" in raised.value.message and "503" in raised.value.message
    assert f"rolled back to {V100}" in raised.value.message
    record = fakes.record(GAME)
    assert record is not None and record.current_image_ref == V100
    assert record.status == "running" and record.current_container_id not in {old, None}
    live = fakes.engine.owned(GAME)
    assert [c.id for c in live] == [record.current_container_id]
    assert files(state_dir(fakes)) == before  # byte for byte, the bad release's writes gone
    rejected = [
        p
        for p in snapshots.game_snapshots(fakes.settings.game_state_root, GAME).iterdir()
        if p.name.endswith(".rejected")
    ]
    assert len(rejected) == 1 and (rejected[0] / "corrupted_by").exists()
    rows = [row_of(r) for r in fakes.rows(GAME)]
    bad = fakes.publisher.health_events[1].container_id  # the rejected engine
    assert bad not in {old, record.current_container_id}
    assert rows[1:] == [
        {
            "game_id": GAME,
            "op_kind": "patch_rollback",
            "op_source": "admin_rest",
            "outcome": "success",
            "error_code": None,
            "image_ref": V100,
            "previous_image_ref": V101,
            "container_id": record.current_container_id,
        },
        {
            "game_id": GAME,
            "op_kind": "patch",
            "op_source": "admin_rest",
            "outcome": "failure",
            "error_code": "patch_rolled_back",
            "image_ref": V101,
            "previous_image_ref": V100,
            "container_id": bad,
        },
    ]
    events = [(e.event_type.value, e.fields()["details"]) for e in fakes.publisher.health_events]
    assert [kind for kind, _ in events] == [
        "container_started",
        "container_started",
        "probe_failed",
        "container_started",
    ]
    assert V101 in events[1][1] and V100 in events[3][1]
    assert fakes.repos.patches == {}


async def test_a_new_engine_that_does_not_start_is_rolled_back(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    await started_with_state(lifecycle, fakes)
    fakes.engine.fail("start", ContainerStartFailed("start failed: exec format error"))

    with pytest.raises(PatchRolledBack, match="did not start: start failed: exec format error"):
        await lifecycle.patch(GAME, V101, GM)

    record = fakes.record(GAME)
    assert record is not None and record.current_image_ref == V100 and record.status == "running"


async def test_a_state_dir_over_the_limit_refuses_the_patch_and_touches_nothing(
    make_unit: MakeUnit,
) -> None:
    lifecycle, fakes = make_unit(**GATE, patch_snapshot_max_size=16)
    old = await started_with_state(lifecycle, fakes)
    journal_before = list(fakes.journal)

    with pytest.raises(Conflict, match="RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE"):
        await lifecycle.patch(GAME, V101, GM)

    assert fakes.journal == journal_before
    record = fakes.record(GAME)
    assert record is not None and record.current_container_id == old
    assert fakes.engine.containers[old].running
    assert fakes.repos.patches == {}
    assert not snapshots.game_snapshots(fakes.settings.game_state_root, GAME).exists()


async def test_a_patch_that_breaks_mid_way_is_rolled_back_by_the_reconciler(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    await started_with_state(lifecycle, fakes)
    before = files(state_dir(fakes))
    corrupt_on_next_start(fakes)

    async def broken(endpoint: str, container_id: str) -> ProbeOutcome:
        raise ConnectionResetError("the process lost its network")

    fakes.probe.healthz = broken  # type: ignore[method-assign]
    with pytest.raises(Exception, match="lost its network"):
        await lifecycle.patch(GAME, V101, GM)
    (progress,) = fakes.repos.patches.values()
    assert progress.phase == PatchPhase.GATING and progress.answered

    assert await lifecycle.finish_interrupted_patches() == 1

    record = fakes.record(GAME)
    assert record is not None and record.current_image_ref == V100
    assert files(state_dir(fakes)) == before
    assert [(r.op_kind, r.op_source, r.outcome, r.error_code) for r in fakes.rows(GAME)] == [
        ("start", "gm_rest", "success", None),
        ("patch", "gm_rest", "failure", "internal_error"),
        ("patch_rollback", "reconciler", "success", None),
    ]
    assert fakes.repos.patches == {}


async def rtm_died_during_the_gate(lifecycle: Lifecycle, fakes: Fakes) -> PatchProgress:
    """What an RTM killed while its new engine was being probed leaves behind."""
    old = await started_with_state(lifecycle, fakes)
    record = fakes.record(GAME)
    assert record is not None
    taken = snapshots.take(fakes.settings.game_state_root, GAME, state_dir(fakes), fakes.clock(), 0)
    fakes.engine.vanish(old)
    bad = fakes.engine.add_container(GAME, V101)
    (state_dir(fakes) / "game.dat").write_bytes(b"garbage")
    progress = PatchProgress(
        game_id=GAME,
        phase=PatchPhase.GATING.value,
        source="admin_rest",
        from_image_ref=V100,
        to_image_ref=V101,
        from_container_id=old,
        from_status="running",
        new_container_id=bad.id,
        snapshot_path=str(taken),
        started_at=fakes.clock(),
    )
    await fakes.repos.save_patch_progress(progress)
    return progress


async def test_the_next_operation_finishes_an_interrupted_rollback_first(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    progress = await rtm_died_during_the_gate(lifecycle, fakes)

    stopped = await lifecycle.stop(GAME, "admin_request", GM)

    assert stopped.record is not None and stopped.record.status == "stopped"
    assert stopped.record.current_image_ref == V100
    assert (state_dir(fakes) / "game.dat").read_bytes() == b"turn=41\n"
    assert progress.new_container_id not in fakes.engine.containers
    rows = [(r.op_kind, r.op_source, r.outcome, r.error_code) for r in fakes.rows(GAME)]
    assert rows == [
        ("start", "gm_rest", "success", None),
        ("patch_rollback", "gm_rest", "success", None),
        ("patch", "admin_rest", "failure", "patch_rolled_back"),
        ("stop", "gm_rest", "success", None),
    ]
    (failed,) = [r for r in fakes.rows(GAME) if r.op_kind == "patch"]
    assert (
        failed.error_message is not None and "interrupted in phase gating" in failed.error_message
    )


async def test_a_patch_interrupted_before_the_stop_changed_nothing(
    gated: tuple[Lifecycle, Fakes],
) -> None:
    lifecycle, fakes = gated
    old = await started_with_state(lifecycle, fakes)
    await fakes.repos.save_patch_progress(
        PatchProgress(
            game_id=GAME,
            phase=PatchPhase.STOPPING.value,
            source="gm_rest",
            from_image_ref=V100,
            to_image_ref=V101,
            from_container_id=old,
            from_status="running",
            started_at=fakes.clock(),
        )
    )

    assert await lifecycle.finish_interrupted_patches() == 1

    record = fakes.record(GAME)
    assert record is not None and record.current_container_id == old
    *_, last = fakes.rows(GAME)
    assert (last.op_kind, last.outcome, last.error_code) == (
        "patch",
        "failure",
        "patch_rolled_back",
    )
    assert last.error_message is not None and "nothing changed" in last.error_message
    assert fakes.repos.patches == {}


async def test_snapshots_are_kept_to_their_count(make_unit: MakeUnit) -> None:
    lifecycle, fakes = make_unit(**GATE, patch_snapshot_keep=2)
    await started_with_state(lifecycle, fakes)
    for tag in ("1.0.1", "1.0.2", "1.0.3"):
        fakes.engine.add_image(f"galaxy/test-engine:{tag}")
        fakes.clock.advance(seconds=1)
        await lifecycle.patch(GAME, f"galaxy/test-engine:{tag}", GM)
    kept = sorted(snapshots.game_snapshots(fakes.settings.game_state_root, GAME).iterdir())
    assert len(kept) == 2


async def test_with_the_gate_off_a_patch_is_the_plain_replacement(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    await started_with_state(lifecycle, fakes)
    fakes.probe.default = FAILING
    result = await lifecycle.patch(GAME, V101, GM)
    assert result.record is not None and result.record.current_image_ref == V101
    assert fakes.probe.probed == [] and fakes.repos.patches == {}
    assert not snapshots.game_snapshots(fakes.settings.game_state_root, GAME).exists()


# -------------------------------------------------------------- wait ready


async def test_a_start_that_waits_answers_after_the_first_healthy_probe(
    make_unit: MakeUnit,
) -> None:
    lifecycle, fakes = make_unit(start_ready_timeout="300ms", patch_gate_interval="10ms")
    result = await lifecycle.start(GAME, V100, GM, wait_ready=True)
    assert result.record is not None and result.record.status == "running"
    assert fakes.probe.probed == [
        (result.record.engine_endpoint, result.record.current_container_id)
    ]


async def test_a_start_whose_engine_never_answers_fails_and_leaves_nothing(
    make_unit: MakeUnit,
) -> None:
    lifecycle, fakes = make_unit(
        start_wait_ready="on", start_ready_timeout="100ms", patch_gate_interval="10ms"
    )
    fakes.probe.default = ProbeOutcome(ok=False, error="connection refused")

    with pytest.raises(ContainerStartFailed, match=r"never became ready.*connection refused"):
        await lifecycle.start(GAME, V100, GM)

    assert fakes.record(GAME) is None
    assert fakes.engine.owned(GAME) == []
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
    (intent,) = fakes.publisher.notification_intents
    assert intent.type == "runtime.container_start_failed"
    # The request's own choice wins over the setting.
    ok = await lifecycle.start(GAME, V100, GM, wait_ready=False)
    assert ok.record is not None and ok.record.status == "running"
