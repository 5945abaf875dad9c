"""The wire contract of every stream RTM reads or writes (`001` §Stream Payload
Examples), written once.

    stream                   shape               way   used by
    ---------------------    -----------------   ---   ------------------------------
    runtime:start_jobs       StartJob            in    rtm-jobs: `decode()`
    runtime:stop_jobs        StopJob             in    rtm-jobs: `decode()`
    runtime:job_results      JobResult           out   rtm-jobs' result step (Lua)
    runtime:dead_letter      DeadLetter          out   rtm-jobs' result step (Lua)
    runtime:health_events    HealthEvent         out   Publishers.health_event
                                                       (read back by rtm-reconciler's
                                                       auto-restart loop: `decode()`)
    notification:intents     NotificationIntent  out   Publishers.notification_intent

Each shape is one pydantic model. Its fields, in order, are the entry's;
`fields()` is the entry exactly as XADD writes it; its JSON schema is what
the AsyncAPI document shows (`rtm_jobs.asyncapi`). Every Redis stream value
is a string: numbers are decimal digits, `details` and `envelope` are JSON
text, so a field that is a number or an object in Python is documented, and
encoded, as the text it becomes.

Incoming jobs: the wire checks what only the stream carries (the entry can
be read, names its game, has `requested_at_ms` in milliseconds) and raises
`PoisonEntry` or `MalformedJob`, whose message names the field. The values
of `game_id`, `image_ref` and `reason` are the lifecycle's to judge, exactly
as for a REST body: so a bad one gets REST's error and, on start, its
operation-log row and admin notification. An absent one reaches the
lifecycle empty.

Pure: no I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from rtm_core.domain.vocabulary import (
    GAME_ID_RE,
    AnyHealthEventType,
    HealthEventType,
    Outcome,
    SelfHealEventType,
    StopReason,
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


# ----------------------------------------------------------------- field types


def _epoch_ms(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise PydanticCustomError("epoch_ms", "must be epoch milliseconds (decimal digits)")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("text", "must be text")
    return value


#: A `game_id` as written. The pattern is documented, not checked here: the
#: lifecycle refuses a bad one with the error its operation owes.
GameId = Annotated[
    str,
    Field(
        description="Game identifier; becomes the container name galaxy-game-<game_id>",
        examples=["game-01HZ..."],
        json_schema_extra={"pattern": GAME_ID_RE.pattern},
    ),
]
#: Milliseconds since the epoch; an int in Python, decimal digits on the wire.
EpochMs = Annotated[
    int,
    BeforeValidator(_epoch_ms),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+$"}),
    Field(description="Unix epoch milliseconds, as decimal digits", examples=["1714081234567"]),
]
ContainerId = Annotated[
    str, Field(description="Docker container id; may be empty", examples=["1f2a..."])
]
#: W3C trace context (issue 13), additive: optional on jobs, written by RTM on
#: results and health events. Text, never judged: a bad one is ignored.
TRACEPARENT_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
JobTraceParent = Annotated[
    str,
    Field(
        description=(
            "Optional W3C trace context (`00-<trace id>-<parent id>-<flags>`): the job's "
            "trace continues the producer's. Absent, empty or not valid: a new trace"
        ),
        examples=[TRACEPARENT_EXAMPLE],
    ),
]
OutTraceParent = Annotated[
    str,
    Field(
        description=(
            "W3C trace context of the RTM span that wrote the entry (a job's result: the "
            "job's span, in the job's trace when it had a traceparent); empty when RTM "
            "records no traces"
        ),
        examples=[TRACEPARENT_EXAMPLE],
    ),
]


def _refs_untitled(schema: dict[str, Any]) -> None:
    """A field documented as a `$ref` carries no title of its own, as pydantic
    writes an enum field (`StopJob.reason` is text documented as the enum)."""
    for prop in schema.get("properties", {}).values():
        if "$ref" in prop or all("$ref" in choice for choice in prop.get("anyOf", [{}])):
            prop.pop("title", None)


def _every_field_written(schema: dict[str, Any]) -> None:
    """An entry RTM writes has every field, those with a default too (`traceparent`)."""
    _refs_untitled(schema)
    schema["required"] = list(schema.get("properties", {}))


class WireEntry(BaseModel):
    """A stream entry: its fields in order, every one always present, all text."""

    model_config = ConfigDict(frozen=True, json_schema_extra=_refs_untitled)

    def fields(self) -> dict[str, str]:
        """The entry exactly as XADD writes it."""
        entry = self.model_dump(mode="json")
        for name, value in entry.items():
            if not isinstance(value, str):  # a field type without its text form
                raise TypeError(f"{type(self).__name__}.{name} is not encoded as text")
        return entry


# ------------------------------------------------------------------- jobs in

RawFields = Mapping[bytes, bytes] | None


class PoisonEntry(ValueError):
    """An entry that names no game: there is nobody to send a result to."""


class MalformedJob(ValueError):
    """A job that names its game but breaks the wire contract in one field; it
    is answered with a failure result."""

    def __init__(self, game_id: str, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.game_id = game_id
        self.field = field
        self.problem = problem


def entry_text(raw: RawFields) -> dict[str, str]:
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
    return {str(k): v if isinstance(v, str) else _compact_json(v) for k, v in document.items()}


class Job(WireEntry):
    """What start and stop jobs share: the game first, `requested_at_ms` last."""

    game_id: GameId
    #: Fields the lifecycle judges, as it judges a REST body: absent is empty.
    judged_by_lifecycle: ClassVar[tuple[str, ...]]
    #: Fields a producer may leave out (their default applies).
    optional: ClassVar[tuple[str, ...]] = ("traceparent",)

    def fields(self) -> dict[str, str]:
        """As a producer writes the job: an optional field left empty is left out."""
        return {k: v for k, v in super().fields().items() if v or k not in self.optional}

    @property
    def producer_trace(self) -> str:
        """The entry's `traceparent`, declared last by each job shape (so it stays
        after the fields `001` lists); empty when the producer wrote none."""
        value = getattr(self, "traceparent", "")
        return value if isinstance(value, str) else ""

    @classmethod
    def decode(cls, raw: RawFields) -> Self:
        """The job an entry carries; `PoisonEntry` when it names no game,
        `MalformedJob` (the field, what is wrong) when it breaks the contract."""
        text = entry_text(raw)
        game_id = text.get("game_id", "")
        if not game_id:
            raise PoisonEntry("entry has no game_id")
        values: dict[str, str] = {}
        for name in cls.model_fields:
            if name in text:
                values[name] = text[name]
            elif name in cls.judged_by_lifecycle:
                values[name] = ""
            elif name in cls.optional:
                continue
            else:
                raise MalformedJob(game_id, name, "is required")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise MalformedJob(game_id, str(first["loc"][0]), first["msg"]) from None


class StartJob(Job):
    """Lobby asks RTM to run a game's engine (`runtime:start_jobs`)."""

    model_config = ConfigDict(title="StartJobEntry")
    judged_by_lifecycle = ("game_id", "image_ref")

    image_ref: str = Field(
        description="Docker image reference of the engine", examples=["galaxy/game:1.4.0"]
    )
    requested_at_ms: EpochMs
    traceparent: JobTraceParent = ""


class StopJob(Job):
    """Lobby asks RTM to stop a game's engine (`runtime:stop_jobs`)."""

    model_config = ConfigDict(title="StopJobEntry")
    judged_by_lifecycle = ("game_id", "reason")

    #: Text here, documented as the `StopReason` the lifecycle requires.
    reason: Annotated[str, PlainValidator(_text, json_schema_input_type=StopReason)] = Field(
        description="Why the engine stops",
    )
    requested_at_ms: EpochMs
    traceparent: JobTraceParent = ""


# ------------------------------------------------------------ job results out


class JobResult(WireEntry):
    """Exactly one per start or stop job (`runtime:job_results`). Every field is
    always present; empty strings are allowed on every outcome."""

    model_config = ConfigDict(title="JobResultEntry", json_schema_extra=_every_field_written)

    game_id: str = Field(
        description="The job's game_id as written (a job refused for its game_id echoes it)",
        examples=["game-01HZ..."],
    )
    outcome: Outcome
    container_id: ContainerId
    engine_endpoint: str = Field(
        description="http://galaxy-game-<game_id>:8080, or empty",
        examples=["http://galaxy-game-game-01HZ...:8080"],
    )
    error_code: str = Field(
        description=(
            "Empty on a plain success; replay_no_op on an idempotent replay; on a failure "
            "one of start_config_invalid, invalid_request, not_found, conflict, "
            "operation_in_progress, image_pull_failed, container_start_failed, "
            "docker_unavailable, service_unavailable, internal_error"
        ),
        examples=["", "replay_no_op", "image_pull_failed"],
    )
    error_message: str = Field(
        description="Human-readable detail of a failure; empty otherwise",
        examples=["pull failed: manifest unknown"],
    )
    traceparent: OutTraceParent = ""


# ------------------------------------------------------------ dead letters out

#: A count; an int in Python, decimal digits on the wire.
Count = Annotated[
    int,
    Field(ge=0),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+$"}),
]


def _job_fields_are_additional(schema: dict[str, Any]) -> None:
    _refs_untitled(schema)
    schema["additionalProperties"] = {
        "type": "string",
        "description": "The job's own fields, exactly as written to source_stream",
    }


class DeadLetter(WireEntry):
    """A job given up after `RTMANAGER_JOBS_MAX_DELIVERIES` deliveries that never
    completed (`runtime:dead_letter`). The entry is the job's own fields as
    written, then these five; a job field that has one of these names is kept
    as `original_<name>`. Replay: XADD the job's own fields to `source_stream`.

    The reason field is `dead_letter_reason`, not `reason`, because a stop job
    has a `reason` of its own.
    """

    model_config = ConfigDict(title="DeadLetterEntry", json_schema_extra=_job_fields_are_additional)

    source_stream: str = Field(
        description="Stream the job was read from", examples=["runtime:start_jobs"]
    )
    source_id: str = Field(
        description="The job's entry id in source_stream", examples=["1714081234567-0"]
    )
    deliveries: Count = Field(
        description="Times the entry had been delivered when it was given up", examples=["6"]
    )
    dead_letter_reason: str = Field(
        description="Why the job was given up",
        examples=["delivered 6 times without completing (RTMANAGER_JOBS_MAX_DELIVERIES=5)"],
    )
    dead_lettered_at_ms: EpochMs

    def entry(self, job: Mapping[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        """The whole entry: `job`'s fields byte for byte, then this copy's own."""
        own = [(name.encode(), value.encode()) for name, value in self.fields().items()]
        names = {name for name, _ in own}
        kept = [(b"original_" + k if k in names else k, v) for k, v in job.items()]
        return kept + own


# ---------------------------------------------------------- health events out


class Details(BaseModel):
    """A health event's `details`: exactly these keys, in this order, these types."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ContainerStarted(Details):
    image_ref: str


class ContainerExited(Details):
    exit_code: int
    oom: bool


class ContainerOom(Details):
    exit_code: int


class ContainerDisappeared(Details):
    pass


class InspectUnhealthy(Details):
    restart_count: int
    state: str
    health: str


class ProbeFailed(Details):
    consecutive_failures: int
    last_status: int
    last_error: str


class ProbeRecovered(Details):
    prior_failure_count: int


class ContainerQuarantined(Details):
    """RTMANAGER_AUTO_RESTART=on only. `restarts`: automatic restarts spent in the
    window; `last_exit_code`: the exit code of the crash that found the budget
    spent, null when it was a probe failure (the engine had not exited)."""

    restarts: int
    window_seconds: int
    last_exit_code: int | None


#: The `details` shape of each event type, in the vocabulary's order.
DETAILS: dict[HealthEventType, type[Details]] = {
    HealthEventType.CONTAINER_STARTED: ContainerStarted,
    HealthEventType.CONTAINER_EXITED: ContainerExited,
    HealthEventType.CONTAINER_OOM: ContainerOom,
    HealthEventType.CONTAINER_DISAPPEARED: ContainerDisappeared,
    HealthEventType.INSPECT_UNHEALTHY: InspectUnhealthy,
    HealthEventType.PROBE_FAILED: ProbeFailed,
    HealthEventType.PROBE_RECOVERED: ProbeRecovered,
}
#: …and of the additive types published only while a self-healing feature is on.
SELF_HEAL_DETAILS: dict[SelfHealEventType, type[Details]] = {
    SelfHealEventType.CONTAINER_QUARANTINED: ContainerQuarantined,
}
ALL_DETAILS: dict[AnyHealthEventType, type[Details]] = {}
for _type, _shape in DETAILS.items():
    ALL_DETAILS[_type] = _shape
for _extra, _shape in SELF_HEAL_DETAILS.items():
    ALL_DETAILS[_extra] = _shape


def _details_text(details: Details) -> str:
    return _compact_json(details.model_dump())


_DETAILS_DOC = "JSON object, by event_type: " + "; ".join(
    f"{event_type.value} {{{', '.join(shape.model_fields)}}}"
    for event_type, shape in ALL_DETAILS.items()
)

AnyDetails = Annotated[
    ContainerStarted
    | ContainerExited
    | ContainerOom
    | ContainerDisappeared
    | InspectUnhealthy
    | ProbeFailed
    | ProbeRecovered
    | ContainerQuarantined,
    PlainSerializer(_details_text, return_type=str),
    WithJsonSchema({"type": "string"}),
    Field(description=_DETAILS_DOC, examples=['{"exit_code":137,"oom":false}']),
]


class HealthEvent(WireEntry):
    """An observation of a game's engine (`runtime:health_events`)."""

    model_config = ConfigDict(title="HealthEventEntry", json_schema_extra=_every_field_written)

    game_id: GameId
    container_id: ContainerId
    event_type: AnyHealthEventType
    occurred_at_ms: EpochMs
    #: Given as the event type's `Details` or as a plain mapping of its keys.
    details: AnyDetails
    traceparent: OutTraceParent = ""

    @classmethod
    def decode(cls, fields: Mapping[str, str]) -> HealthEvent:
        """An entry as `fields()` wrote it (text values, `details` JSON text), read
        back; ValueError (pydantic's ValidationError) when it is not one."""
        values: dict[str, object] = dict(fields)
        details = values.get("details")
        if isinstance(details, str):
            try:
                values["details"] = json.loads(details)
            except ValueError:
                raise ValueError("details is not JSON") from None
        return cls.model_validate(values)

    @field_validator("details", mode="before")
    @classmethod
    def _shape_of_event_type(cls, value: object, info: ValidationInfo) -> object:
        event_type = info.data.get("event_type")
        if event_type is None:
            return value  # event_type itself is wrong; that is the error reported
        shape = ALL_DETAILS[event_type]
        if isinstance(value, Details):
            if type(value) is not shape:
                raise ValueError(f"{event_type.value} takes {shape.__name__} details")
            return value
        try:
            return shape.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'details'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"{event_type.value} details: {problems}") from None


# ---------------------------------------------------- notification intents out

#: error_code → notification intent type: the three first-touch start failures,
#: and (RTMANAGER_AUTO_RESTART=on only) a game quarantined by its crash-loop policy.
INTENT_TYPES = {
    "image_pull_failed": "runtime.image_pull_failed",
    "container_start_failed": "runtime.container_start_failed",
    "start_config_invalid": "runtime.start_config_invalid",
    "container_quarantined": "runtime.container_quarantined",
}


class NotificationIntent(BaseModel):
    """An admin e-mail about a first-touch start failure (or a quarantine): the
    envelope's payload. On the wire it is one field, `envelope`
    (`NotificationIntentEntry`)."""

    model_config = ConfigDict(frozen=True)

    game_id: str
    image_ref: str
    error_code: str
    error_message: str
    attempted_at_ms: int

    @field_validator("error_code")
    @classmethod
    def _notifies(cls, value: str) -> str:
        if value not in INTENT_TYPES:
            raise ValueError(f"only {', '.join(INTENT_TYPES)} notify")
        return value

    @property
    def type(self) -> str:
        return INTENT_TYPES[self.error_code]

    def envelope(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "producer": "rtmanager",
            "idempotency_key": f"{self.type}:{self.game_id}:{self.attempted_at_ms}",
            "audience": {
                "kind": "admin_email",
                "email_address_kind": f"runtime_{self.error_code}",
            },
            "payload": self.model_dump(),
        }

    def fields(self) -> dict[str, str]:
        return NotificationIntentEntry(envelope=_compact_json(self.envelope())).fields()


class NotificationIntentEntry(WireEntry):
    """Admin e-mail intent for the three first-touch start failures, and for a
    game the crash-loop policy quarantined (`notification:intents`)."""

    envelope: str = Field(
        description=(
            "JSON object {type, producer: rtmanager, idempotency_key: "
            "<type>:<game_id>:<attempted_at_ms>, audience: {kind: admin_email, "
            "email_address_kind: runtime_<error_code>}, payload: {"
            + ", ".join(NotificationIntent.model_fields)
            + "}}; type is one of "
            + ", ".join(INTENT_TYPES.values())
        ),
    )
