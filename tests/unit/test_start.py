"""Start (SPEC §6): fresh, replay, conflict, replacement, and every way it fails."""

from __future__ import annotations

import asyncio
import json

import pytest

from rtm_core.domain.errors import (
    Conflict,
    ContainerStartFailed,
    ImagePullFailed,
    OperationInProgress,
    StartConfigInvalid,
)
from rtm_core.domain.wire import now_ms
from rtm_core.lifecycle import Lifecycle
from unit.fakes import EPOCH, Fakes, MakeUnit
from unit.helpers import (
    BAD_GAME_IDS,
    GAME,
    GM,
    LOBBY,
    MISSING,
    V100,
    V101,
    intent_fields,
    row_of,
)


async def test_fresh_start_runs_a_labelled_engine_and_records_it(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    before = now_ms()
    result = await lifecycle.start(GAME, V100, GM)
    after = now_ms()

    assert not result.replay and result.error_code == ""
    (container,) = fakes.engine.owned(GAME)
    assert container.name == f"galaxy-game-{GAME}" and container.state == "running"
    assert container.labels == {
        "com.galaxy.owner": "rtmanager",
        "com.galaxy.game_id": GAME,
        "com.galaxy.stack": "unit",
        "com.galaxy.image_ref": V100,
        "com.galaxy.cpu_quota": "1",
        "com.galaxy.memory": "512m",
        "com.galaxy.pids_limit": "512",
    }
    spec = fakes.engine.specs[container.id]
    state_dir = fakes.settings.game_state_root / GAME
    assert (spec.network, spec.state_host_path) == ("unit-net", str(state_dir))
    assert (spec.state_mount_path, spec.state_env_name) == (
        "/var/lib/galaxy-game",
        "GAME_STATE_PATH",
    )
    assert (spec.nano_cpus, spec.memory, spec.pids_limit) == (10**9, 512 * 1024**2, 512)
    assert state_dir.is_dir() and state_dir.stat().st_mode & 0o777 == 0o750

    record = fakes.record(GAME)
    assert record is not None and record == result.record
    assert record.status == "running"
    assert record.current_container_id == container.id
    assert record.current_image_ref == V100
    assert record.engine_endpoint == f"http://galaxy-game-{GAME}:8080"
    assert record.state_path == str(state_dir)
    assert record.docker_network == "unit-net"
    assert (record.started_at, record.last_op_at, record.created_at) == (EPOCH, EPOCH, EPOCH)
    assert (record.stopped_at, record.removed_at) == (None, None)

    (row,) = fakes.rows(GAME)
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "gm_rest",
        "outcome": "success",
        "error_code": None,
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": container.id,
    }
    assert row.error_message is None and row.id is not None

    (event,) = fakes.publisher.health_events
    assert before <= event.occurred_at_ms <= after
    assert event.fields() == {
        "game_id": GAME,
        "container_id": container.id,
        "event_type": "container_started",
        "occurred_at_ms": str(event.occurred_at_ms),
        "details": json.dumps({"image_ref": V100}, separators=(",", ":")),
        "traceparent": "",
    }
    snapshot = await fakes.repos.get_snapshot(GAME)
    assert snapshot is not None
    assert (snapshot.status, snapshot.source, snapshot.container_id) == (
        "container_started",
        "inspect",
        container.id,
    )
    assert fakes.lobby.looked_up == [GAME]
    assert fakes.publisher.notification_intents == []
    assert fakes.counter("operations", op_kind="start", outcome="success") == 1
    assert fakes.counter("health_events", event_type="container_started") == 1
    assert fakes.leases.holders == {}


async def test_image_labels_override_the_default_resources(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    limited = "galaxy/test-engine-limited:1.0.0"
    fakes.engine.add_image(
        limited,
        {"com.galaxy.cpu_quota": "0.5", "com.galaxy.memory": "64m", "com.galaxy.pids_limit": "64"},
    )
    await lifecycle.start(GAME, limited, GM)
    (container,) = fakes.engine.owned(GAME)
    spec = fakes.engine.specs[container.id]
    assert (spec.nano_cpus, spec.memory, spec.pids_limit) == (500_000_000, 64 * 1024**2, 64)
    labels = container.labels
    assert (labels["com.galaxy.cpu_quota"], labels["com.galaxy.memory"]) == ("0.5", "64m")
    assert labels["com.galaxy.pids_limit"] == "64"


async def test_unusable_image_resource_labels_are_start_config_invalid(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    broken = "galaxy/test-engine-broken:1.0.0"
    fakes.engine.add_image(broken, {"com.galaxy.cpu_quota": "0"})
    with pytest.raises(StartConfigInvalid, match="resource labels"):
        await lifecycle.start(GAME, broken, GM)
    assert fakes.engine.owned(GAME) == []
    assert fakes.record(GAME) is None
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", "start_config_invalid")
    (intent,) = fakes.publisher.notification_intents
    assert intent.fields() == intent_fields(intent, GAME, broken, "start_config_invalid")


async def test_start_twice_with_the_same_image_is_a_replay(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    first = await lifecycle.start(GAME, V100, GM)
    assert first.record is not None
    fakes.clock.advance(seconds=5)
    again = await lifecycle.start(GAME, V100, LOBBY)

    assert again.replay and again.error_code == "replay_no_op"
    assert again.record is not None
    assert again.record.current_container_id == first.record.current_container_id
    record = fakes.record(GAME)
    assert record is not None
    assert record.started_at == EPOCH and record.last_op_at == fakes.clock.now
    assert len(fakes.engine.owned(GAME)) == 1
    first_row, replay_row = fakes.rows(GAME)
    assert (first_row.outcome, first_row.error_code) == ("success", None)
    assert row_of(replay_row) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "lobby_stream",
        "outcome": "success",
        "error_code": "replay_no_op",
        "image_ref": V100,
        "previous_image_ref": V100,
        "container_id": first.record.current_container_id,
    }
    # A replay neither asks Lobby again nor announces a new container.
    assert fakes.lobby.looked_up == [GAME]
    assert len(fakes.publisher.health_events) == 1


async def test_start_with_another_image_while_running_is_a_conflict(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    first = await lifecycle.start(GAME, V100, GM)
    assert first.record is not None
    with pytest.raises(Conflict, match="use patch"):
        await lifecycle.start(GAME, V101, GM)

    assert fakes.record(GAME) == first.record
    (container,) = fakes.engine.owned(GAME)
    assert container.id == first.record.current_container_id and container.running
    assert row_of(fakes.rows(GAME)[-1]) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "gm_rest",
        "outcome": "failure",
        "error_code": "conflict",
        "image_ref": V101,
        "previous_image_ref": V100,
        "container_id": first.record.current_container_id,
    }
    assert fakes.publisher.notification_intents == []


async def test_a_running_record_whose_engine_died_is_started_afresh(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    first = await lifecycle.start(GAME, V100, GM)
    assert first.record is not None and first.record.current_container_id
    old = first.record.current_container_id
    fakes.engine.exit(old, 137)

    again = await lifecycle.start(GAME, V100, GM)
    assert not again.replay and again.record is not None
    assert again.record.current_container_id != old
    assert [c.id for c in fakes.engine.owned(GAME)] == [again.record.current_container_id]
    # The dead one held the name: it was ours, so it was retired (marked first).
    assert f"mark {old}" in fakes.journal and old in fakes.exits.marked


@pytest.mark.parametrize("then", ["stop", "stop+cleanup"])
async def test_a_stopped_or_removed_runtime_gets_a_fresh_container(
    lifecycle: Lifecycle, fakes: Fakes, then: str
) -> None:
    first = await lifecycle.start(GAME, V100, GM)
    assert first.record is not None
    old = first.record.current_container_id
    await lifecycle.stop(GAME, "finished", GM)
    if then == "stop+cleanup":
        await lifecycle.cleanup(GAME, GM)
    fakes.clock.advance(minutes=1)

    again = await lifecycle.start(GAME, V100, GM)
    assert again.record is not None and not again.replay
    new = again.record.current_container_id
    assert new != old
    assert [c.id for c in fakes.engine.owned(GAME)] == [new]
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert (record.stopped_at, record.removed_at) == (None, None)
    assert record.started_at == fakes.clock.now and record.created_at == EPOCH
    last = fakes.rows(GAME)[-1]
    assert (last.op_kind, last.outcome, last.container_id) == ("start", "success", new)


@pytest.mark.parametrize("bad", [*BAD_GAME_IDS, "g1\n"])
async def test_an_invalid_game_id_is_refused_and_nothing_is_written(
    lifecycle: Lifecycle, fakes: Fakes, bad: str
) -> None:
    with pytest.raises(StartConfigInvalid, match="game_id"):
        await lifecycle.start(bad, V100, GM)
    assert fakes.repos.op_log == [] and fakes.repos.records == {}
    assert fakes.leases.granted == []
    assert fakes.engine.containers == {} and fakes.journal == []
    assert list(fakes.settings.game_state_root.iterdir()) == []
    assert fakes.publisher.notification_intents == []
    assert fakes.lobby.looked_up == []


@pytest.mark.parametrize(
    "bad", ["", "UPPER/case:1.0.0", "galaxy/test engine:1", "galaxy/test-engine:", "a" * 256]
)
async def test_a_bad_image_ref_is_start_config_invalid_with_a_notification(
    lifecycle: Lifecycle, fakes: Fakes, bad: str
) -> None:
    with pytest.raises(StartConfigInvalid, match="image_ref"):
        await lifecycle.start(GAME, bad, GM)
    (row,) = fakes.rows(GAME)
    assert (row.op_kind, row.outcome, row.error_code, row.image_ref) == (
        "start",
        "failure",
        "start_config_invalid",
        bad,
    )
    assert row.error_message
    # The one row is all that is written: no record, no container, no state dir.
    assert fakes.record(GAME) is None and fakes.engine.containers == {}
    assert list(fakes.settings.game_state_root.iterdir()) == []
    (intent,) = fakes.publisher.notification_intents
    assert intent.fields() == intent_fields(intent, GAME, bad, "start_config_invalid")


async def test_an_image_outside_the_allowed_prefixes_is_refused(make_unit: MakeUnit) -> None:
    lifecycle, fakes = make_unit(image_allowed_prefixes="registry.galaxy.local/,galaxy/test-")
    allowed = await lifecycle.start("g-ok", V100, GM)
    assert allowed.record is not None

    outside = "elsewhere.example/engine:1.0.0"
    with pytest.raises(StartConfigInvalid, match="allowed prefixes"):
        await lifecycle.start(GAME, outside, GM)
    assert fakes.engine.owned(GAME) == [] and fakes.record(GAME) is None
    assert fakes.engine.pulls == []
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", "start_config_invalid")
    (intent,) = fakes.publisher.notification_intents
    assert intent.type == "runtime.start_config_invalid"
    assert intent.fields() == intent_fields(intent, GAME, outside, "start_config_invalid")


async def test_a_failed_pull_is_image_pull_failed_with_a_notification(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    before = now_ms()
    with pytest.raises(ImagePullFailed):
        await lifecycle.start(GAME, MISSING, GM)
    after = now_ms()

    assert fakes.engine.pulls == [MISSING]
    assert fakes.record(GAME) is None and fakes.engine.owned(GAME) == []
    (row,) = fakes.rows(GAME)
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "gm_rest",
        "outcome": "failure",
        "error_code": "image_pull_failed",
        "image_ref": MISSING,
        "previous_image_ref": None,
        "container_id": None,
    }
    (intent,) = fakes.publisher.notification_intents
    assert before <= intent.attempted_at_ms <= after
    assert intent.error_message == row.error_message
    assert intent.fields() == intent_fields(intent, GAME, MISSING, "image_pull_failed")
    assert fakes.publisher.health_events == []


async def test_an_image_in_the_registry_is_pulled_then_started(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.engine.registry[MISSING] = {}
    result = await lifecycle.start(GAME, MISSING, GM)
    assert result.record is not None and result.record.current_image_ref == MISSING
    assert fakes.engine.pulls == [MISSING]


@pytest.mark.parametrize(
    ("policy", "image", "pulled", "error"),
    [
        ("never", V100, [], None),
        ("never", MISSING, [], ImagePullFailed),
        ("if_not_present", V100, [], None),
        ("always", V100, [V100], ImagePullFailed),  # present, but the registry lacks it
    ],
)
async def test_the_pull_policy_decides_when_to_pull(
    make_unit: MakeUnit,
    policy: str,
    image: str,
    pulled: list[str],
    error: type[Exception] | None,
) -> None:
    lifecycle, fakes = make_unit(image_pull_policy=policy)
    if error is None:
        await lifecycle.start(GAME, image, GM)
    else:
        with pytest.raises(error):
            await lifecycle.start(GAME, image, GM)
    assert fakes.engine.pulls == pulled


async def test_a_failed_container_start_is_container_start_failed_with_a_notification(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.engine.fail("start", ContainerStartFailed("start failed: OCI runtime create failed"))
    with pytest.raises(ContainerStartFailed, match="OCI runtime"):
        await lifecycle.start(GAME, V100, GM)
    assert fakes.engine.containers == {} and fakes.record(GAME) is None
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code, row.error_message) == (
        "failure",
        "container_start_failed",
        "start failed: OCI runtime create failed",
    )
    (intent,) = fakes.publisher.notification_intents
    assert intent.fields() == intent_fields(intent, GAME, V100, "container_start_failed")


async def test_a_leftover_of_ours_holding_the_name_is_retired_and_the_start_retried(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """A container created before a crash, with no record, does not block the next start."""
    leftover = fakes.engine.add_container(GAME, V100)
    result = await lifecycle.start(GAME, V100, GM)

    assert result.record is not None and not result.replay
    assert [c.id for c in fakes.engine.owned(GAME)] == [result.record.current_container_id]
    assert fakes.journal.index(f"mark {leftover.id}") < fakes.journal.index(f"stop {leftover.id}")
    assert f"remove {leftover.id}" in fakes.journal
    assert [r.outcome for r in fakes.rows(GAME)] == ["success"]


async def test_a_foreign_container_holding_the_name_fails_the_start_untouched(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """Someone else's galaxy-game-<id> (another stack) keeps the name and keeps running."""
    foreign = fakes.engine.add_container(GAME, V100, stack="another-stack")
    with pytest.raises(ContainerStartFailed, match="already in use"):
        await lifecycle.start(GAME, V100, GM)

    assert fakes.engine.containers == {foreign.id: foreign}
    assert fakes.exits.marked == set()
    assert not [e for e in fakes.journal if e.startswith(("stop", "remove"))]
    (row,) = fakes.rows(GAME)
    assert (row.outcome, row.error_code) == ("failure", "container_start_failed")
    (intent,) = fakes.publisher.notification_intents
    assert intent.type == "runtime.container_start_failed"


async def test_a_busy_game_is_operation_in_progress_with_one_failure_row(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.leases.occupy(GAME)
    with pytest.raises(OperationInProgress):
        await lifecycle.start(GAME, V100, GM)

    (row,) = fakes.rows(GAME)
    assert row_of(row) == {
        "game_id": GAME,
        "op_kind": "start",
        "op_source": "gm_rest",
        "outcome": "failure",
        "error_code": "operation_in_progress",
        "image_ref": V100,
        "previous_image_ref": None,
        "container_id": None,
    }
    assert fakes.engine.containers == {} and fakes.journal == []
    assert fakes.leases.holders == {GAME: "someone-else"}  # the other holder keeps it
    assert fakes.publisher.notification_intents == []
    assert fakes.counter("lease_conflicts") == 1


async def test_a_stream_start_waits_for_the_lease_then_runs(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.leases.occupy(GAME)
    asyncio.get_running_loop().call_later(0.05, fakes.leases.release, GAME)
    result = await lifecycle.start(GAME, V100, LOBBY, lease_wait=5)
    assert result.record is not None and result.record.status == "running"
    assert fakes.leases.holders == {}


async def test_a_lost_notification_does_not_hide_the_start_failure(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.publisher.notification_failure = ConnectionError("redis gone")
    with pytest.raises(ImagePullFailed):
        await lifecycle.start(GAME, MISSING, GM)
    (row,) = fakes.rows(GAME)
    assert row.error_code == "image_pull_failed"


async def test_a_lost_health_event_does_not_undo_a_committed_start(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    fakes.publisher.health_failure = ConnectionError("redis gone")
    result = await lifecycle.start(GAME, V100, GM)
    assert result.record is not None
    record = fakes.record(GAME)
    assert record is not None and record.status == "running"
    assert [r.outcome for r in fakes.rows(GAME)] == ["success"]
