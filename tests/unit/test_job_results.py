"""The stream edge (SPEC §7): `rtm_jobs.jobs.job_result`, the one table from what
a job's lifecycle call returned or raised to its `runtime:job_results` entry."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from rtm_core.domain import errors
from rtm_core.domain.errors import RtmError
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.wire import MalformedJob, StartJob, StopJob
from rtm_core.lifecycle import Lifecycle, OperationResult
from rtm_jobs.jobs import START_JOBS, STOP_JOBS, job_result
from unit.fakes import Fakes
from unit.helpers import GAME, LOBBY, MISSING, V100, V101

FIELDS = [
    "game_id",
    "outcome",
    "container_id",
    "engine_endpoint",
    "error_code",
    "error_message",
    # Issue 13, additive: the job span's trace context (empty: no tracer in this tier).
    "traceparent",
]
RECORD = RuntimeRecord(
    game_id=GAME,
    status="running",
    current_container_id="c0ffee",
    engine_endpoint=f"http://galaxy-game-{GAME}:8080",
)
#: Every SPEC code the lifecycle can raise, one class each.
ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, RtmError) and cls is not RtmError
]


def test_a_done_job_is_a_success_with_the_records_container_and_endpoint() -> None:
    fields = job_result(GAME, OperationResult(record=RECORD)).fields()
    assert list(fields) == FIELDS
    assert fields == {
        "game_id": GAME,
        "outcome": "success",
        "container_id": "c0ffee",
        "engine_endpoint": f"http://galaxy-game-{GAME}:8080",
        "error_code": "",
        "error_message": "",
        "traceparent": "",
    }


def test_a_replay_is_a_success_with_replay_no_op() -> None:
    fields = job_result(GAME, OperationResult(record=RECORD, replay=True)).fields()
    assert (fields["outcome"], fields["error_code"], fields["container_id"]) == (
        "success",
        "replay_no_op",
        "c0ffee",
    )


def test_a_success_without_a_container_leaves_the_fields_empty() -> None:
    stopped = RuntimeRecord(game_id=GAME, status="removed")
    fields = job_result(GAME, OperationResult(record=stopped)).fields()
    assert (fields["container_id"], fields["engine_endpoint"]) == ("", "")


@pytest.mark.parametrize("error", ERRORS, ids=lambda cls: cls.__name__)
def test_an_rtm_error_is_a_failure_with_its_spec_code(error: type[RtmError]) -> None:
    fields = job_result(GAME, error("what went wrong")).fields()
    assert fields == {
        "game_id": GAME,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": error.code,
        "error_message": "what went wrong",
        "traceparent": "",
    }


@pytest.mark.parametrize(
    ("exc", "message"),
    [(ValueError("bad state"), "bad state"), (RuntimeError(), "RuntimeError")],
)
def test_anything_else_is_a_failure_with_internal_error(exc: Exception, message: str) -> None:
    fields = job_result(GAME, exc).fields()
    assert (fields["outcome"], fields["error_code"], fields["error_message"]) == (
        "failure",
        "internal_error",
        message,
    )


def test_a_malformed_job_is_refused_with_its_streams_bad_input_code() -> None:
    malformed = MalformedJob(GAME, "requested_at_ms", "must be epoch milliseconds")
    start = job_result(GAME, START_JOBS.refusal(malformed)).fields()
    stop = job_result(GAME, STOP_JOBS.refusal(malformed)).fields()
    assert (start["error_code"], stop["error_code"]) == ("start_config_invalid", "invalid_request")
    assert start["error_message"] == "requested_at_ms must be epoch milliseconds"


async def _outcome(call: Awaitable[OperationResult]) -> OperationResult | RtmError:
    """What the consumer hands `job_result`: the result, or the SPEC error raised."""
    try:
        return await call
    except RtmError as exc:
        return exc


async def test_stream_jobs_over_the_lifecycle_get_the_results_lobby_reads(
    lifecycle: Lifecycle, fakes: Fakes
) -> None:
    """Decoded as the consumer decodes them, run as it runs them, answered by the table."""
    start = StartJob.decode(
        {b"game_id": GAME.encode(), b"image_ref": V100.encode(), b"requested_at_ms": b"1"}
    )
    stop = StopJob.decode(
        {b"game_id": GAME.encode(), b"reason": b"finished", b"requested_at_ms": b"2"}
    )

    started = job_result(
        GAME, await _outcome(lifecycle.start(start.game_id, start.image_ref, LOBBY))
    )
    record = fakes.record(GAME)
    assert record is not None
    assert started.fields() == {
        "game_id": GAME,
        "outcome": "success",
        "container_id": record.current_container_id,
        "engine_endpoint": f"http://galaxy-game-{GAME}:8080",
        "error_code": "",
        "error_message": "",
        "traceparent": "",
    }
    again = job_result(GAME, await _outcome(lifecycle.start(GAME, V100, LOBBY)))
    assert (again.fields()["error_code"], again.fields()["container_id"]) == (
        "replay_no_op",
        record.current_container_id,
    )
    conflict = job_result(GAME, await _outcome(lifecycle.start(GAME, V101, LOBBY)))
    assert (conflict.fields()["outcome"], conflict.fields()["error_code"]) == (
        "failure",
        "conflict",
    )

    stopped = job_result(GAME, await _outcome(lifecycle.stop(stop.game_id, stop.reason, LOBBY)))
    assert stopped.fields()["outcome"] == "success"
    unknown = job_result("g-x", await _outcome(lifecycle.stop("g-x", "finished", LOBBY)))
    assert (unknown.fields()["outcome"], unknown.fields()["error_code"]) == ("failure", "not_found")
    pull = job_result("g-y", await _outcome(lifecycle.start("g-y", MISSING, LOBBY)))
    assert pull.fields()["error_code"] == "image_pull_failed"
    bad_game = job_result("../x", await _outcome(lifecycle.start("../x", V100, LOBBY)))
    assert bad_game.fields()["game_id"] == "../x"  # a job refused for its game_id echoes it
    assert bad_game.fields()["error_code"] == "start_config_invalid"
