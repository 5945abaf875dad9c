"""Vocabulary shared by every process: statuses, kinds, sources, names."""

from __future__ import annotations

import re
from enum import StrEnum

from rtm_core.domain.errors import InvalidRequest

GAME_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

LABEL_OWNER = "com.galaxy.owner"
LABEL_GAME_ID = "com.galaxy.game_id"
LABEL_STACK = "com.galaxy.stack"
LABEL_IMAGE_REF = "com.galaxy.image_ref"
LABEL_CPU_QUOTA = "com.galaxy.cpu_quota"
LABEL_MEMORY = "com.galaxy.memory"
LABEL_PIDS_LIMIT = "com.galaxy.pids_limit"
OWNER = "rtmanager"

ENGINE_PORT = 8080


class RuntimeStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    REMOVED = "removed"


class OpKind(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    PATCH = "patch"
    CLEANUP_CONTAINER = "cleanup_container"
    RECONCILE_ADOPT = "reconcile_adopt"
    RECONCILE_DISPOSE = "reconcile_dispose"
    RECONCILE_OBSERVED_EXITED = "reconcile_observed_exited"
    #: A gated patch that failed its health gate, undone (issue 12; gate on only).
    PATCH_ROLLBACK = "patch_rollback"
    #: An admin lifted an auto-restart quarantine (issue 12; auto restart on only).
    QUARANTINE_LIFT = "quarantine_lift"


class OpSource(StrEnum):
    LOBBY_STREAM = "lobby_stream"
    GM_REST = "gm_rest"
    ADMIN_REST = "admin_rest"
    RECONCILER = "reconciler"
    CLEANUP_WORKER = "cleanup_worker"
    #: RTM restarting a crashed engine by its crash-loop policy (issue 12).
    AUTO_RESTART = "auto_restart"

    @classmethod
    def from_caller_header(cls, value: str | None) -> OpSource:
        """`X-Galaxy-Caller`: gm → gm_rest; anything else, or nothing → admin_rest."""
        return cls.GM_REST if (value or "").strip().lower() == "gm" else cls.ADMIN_REST

    @property
    def is_command(self) -> bool:
        """Someone asked for this operation (Lobby, GM, admin), as opposed to RTM
        repairing or retiring on its own: only commands move a game's job order."""
        return self in {OpSource.LOBBY_STREAM, OpSource.GM_REST, OpSource.ADMIN_REST}


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class StopReason(StrEnum):
    ORPHAN_CLEANUP = "orphan_cleanup"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    ADMIN_REQUEST = "admin_request"
    TIMEOUT = "timeout"

    @classmethod
    def parse(cls, value: object) -> StopReason:
        try:
            return cls(str(value))
        except ValueError:
            allowed = " | ".join(r.value for r in cls)
            raise InvalidRequest(f"reason must be one of {allowed}") from None


class HealthEventType(StrEnum):
    CONTAINER_STARTED = "container_started"
    CONTAINER_EXITED = "container_exited"
    CONTAINER_OOM = "container_oom"
    CONTAINER_DISAPPEARED = "container_disappeared"
    INSPECT_UNHEALTHY = "inspect_unhealthy"
    PROBE_FAILED = "probe_failed"
    PROBE_RECOVERED = "probe_recovered"


class SelfHealEventType(StrEnum):
    """Health event types beyond the contract's seven (`HealthEventType`), additive
    and published only while a self-healing feature (issue 12) is switched on."""

    #: RTMANAGER_AUTO_RESTART=on: the game's restart budget is spent; no more
    #: automatic restarts until an admin lifts the quarantine.
    CONTAINER_QUARANTINED = "container_quarantined"


#: Every type a `runtime:health_events` entry can carry.
AnyHealthEventType = HealthEventType | SelfHealEventType


class HealthSource(StrEnum):
    DOCKER_EVENT = "docker_event"
    INSPECT = "inspect"
    PROBE = "probe"


def is_valid_game_id(game_id: object) -> bool:
    return isinstance(game_id, str) and GAME_ID_RE.fullmatch(game_id) is not None


def require_game_id(game_id: object) -> str:
    """Refuse anything that could escape a container name or a state path."""
    if not is_valid_game_id(game_id):
        raise InvalidRequest(f"game_id must match {GAME_ID_RE.pattern}")
    assert isinstance(game_id, str)
    return game_id


def container_name(game_id: str) -> str:
    return f"galaxy-game-{game_id}"


def engine_endpoint(game_id: str) -> str:
    return f"http://{container_name(game_id)}:{ENGINE_PORT}"
