"""The Lobby door's edge: stream entries in, lifecycle calls, job results out.

Nothing here decides a lifecycle rule. An entry is decoded into fields, its
envelope (`requested_at_ms`) is checked, and the fields go to
`core.lifecycle.start/stop`, which validates `game_id`, `image_ref` and
`reason` itself and raises the SPEC's errors. `job_result` is the one table
that turns what the lifecycle returned or raised into a `runtime:job_results`
entry.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from rtm_core.domain.errors import InvalidRequest, RtmError, StartConfigInvalid
from rtm_core.domain.vocabulary import OpKind, OpSource, Outcome
from rtm_core.domain.wire import JobResult
from rtm_core.lifecycle import OperationResult
from rtm_core.runtime.bootstrap import Core
from rtm_core.settings import Settings
from rtm_jobs.schemas import StartJobEntry, StopJobEntry

Fields = dict[str, str]
RawFields = Mapping[bytes, bytes] | None
Call = Callable[[Core, Fields], Awaitable[OperationResult]]

#: What an unexpected exception (not an `RtmError`) becomes on the wire.
INTERNAL_ERROR = "internal_error"


class PoisonEntry(Exception):
    """An entry that names no game: there is nobody to send a result to."""


async def _start(core: Core, fields: Fields) -> OperationResult:
    return await core.lifecycle.start(
        fields["game_id"],
        fields.get("image_ref", ""),
        OpSource.LOBBY_STREAM,
        lease_wait=core.settings.game_lease_ttl_seconds,
    )


async def _stop(core: Core, fields: Fields) -> OperationResult:
    return await core.lifecycle.stop(
        fields["game_id"],
        fields.get("reason", ""),
        OpSource.LOBBY_STREAM,
        lease_wait=core.settings.game_lease_ttl_seconds,
    )


@dataclass(frozen=True)
class JobStream:
    """One incoming stream: where it lives, how its loop is named, what it calls."""

    label: str  # `stream` attribute of rtmanager.jobs_processed
    worker: str  # `worker` field of `worker started`
    op_kind: OpKind
    offset_key: str
    fields: tuple[str, ...]
    #: The error a malformed envelope raises: what the lifecycle raises for bad input.
    invalid: type[RtmError]
    call: Call
    stream_setting: str

    def stream(self, settings: Settings) -> str:
        name = getattr(settings, self.stream_setting)
        assert isinstance(name, str)
        return name


START_JOBS = JobStream(
    label="start_jobs",
    worker="start_jobs_consumer",
    op_kind=OpKind.START,
    offset_key="rtmanager:stream_offsets:startjobs",
    fields=tuple(StartJobEntry.model_fields),
    invalid=StartConfigInvalid,
    call=_start,
    stream_setting="redis_start_jobs_stream",
)
STOP_JOBS = JobStream(
    label="stop_jobs",
    worker="stop_jobs_consumer",
    op_kind=OpKind.STOP,
    offset_key="rtmanager:stream_offsets:stopjobs",
    fields=tuple(StopJobEntry.model_fields),
    invalid=InvalidRequest,
    call=_stop,
    stream_setting="redis_stop_jobs_stream",
)


def decode_entry(raw: RawFields) -> Fields:
    """Field/value pairs as text. An entry that carries one field holding a JSON
    object (a producer that writes the job as one blob) is unpacked into fields.

    Raises `PoisonEntry` for an entry that was deleted (trimmed while pending)
    or a blob that is not a JSON object.
    """
    if not raw:
        raise PoisonEntry("entry has no fields (deleted or trimmed)")
    fields = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in raw.items()}
    if "game_id" in fields or len(fields) != 1:
        return fields
    ((name, blob),) = fields.items()
    try:
        document = json.loads(blob)
    except ValueError:
        raise PoisonEntry(f"field {name!r} is not JSON and the entry has no game_id") from None
    if not isinstance(document, dict):
        raise PoisonEntry(f"field {name!r} is not a JSON object")
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in document.items()
    }


def game_id_of(fields: Fields) -> str:
    """The game an entry is about, as written; `PoisonEntry` when it names none."""
    game_id = fields.get("game_id", "")
    if not game_id:
        raise PoisonEntry("entry has no game_id")
    return game_id


def check_envelope(jobs: JobStream, fields: Fields) -> None:
    """`requested_at_ms` must be there and be decimal milliseconds.

    The payload fields proper (`image_ref`, `reason`, `game_id`) are the
    lifecycle's to judge, so a bad one gets exactly the error REST would get.
    """
    value = fields.get("requested_at_ms")
    if value is None:
        raise jobs.invalid("requested_at_ms is required")
    if not (value.isascii() and value.isdigit()):
        raise jobs.invalid("requested_at_ms must be epoch milliseconds (decimal digits)")


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
            )
        case RtmError(code=code, message=message):
            return JobResult(game_id, Outcome.FAILURE, error_code=code, error_message=message)
        case _:
            message = str(outcome) or type(outcome).__name__
            return JobResult(
                game_id, Outcome.FAILURE, error_code=INTERNAL_ERROR, error_message=message
            )
