"""The AsyncAPI document: committed as generated, and true to the wire.

No dependency needed: the FastStream app is a declaration, never connected.
"""

from __future__ import annotations

import json

from rtm_core.domain.vocabulary import HealthEventType, Outcome
from rtm_core.domain.wire import DeadLetter, HealthEvent, JobResult, NotificationIntent
from rtm_jobs import asyncapi
from rtm_jobs.jobs import START_JOBS, STOP_JOBS


def test_committed_document_is_the_generated_one() -> None:
    committed = asyncapi.DOCUMENT.read_text()
    assert committed == asyncapi.document(), (
        "docs/api/asyncapi.json is stale: run `python -m rtm_jobs.asyncapi --write`"
    )


def _payload_fields(doc: dict, channel: str, optional: tuple[str, ...] = ()) -> list[str]:
    (message,) = doc["channels"][channel]["messages"].values()
    name = message["$ref"].rsplit("/", 1)[-1]
    schema_ref = doc["components"]["messages"][name]["payload"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]
    # Every field but a job's optional ones is always present; `required` keeps
    # the wire order (the document's keys are sorted); optional ones come last.
    assert sorted([*schema["required"], *optional]) == sorted(schema["properties"])
    return [*schema["required"], *optional]


def test_every_stream_is_documented_with_exactly_its_wire_fields() -> None:
    doc = json.loads(asyncapi.document())
    assert doc["asyncapi"] == "3.0.0"
    assert sorted(doc["channels"]) == sorted(
        [
            "runtime:start_jobs",
            "runtime:stop_jobs",
            "runtime:job_results",
            "runtime:health_events",
            "notification:intents",
            "runtime:dead_letter",
        ]
    )
    actions = {name: op["action"] for name, op in doc["operations"].items()}
    assert actions["runtime:start_jobs"] == actions["runtime:stop_jobs"] == "receive"
    assert {actions[c] for c in ("runtime:job_results", "notification:intents")} == {"send"}
    assert actions["runtime:dead_letter"] == "send"

    # What the consumers read and what rtm_core.domain.wire writes, field for field.
    # Issue 13: a job may carry a `traceparent`; results and events always do.
    optional = ("traceparent",)
    assert _payload_fields(doc, "runtime:start_jobs", optional) == list(START_JOBS.fields)
    assert _payload_fields(doc, "runtime:stop_jobs", optional) == list(STOP_JOBS.fields)
    assert START_JOBS.fields == ("game_id", "image_ref", "requested_at_ms", "traceparent")
    assert STOP_JOBS.fields == ("game_id", "reason", "requested_at_ms", "traceparent")
    result = JobResult(
        game_id="g",
        outcome=Outcome.SUCCESS,
        container_id="",
        engine_endpoint="",
        error_code="",
        error_message="",
    )
    assert _payload_fields(doc, "runtime:job_results") == list(result.fields())
    event = HealthEvent(
        game_id="g",
        container_id="c",
        event_type=HealthEventType.CONTAINER_DISAPPEARED,
        details={},
        occurred_at_ms=0,
    )
    assert _payload_fields(doc, "runtime:health_events") == list(event.fields())
    intent = NotificationIntent(
        game_id="g",
        image_ref="i",
        error_code="image_pull_failed",
        error_message="m",
        attempted_at_ms=0,
    )
    assert _payload_fields(doc, "notification:intents") == list(intent.fields())
    assert _payload_fields(doc, "notification:intents") == ["envelope"]
    letter = DeadLetter(
        source_stream="runtime:start_jobs",
        source_id="1-0",
        deliveries=6,
        dead_letter_reason="r",
        dead_lettered_at_ms=0,
    )
    assert _payload_fields(doc, "runtime:dead_letter") == list(letter.fields())


def test_a_dead_letter_is_the_job_as_written_then_its_own_fields() -> None:
    """Nothing of the job is lost or renamed but a field named like one of the
    dead letter's own (a stop job's `reason` is not: the copy's is `dead_letter_reason`)."""
    letter = DeadLetter(
        source_stream="runtime:stop_jobs",
        source_id="1714081234567-0",
        deliveries=6,
        dead_letter_reason="delivered 6 times",
        dead_lettered_at_ms=1714081239999,
    )
    job = {b"game_id": b"g", b"reason": b"cancelled", b"requested_at_ms": b"1", b"deliveries": b"x"}
    assert letter.entry(job) == [
        (b"game_id", b"g"),
        (b"reason", b"cancelled"),
        (b"requested_at_ms", b"1"),
        (b"original_deliveries", b"x"),
        (b"source_stream", b"runtime:stop_jobs"),
        (b"source_id", b"1714081234567-0"),
        (b"deliveries", b"6"),
        (b"dead_letter_reason", b"delivered 6 times"),
        (b"dead_lettered_at_ms", b"1714081239999"),
    ]
    doc = json.loads(asyncapi.document())
    schema = doc["components"]["schemas"]["DeadLetterEntry"]
    assert schema["additionalProperties"]["type"] == "string"  # the job's own fields
    assert not set(schema["properties"]) & set(START_JOBS.fields + STOP_JOBS.fields)
