"""Trace context across the streams (issue 13): a job entry's `traceparent`
parents the job's span, and the result and health events RTM writes carry the
trace context of the span that wrote them. Real Redis, PostgreSQL, Docker; the
spans as the session's tracer provider records them (`finished_spans`)."""

from __future__ import annotations

from harness import stream_entries
from jobs.conftest import RunJobs
from jobs.helpers import REQUESTED_AT_MS, TRACEPARENT, V100, untraced, wait_results
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from rig import Rig

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
LOBBY_TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def parts(traceparent: str) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent."""
    assert TRACEPARENT.match(traceparent), traceparent
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


def job_spans(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and s.kind == SpanKind.CONSUMER]


async def test_a_jobs_traceparent_parents_its_span_and_its_result(
    core: Rig, run_jobs: RunJobs, redis: Redis, finished_spans: list[ReadableSpan], game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    # redis-cli XADD runtime:start_jobs '*' game_id … image_ref … requested_at_ms … traceparent …
    fields = {
        "game_id": game_id,
        "image_ref": V100,
        "requested_at_ms": REQUESTED_AT_MS,
        "traceparent": LOBBY_TRACEPARENT,
    }
    await redis.xadd(settings.redis_start_jobs_stream, fields)  # type: ignore[arg-type]

    (result,) = await wait_results(redis, settings, 1)
    assert untraced(result)["outcome"] == "success"
    (job,) = job_spans(finished_spans, "rtm.job.start_jobs")
    assert format(job.context.trace_id, "032x") == TRACE_ID
    assert job.parent is not None and job.parent.is_remote
    assert format(job.parent.span_id, "016x") == PARENT_ID
    # The result names the job's span: Lobby's trace goes on through RTM.
    assert parts(result["traceparent"]) == (TRACE_ID, format(job.context.span_id, "016x"))

    # The engine's container_started, published inside the job, is in that trace too.
    (event,) = [
        e
        for e in await stream_entries(redis, settings.redis_health_events_stream)
        if e["game_id"] == game_id
    ]
    event_trace, event_span = parts(event["traceparent"])
    assert event_trace == TRACE_ID
    (publish,) = [s for s in finished_spans if s.name == "rtm.publish health_event"]
    assert (publish.kind, format(publish.context.span_id, "016x")) == (
        SpanKind.PRODUCER,
        event_span,
    )


async def test_a_job_without_a_valid_traceparent_starts_a_trace_of_its_own(
    core: Rig, run_jobs: RunJobs, redis: Redis, finished_spans: list[ReadableSpan], game_id: str
) -> None:
    settings = core.settings
    await run_jobs(core)
    for traceparent in (None, "not-a-traceparent"):
        fields = {"game_id": game_id, "reason": "cancelled", "requested_at_ms": REQUESTED_AT_MS}
        if traceparent is not None:
            fields["traceparent"] = traceparent
        await redis.xadd(settings.redis_stop_jobs_stream, fields)  # type: ignore[arg-type]

    results = await wait_results(redis, settings, 2)
    # A game RTM never saw: not_found, answered all the same, each in a new trace.
    assert [untraced(r)["error_code"] for r in results] == ["not_found", "not_found"]
    spans = job_spans(finished_spans, "rtm.job.stop_jobs")
    assert len(spans) == 2 and all(s.parent is None for s in spans)
    assert {parts(r["traceparent"])[0] for r in results} == {
        format(s.context.trace_id, "032x") for s in spans
    }
    assert TRACE_ID not in {parts(r["traceparent"])[0] for r in results}
