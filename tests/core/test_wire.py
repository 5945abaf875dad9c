"""The wire contract (`rtm_core.domain.wire`) against `001` §Stream Payload
Examples: every shape decoded or encoded to the exact bytes, and refused
with an error that names the field. No Redis: the module is pure."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from rtm_core.domain.vocabulary import HealthEventType, Outcome
from rtm_core.domain.wire import (
    DETAILS,
    ContainerExited,
    ContainerOom,
    HealthEvent,
    JobResult,
    MalformedJob,
    NotificationIntent,
    PoisonEntry,
    StartJob,
    StopJob,
)

GAME = "game-01HZ..."
CONTAINER = "1f2a..."
AT_MS = 1714081234567


def raw(**fields: str) -> dict[bytes, bytes]:
    """An entry as XREADGROUP returns it to a bytes client."""
    return {k.encode(): v.encode() for k, v in fields.items()}


# ------------------------------------------------------------------- jobs in


def test_start_job_of_001_decodes_and_encodes_back() -> None:
    entry = {"game_id": GAME, "image_ref": "galaxy/game:1.4.0", "requested_at_ms": str(AT_MS)}
    job = StartJob.decode(raw(**entry))
    assert (job.game_id, job.image_ref, job.requested_at_ms) == (GAME, "galaxy/game:1.4.0", AT_MS)
    assert job.fields() == entry
    assert list(job.fields()) == ["game_id", "image_ref", "requested_at_ms"]


def test_stop_job_of_001_decodes_and_encodes_back() -> None:
    entry = {"game_id": GAME, "reason": "cancelled", "requested_at_ms": str(AT_MS)}
    job = StopJob.decode(raw(**entry))
    assert (job.game_id, job.reason, job.requested_at_ms) == (GAME, "cancelled", AT_MS)
    assert job.fields() == entry
    assert list(job.fields()) == ["game_id", "reason", "requested_at_ms"]


def test_a_job_written_as_one_json_blob_is_unpacked() -> None:
    blob = json.dumps({"game_id": GAME, "image_ref": "galaxy/game:1.4.0", "requested_at_ms": 1})
    job = StartJob.decode(raw(job=blob))
    assert (job.game_id, job.image_ref, job.requested_at_ms) == (GAME, "galaxy/game:1.4.0", 1)


def test_extra_fields_are_ignored() -> None:
    job = StopJob.decode(raw(game_id=GAME, reason="timeout", requested_at_ms="5", trace="x"))
    assert job.fields() == {"game_id": GAME, "reason": "timeout", "requested_at_ms": "5"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_ref": "x", "requested_at_ms": "1"}, "entry has no game_id"),
        ({"game_id": "", "image_ref": "x", "requested_at_ms": "1"}, "entry has no game_id"),
        ({"payload": '{"game_id": "x", not json'}, "field 'payload' is not JSON"),
        ({"payload": '["game_id"]'}, "field 'payload' is not a JSON object"),
    ],
)
def test_an_entry_that_names_no_game_is_poison(entry: dict[str, str], message: str) -> None:
    with pytest.raises(PoisonEntry, match=message):
        StartJob.decode(raw(**entry))


@pytest.mark.parametrize("entry", [None, {}])
def test_a_deleted_entry_is_poison(entry: dict[bytes, bytes] | None) -> None:
    with pytest.raises(PoisonEntry, match="entry has no fields"):
        StopJob.decode(entry)


@pytest.mark.parametrize("shape", [StartJob, StopJob])
@pytest.mark.parametrize(
    ("requested_at_ms", "problem"),
    [
        (None, "is required"),
        ("", "must be epoch milliseconds (decimal digits)"),
        ("yesterday", "must be epoch milliseconds (decimal digits)"),
        ("-5", "must be epoch milliseconds (decimal digits)"),
        ("١٢٣", "must be epoch milliseconds (decimal digits)"),  # digits, not ASCII
    ],
)
def test_a_bad_requested_at_ms_is_a_field_error_that_keeps_the_game(
    shape: type[StartJob] | type[StopJob], requested_at_ms: str | None, problem: str
) -> None:
    entry = {"game_id": GAME, "image_ref": "x", "reason": "cancelled"}
    if requested_at_ms is not None:
        entry["requested_at_ms"] = requested_at_ms
    with pytest.raises(MalformedJob) as caught:
        shape.decode(raw(**entry))
    error = caught.value
    assert (error.game_id, error.field, error.problem) == (GAME, "requested_at_ms", problem)
    assert str(error) == f"requested_at_ms {problem}"


def test_payload_values_are_left_to_the_lifecycle() -> None:
    # Absent is empty and bad is passed on: the lifecycle refuses them with
    # REST's error (and, on start, its operation-log row and notification).
    start = StartJob.decode(raw(game_id="../escape", requested_at_ms="1"))
    assert (start.game_id, start.image_ref) == ("../escape", "")
    stop = StopJob.decode(raw(game_id=GAME, reason="because", requested_at_ms="1"))
    assert stop.reason == "because"
    assert StopJob.decode(raw(game_id=GAME, requested_at_ms="1")).reason == ""
    undecodable = StartJob.decode(
        {b"game_id": GAME.encode(), b"image_ref": b"\xff\xfe", b"requested_at_ms": b"1"}
    )
    assert undecodable.image_ref == "\ufffd\ufffd"


# ----------------------------------------------------------------- results out


def result(**fields: str) -> JobResult:
    return JobResult.model_validate(fields)


@pytest.mark.parametrize(
    "entry",
    [
        {  # success
            "game_id": GAME,
            "outcome": "success",
            "container_id": CONTAINER,
            "engine_endpoint": "http://galaxy-game-game-01HZ...:8080",
            "error_code": "",
            "error_message": "",
        },
        {  # failure
            "game_id": GAME,
            "outcome": "failure",
            "container_id": "",
            "engine_endpoint": "",
            "error_code": "image_pull_failed",
            "error_message": "pull failed: manifest unknown",
        },
        {  # idempotent replay
            "game_id": GAME,
            "outcome": "success",
            "container_id": CONTAINER,
            "engine_endpoint": "http://galaxy-game-game-01HZ...:8080",
            "error_code": "replay_no_op",
            "error_message": "",
        },
    ],
)
def test_job_results_of_001_are_encoded_field_for_field(entry: dict[str, str]) -> None:
    encoded = result(**entry).fields()
    # 001's fields in 001's order, then issue 13's additive trace context.
    assert encoded == {**entry, "traceparent": ""}
    assert list(encoded) == [*entry, "traceparent"]


def test_every_job_result_field_is_always_given() -> None:
    with pytest.raises(ValidationError) as caught:
        JobResult(game_id=GAME, outcome=Outcome.SUCCESS)  # type: ignore[call-arg]
    missing = sorted(str(e["loc"][0]) for e in caught.value.errors())
    assert missing == ["container_id", "engine_endpoint", "error_code", "error_message"]


def test_a_job_result_outcome_is_success_or_failure() -> None:
    with pytest.raises(ValidationError, match="outcome"):
        result(
            game_id=GAME,
            outcome="maybe",
            container_id="",
            engine_endpoint="",
            error_code="",
            error_message="",
        )


# ----------------------------------------------------------- health events out

#: `001`'s example of each event type: (details as given, `details` on the wire).
HEALTH_001 = {
    HealthEventType.CONTAINER_STARTED: (
        {"image_ref": "galaxy/game:1.4.0"},
        '{"image_ref":"galaxy/game:1.4.0"}',
    ),
    HealthEventType.CONTAINER_EXITED: (
        {"exit_code": 137, "oom": False},
        '{"exit_code":137,"oom":false}',
    ),
    HealthEventType.CONTAINER_OOM: ({"exit_code": 137}, '{"exit_code":137}'),
    HealthEventType.CONTAINER_DISAPPEARED: ({}, "{}"),
    HealthEventType.INSPECT_UNHEALTHY: (
        {"restart_count": 3, "state": "running", "health": "unhealthy"},
        '{"restart_count":3,"state":"running","health":"unhealthy"}',
    ),
    HealthEventType.PROBE_FAILED: (
        {
            "consecutive_failures": 3,
            "last_status": 0,
            "last_error": "context deadline exceeded",
        },
        '{"consecutive_failures":3,"last_status":0,"last_error":"context deadline exceeded"}',
    ),
    HealthEventType.PROBE_RECOVERED: ({"prior_failure_count": 3}, '{"prior_failure_count":3}'),
}


def event(event_type: HealthEventType, details: object) -> HealthEvent:
    return HealthEvent(
        game_id=GAME,
        container_id=CONTAINER,
        event_type=event_type,
        occurred_at_ms=AT_MS,
        details=details,
    )


def test_every_event_type_has_its_details_shape() -> None:
    assert list(DETAILS) == list(HealthEventType)
    assert list(HEALTH_001) == list(HealthEventType)


@pytest.mark.parametrize("event_type", list(HealthEventType))
def test_health_events_of_001_are_encoded_field_for_field(event_type: HealthEventType) -> None:
    details, wire = HEALTH_001[event_type]
    encoded = event(event_type, details).fields()
    assert encoded == {
        "game_id": GAME,
        "container_id": CONTAINER,
        "event_type": event_type.value,
        "occurred_at_ms": str(AT_MS),
        "details": wire,
        "traceparent": "",  # issue 13, additive: set by the publisher's span
    }
    assert list(encoded)[:5] == [
        "game_id",
        "container_id",
        "event_type",
        "occurred_at_ms",
        "details",
    ]


def test_details_keys_take_the_contract_order_whatever_order_they_are_given_in() -> None:
    given = {"health": "unhealthy", "state": "exited", "restart_count": 4}
    encoded = event(HealthEventType.INSPECT_UNHEALTHY, given).fields()
    assert encoded["details"] == '{"restart_count":4,"state":"exited","health":"unhealthy"}'


def test_details_may_be_given_typed() -> None:
    typed = event(HealthEventType.CONTAINER_EXITED, ContainerExited(exit_code=1, oom=True))
    assert typed.fields()["details"] == '{"exit_code":1,"oom":true}'
    assert typed.details == ContainerExited(exit_code=1, oom=True)


@pytest.mark.parametrize(
    ("event_type", "details", "message"),
    [
        (
            HealthEventType.CONTAINER_EXITED,
            {"exit_code": 137},
            "container_exited details: oom: Field required",
        ),
        (
            HealthEventType.CONTAINER_OOM,
            {"exit_code": 137, "oom": True},
            "container_oom details: oom: Extra inputs are not permitted",
        ),
        (
            HealthEventType.CONTAINER_OOM,
            {"exit_code": "137"},  # not silently made a number
            "container_oom details: exit_code: Input should be a valid integer",
        ),
        (
            HealthEventType.CONTAINER_EXITED,
            {"exit_code": 1, "oom": 0},
            "container_exited details: oom: Input should be a valid boolean",
        ),
        (
            HealthEventType.CONTAINER_DISAPPEARED,
            {"exit_code": 1},
            "container_disappeared details: exit_code: Extra inputs are not permitted",
        ),
        (
            HealthEventType.CONTAINER_EXITED,
            ContainerOom(exit_code=137),
            "container_exited takes ContainerExited details",
        ),
    ],
)
def test_details_of_another_shape_are_refused_naming_the_key(
    event_type: HealthEventType, details: object, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        event(event_type, details)
    (error,) = caught.value.errors()
    assert error["loc"] == ("details",)
    assert message in error["msg"]


def test_occurred_at_ms_is_milliseconds() -> None:
    with pytest.raises(ValidationError) as caught:
        HealthEvent(
            game_id=GAME,
            container_id="",
            event_type=HealthEventType.CONTAINER_DISAPPEARED,
            occurred_at_ms="soon",
            details={},
        )
    (error,) = caught.value.errors()
    assert (error["loc"], error["msg"]) == (
        ("occurred_at_ms",),
        "must be epoch milliseconds (decimal digits)",
    )


# ---------------------------------------------------- notification intents out


def test_notification_intent_of_001_is_one_envelope_field() -> None:
    intent = NotificationIntent(
        game_id=GAME,
        image_ref="galaxy/game:1.4.0",
        error_code="image_pull_failed",
        error_message="pull failed: manifest unknown",
        attempted_at_ms=AT_MS,
    )
    encoded = intent.fields()
    assert list(encoded) == ["envelope"]
    assert json.loads(encoded["envelope"]) == {
        "type": "runtime.image_pull_failed",
        "producer": "rtmanager",
        "idempotency_key": "runtime.image_pull_failed:game-01HZ...:1714081234567",
        "audience": {"kind": "admin_email", "email_address_kind": "runtime_image_pull_failed"},
        "payload": {
            "game_id": GAME,
            "image_ref": "galaxy/game:1.4.0",
            "error_code": "image_pull_failed",
            "error_message": "pull failed: manifest unknown",
            "attempted_at_ms": AT_MS,
        },
    }
    assert encoded["envelope"] == (
        '{"type":"runtime.image_pull_failed","producer":"rtmanager",'
        '"idempotency_key":"runtime.image_pull_failed:game-01HZ...:1714081234567",'
        '"audience":{"kind":"admin_email","email_address_kind":"runtime_image_pull_failed"},'
        '"payload":{"game_id":"game-01HZ...","image_ref":"galaxy/game:1.4.0",'
        '"error_code":"image_pull_failed","error_message":"pull failed: manifest unknown",'
        '"attempted_at_ms":1714081234567}}'
    )


@pytest.mark.parametrize(
    ("error_code", "intent_type"),
    [
        ("image_pull_failed", "runtime.image_pull_failed"),
        ("container_start_failed", "runtime.container_start_failed"),
        ("start_config_invalid", "runtime.start_config_invalid"),
    ],
)
def test_the_three_first_touch_failures_notify(error_code: str, intent_type: str) -> None:
    intent = NotificationIntent(
        game_id=GAME, image_ref="x", error_code=error_code, error_message="m", attempted_at_ms=7
    )
    envelope = json.loads(intent.fields()["envelope"])
    assert envelope["type"] == intent_type
    assert envelope["idempotency_key"] == f"{intent_type}:{GAME}:7"
    assert envelope["audience"]["email_address_kind"] == f"runtime_{error_code}"


def test_no_other_error_notifies() -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationIntent(
            game_id=GAME, image_ref="x", error_code="conflict", error_message="m", attempted_at_ms=7
        )
    (error,) = caught.value.errors()
    assert error["loc"] == ("error_code",)
    assert "only image_pull_failed, container_start_failed, start_config_invalid" in error["msg"]


def test_a_jobs_traceparent_is_optional_and_kept_as_written() -> None:
    """Issue 13: absent (every 001 job) it is empty and not written back; given,
    it is kept as text, never judged (a bad one only starts a new trace)."""
    raw = {b"game_id": b"g", b"reason": b"timeout", b"requested_at_ms": b"5"}
    assert StopJob.decode(raw).producer_trace == ""
    traced = StopJob.decode({**raw, b"traceparent": b"00-abc"})
    assert traced.producer_trace == "00-abc"
    assert list(traced.fields()) == ["game_id", "reason", "requested_at_ms", "traceparent"]
