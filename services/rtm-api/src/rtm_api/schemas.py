"""The wire shapes of the internal REST API, defined once.

`RuntimeRecord` is the `runtime_records` row of `rtm_core.domain.records` field for
field and in column order, as reference 001 shows it: timestamps RFC 3339
UTC with `Z` and whole seconds (`2026-04-28T07:18:54Z`), absent values as
`null`. One additive field, `quarantined` (issue 12), is rendered only while
RTMANAGER_AUTO_RESTART=on: with the default the record is exactly 001's.
Request bodies are validated here only for shape; the rules about their
values (image reference grammar, stop reasons, semver) live in `rtm_core` and
answer with their own error codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from rtm_core.domain.records import HealthSnapshot as HealthSnapshotRow
from rtm_core.domain.records import OperationLogEntry
from rtm_core.domain.records import RuntimeRecord as RuntimeRecordRow
from rtm_core.domain.vocabulary import StopReason
from rtm_core.domain.wire import HealthEvent

RFC3339_EXAMPLE = "2026-04-28T07:18:54Z"


def rfc3339(value: datetime) -> str:
    """`2026-04-28T07:18:54Z`: UTC, whole seconds, `Z` suffix."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": [RFC3339_EXAMPLE]}),
]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class RuntimeRecord(_Out):
    """One game's runtime (SPEC §5 `runtime_records`)."""

    game_id: str
    status: str = Field(json_schema_extra={"enum": ["running", "stopped", "removed"]})
    current_container_id: str | None
    current_image_ref: str | None
    engine_endpoint: str | None
    state_path: str | None
    docker_network: str | None
    started_at: Timestamp | None
    stopped_at: Timestamp | None
    removed_at: Timestamp | None
    last_op_at: Timestamp | None
    created_at: Timestamp | None
    quarantined: Annotated[bool | None, WithJsonSchema({"type": "boolean"})] = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description=(
            "Present only when RTMANAGER_AUTO_RESTART=on: true while the crash-loop "
            "policy holds the game (no more automatic restarts until "
            "POST …/quarantine/lift or a restart)"
        ),
    )

    @classmethod
    def of(cls, row: RuntimeRecordRow, *, with_quarantine: bool = False) -> Self:
        record = cls.model_validate(row)
        if with_quarantine:
            return record.model_copy(update={"quarantined": row.quarantined})
        return record.model_copy(update={"quarantined": None})


#: `RuntimeRecord`'s fields in wire order, and which of them are timestamps.
_WIRE_FIELDS = tuple(n for n in RuntimeRecord.model_fields if n != "quarantined")
_TIMESTAMPS = frozenset(("started_at", "stopped_at", "removed_at", "last_op_at", "created_at"))
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def record_wire(row: RuntimeRecordRow, *, with_quarantine: bool = False) -> dict[str, Any]:
    """`RuntimeRecord.of(row).model_dump(mode="json")` without building the model:
    the read path's encoding (issue 14); tests/unit proves the two equal."""
    wire: dict[str, Any] = {}
    for name in _WIRE_FIELDS:
        value = getattr(row, name)
        wire[name] = rfc3339(value) if value is not None and name in _TIMESTAMPS else value
    if with_quarantine:
        wire["quarantined"] = row.quarantined
    return wire


def record_json(row: RuntimeRecordRow, *, with_quarantine: bool = False) -> bytes:
    """One record's response body, as FastAPI would render the model."""
    return _encode(record_wire(row, with_quarantine=with_quarantine)).encode()


def records_json(rows: Sequence[RuntimeRecordRow], *, with_quarantine: bool = False) -> bytes:
    """`{"items": [...]}`, as FastAPI would render `RuntimeList`."""
    items = [record_wire(r, with_quarantine=with_quarantine) for r in rows]
    return _encode({"items": items}).encode()


class RuntimeList(_Out):
    items: list[RuntimeRecord]

    @classmethod
    def of(
        cls,
        rows: Sequence[RuntimeRecordRow],
        *,
        with_quarantine: bool = False,
    ) -> Self:
        return cls(items=[RuntimeRecord.of(r, with_quarantine=with_quarantine) for r in rows])


class View(StrEnum):
    """`?view=`: the record as 001 has it, or with what RTM observes of its engine."""

    DEFAULT = "default"
    WIDE = "wide"


class Usage(_Out):
    """An engine's resources at its last sample (issue 13 §3, the watcher's sampler)."""

    cpu_percent: float = Field(description="CPU over the sample, percent of one core")
    memory_bytes: int
    memory_limit_bytes: int
    restart_count: int
    sampled_at: Timestamp


class RuntimeRecordWide(RuntimeRecord):
    """`?view=wide`: the record plus its engine's last usage sample (additive)."""

    usage: Usage | None = Field(
        default=None,
        description="The engine's last usage sample; null when there is none "
        "(not running, not sampled yet, or the sampler is off)",
    )

    @classmethod
    def wide(
        cls, row: RuntimeRecordRow, usage: Usage | None, *, with_quarantine: bool = False
    ) -> Self:
        base = RuntimeRecord.of(row, with_quarantine=with_quarantine)
        return cls.model_validate({**base.__dict__, "usage": usage})


class RuntimePage(_Out):
    """`GET /runtimes`. `next_cursor` is present only when `limit` or `cursor` was
    given (paging); without them the answer is `{"items": [...]}` exactly as 001 has it.
    Items carry `usage` only with `view=wide`."""

    items: list[RuntimeRecordWide]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page; null on the last page",
    )


def as_json(model: BaseModel) -> dict[str, Any]:
    """A model as JSON data, its excluded-when-absent fields left out."""
    return model.model_dump(mode="json")


class HealthSnapshotOut(_Out):
    """`health_snapshots` (SPEC §5): the latest observation of a game's engine."""

    game_id: str
    container_id: str | None
    status: str = Field(examples=["probe_failed"])
    source: str = Field(json_schema_extra={"enum": ["docker_event", "inspect", "probe"]})
    observed_at: Timestamp
    details: dict[str, Any]

    @classmethod
    def of(cls, row: HealthSnapshotRow) -> Self:
        return cls.model_validate(row)


class HealthEventOut(_Out):
    """One `runtime:health_events` entry, `details` as an object."""

    id: str = Field(description="The stream entry id (SSE `id`, `after=`)")
    game_id: str
    container_id: str
    event_type: str = Field(examples=["container_exited"])
    occurred_at_ms: int
    occurred_at: Timestamp
    details: dict[str, Any]

    @classmethod
    def of(cls, entry_id: str, event: HealthEvent) -> Self:
        fields: Mapping[str, str] = event.fields()
        return cls(
            id=entry_id,
            game_id=event.game_id,
            container_id=event.container_id,
            event_type=fields["event_type"],
            occurred_at_ms=event.occurred_at_ms,
            occurred_at=datetime.fromtimestamp(event.occurred_at_ms / 1000, UTC),
            details=event.details.model_dump(),
        )


class HealthEventList(_Out):
    """Oldest first; the newest `limit` found."""

    items: list[HealthEventOut]


class Operation(_Out):
    """One `operation_log` row (SPEC §5)."""

    id: int
    game_id: str
    op_kind: str
    op_source: str
    outcome: str = Field(json_schema_extra={"enum": ["success", "failure"]})
    error_code: str | None
    error_message: str | None
    image_ref: str | None
    previous_image_ref: str | None
    container_id: str | None
    started_at: Timestamp
    finished_at: Timestamp


class OperationList(_Out):
    """Newest first."""

    items: list[Operation]

    @classmethod
    def of(cls, rows: Sequence[OperationLogEntry]) -> Self:
        return cls(items=[Operation.model_validate(row) for row in rows])


class ErrorBody(_Out):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no runtime for game game-01HZ"])


class ErrorEnvelope(_Out):
    """Every error response: `{"error":{"code":"…","message":"…"}}`."""

    error: ErrorBody


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageRequest(_In):
    """Body of `start` and `patch`."""

    image_ref: str = Field(
        description="Docker image reference; for patch both tags must be semver",
        examples=["galaxy/game:1.4.0"],
    )


class StopRequest(_In):
    reason: str = Field(
        description="Why the engine stops; anything else is 400 invalid_request",
        json_schema_extra={"enum": [r.value for r in StopReason]},
        examples=["admin_request"],
    )
