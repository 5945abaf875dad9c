"""The Lobby door's edge: stream entries in, lifecycle calls, job results out.

Nothing here decides a lifecycle rule, and nothing here knows a field of
the wire: an entry is decoded by `rtm_core.domain.wire` (`StartJob`,
`StopJob`), which checks what only the stream carries, and the job goes to
`lifecycle.start/stop`, which validates `game_id`, `image_ref` and `reason`
itself and raises the SPEC's errors. The entry id goes along as the job's
place in its game's order: a job re-delivered after a newer one of its game
was applied is answered from the game's state (superseded), not run again.
`job_result` is the one table that turns what the lifecycle returned or
raised into a `runtime:job_results` entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from rtm_core.domain.errors import InternalError, InvalidRequest, RtmError, StartConfigInvalid
from rtm_core.domain.vocabulary import OpKind, OpSource, Outcome
from rtm_core.domain.wire import Job, JobResult, MalformedJob, StartJob, StopJob
from rtm_core.lifecycle import OperationResult
from rtm_core.settings import Settings
from rtm_jobs.bootstrap import JobsDeps

J = TypeVar("J", bound=Job)


async def _start(deps: JobsDeps, job: StartJob, entry_id: str) -> OperationResult:
    return await deps.lifecycle.start(
        job.game_id,
        job.image_ref,
        OpSource.LOBBY_STREAM,
        lease_wait=deps.settings.game_lease_ttl_seconds,
        job_id=entry_id,
    )


async def _stop(deps: JobsDeps, job: StopJob, entry_id: str) -> OperationResult:
    return await deps.lifecycle.stop(
        job.game_id,
        job.reason,
        OpSource.LOBBY_STREAM,
        lease_wait=deps.settings.game_lease_ttl_seconds,
        job_id=entry_id,
    )


@dataclass(frozen=True)
class JobStream(Generic[J]):
    """One incoming stream: where it lives, how its loop is named, what it calls."""

    label: str  # `stream` attribute of rtmanager.jobs_processed
    worker: str  # `worker` field of `worker started`
    op_kind: OpKind
    offset_key: str
    shape: type[J]
    #: What a malformed job is answered with: what the lifecycle raises for bad input.
    invalid: type[RtmError]
    #: Runs the job; the entry id orders it among the game's jobs (`lifecycle.operation.Job`).
    call: Callable[[JobsDeps, J, str], Awaitable[OperationResult]]
    stream_setting: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.shape.model_fields)

    def stream(self, settings: Settings) -> str:
        name = getattr(settings, self.stream_setting)
        assert isinstance(name, str)
        return name

    def refusal(self, malformed: MalformedJob) -> RtmError:
        """A malformed job's error, with the SPEC code of this stream's bad input."""
        return self.invalid(str(malformed))


START_JOBS = JobStream(
    label="start_jobs",
    worker="start_jobs_consumer",
    op_kind=OpKind.START,
    offset_key="rtmanager:stream_offsets:startjobs",
    shape=StartJob,
    invalid=StartConfigInvalid,
    call=_start,
    stream_setting="redis_start_jobs_stream",
)
STOP_JOBS = JobStream(
    label="stop_jobs",
    worker="stop_jobs_consumer",
    op_kind=OpKind.STOP,
    offset_key="rtmanager:stream_offsets:stopjobs",
    shape=StopJob,
    invalid=InvalidRequest,
    call=_stop,
    stream_setting="redis_stop_jobs_stream",
)


def job_result(game_id: str, outcome: OperationResult | BaseException) -> JobResult:
    """The one table from a job's outcome to its `runtime:job_results` entry.

    | the job                        | outcome | error_code     | container_id, endpoint |
    |--------------------------------|---------|----------------|------------------------|
    | did what it asked              | success | ""             | the record's           |
    | found it done already (replay) | success | replay_no_op   | the record's           |
    | raised an `RtmError`           | failure | its SPEC code  | ""                     |
    | raised anything else           | failure | internal_error | ""                     |
    """
    match outcome:
        case OperationResult(record=record):
            return JobResult(
                game_id=game_id,
                outcome=Outcome.SUCCESS,
                container_id=(record.current_container_id or "") if record else "",
                engine_endpoint=(record.engine_endpoint or "") if record else "",
                error_code=outcome.error_code,
                error_message="",
            )
        case RtmError(code=code, message=message):
            return _failure(game_id, code, message)
        case _:
            message = str(outcome) or type(outcome).__name__
            return _failure(game_id, InternalError.code, message)


def _failure(game_id: str, code: str, message: str) -> JobResult:
    return JobResult(
        game_id=game_id,
        outcome=Outcome.FAILURE,
        container_id="",
        engine_endpoint="",
        error_code=code,
        error_message=message,
    )
