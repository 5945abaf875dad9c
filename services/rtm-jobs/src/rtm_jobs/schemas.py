"""Wire shapes of the streams RTM consumes and publishes (`001` §Stream Payload Examples).

Every Redis stream value is a string, so every field is documented as one;
numbers are decimal digits, `details` and `envelope` are JSON text. These
models feed the AsyncAPI document (`rtm_jobs.asyncapi`) and the list of
fields the consumers read; a test holds the published ones equal to what
`rtm_core.domain.wire` writes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from rtm_core.domain.vocabulary import GAME_ID_RE, HealthEventType, Outcome, StopReason

GameId = Annotated[
    str,
    Field(
        description="Game identifier; becomes the container name galaxy-game-<game_id>",
        pattern=GAME_ID_RE.pattern,
        examples=["game-01HZ..."],
    ),
]
EpochMs = Annotated[
    str,
    Field(
        description="Unix epoch milliseconds, as decimal digits",
        pattern=r"^[0-9]+$",
        examples=["1714081234567"],
    ),
]
ContainerId = Annotated[
    str, Field(description="Docker container id; may be empty", examples=["1f2a..."])
]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True)


class StartJobEntry(_Entry):
    """Lobby asks RTM to run a game's engine (`runtime:start_jobs`)."""

    game_id: GameId
    image_ref: str = Field(
        description="Docker image reference of the engine", examples=["galaxy/game:1.4.0"]
    )
    requested_at_ms: EpochMs


class StopJobEntry(_Entry):
    """Lobby asks RTM to stop a game's engine (`runtime:stop_jobs`)."""

    game_id: GameId
    reason: StopReason = Field(description="Why the engine stops")
    requested_at_ms: EpochMs


class JobResultEntry(_Entry):
    """Exactly one per start or stop job (`runtime:job_results`). Every field is
    always present; empty strings are allowed on every outcome."""

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
            "docker_unavailable, internal_error"
        ),
        examples=["", "replay_no_op", "image_pull_failed"],
    )
    error_message: str = Field(
        description="Human-readable detail of a failure; empty otherwise",
        examples=["pull failed: manifest unknown"],
    )


class HealthEventEntry(_Entry):
    """An observation of a game's engine (`runtime:health_events`)."""

    game_id: GameId
    container_id: ContainerId
    event_type: HealthEventType
    occurred_at_ms: EpochMs
    details: str = Field(
        description=(
            "JSON object, by event_type: container_started {image_ref}; container_exited "
            "{exit_code, oom}; container_oom {exit_code}; container_disappeared {}; "
            "inspect_unhealthy {restart_count, state, health}; probe_failed "
            "{consecutive_failures, last_status, last_error}; probe_recovered "
            "{prior_failure_count}"
        ),
        examples=['{"exit_code":137,"oom":false}'],
    )


class NotificationIntentEntry(_Entry):
    """Admin e-mail intent for the three first-touch start failures
    (`notification:intents`)."""

    envelope: str = Field(
        description=(
            "JSON object {type, producer: rtmanager, idempotency_key: "
            "<type>:<game_id>:<attempted_at_ms>, audience: {kind: admin_email, "
            "email_address_kind: runtime_<error_code>}, payload: {game_id, image_ref, "
            "error_code, error_message, attempted_at_ms}}; type is one of "
            "runtime.image_pull_failed, runtime.container_start_failed, "
            "runtime.start_config_invalid"
        ),
    )
