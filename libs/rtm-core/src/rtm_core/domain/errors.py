"""RTM's error tree: one class per SPEC error code.

    RtmError                      base, never raised itself
    ├── InvalidRequest            invalid_request          400
    ├── StartConfigInvalid        start_config_invalid     400
    ├── ImageRefNotSemver         image_ref_not_semver     400
    ├── SemverPatchOnly           semver_patch_only        400
    ├── Unauthorized              unauthorized             401
    ├── NotFound                  not_found                404
    ├── Conflict                  conflict                 409
    ├── OperationInProgress       operation_in_progress    409
    │   └── FencedOut             (a newer lease wrote the game meanwhile)
    ├── ImagePullFailed           image_pull_failed        502
    ├── ContainerStartFailed      container_start_failed   502
    ├── DockerUnavailable         docker_unavailable       502
    ├── PatchRolledBack           patch_rolled_back        502  (health-gated patch undone)
    ├── LogsNotReadable           logs_not_readable        501  (log driver not readable)
    ├── TooManyFollowers          too_many_followers       429  (follow streams at their cap)
    ├── ServiceUnavailable        service_unavailable      503
    └── InternalError             internal_error           500

The lifecycle raises these; anything unexpected becomes the one `InternalError`
(in `lifecycle.operation`, and at an edge for what never reached it). Each
edge (REST, stream results) maps `code` and `http_status` to its own wire
shape in one place. Nothing in between compares message strings.
"""

from __future__ import annotations

from typing import ClassVar


class RtmError(Exception):
    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequest(RtmError):
    code = "invalid_request"
    http_status = 400


class StartConfigInvalid(RtmError):
    code = "start_config_invalid"
    http_status = 400


class ImageRefNotSemver(RtmError):
    code = "image_ref_not_semver"
    http_status = 400


class SemverPatchOnly(RtmError):
    code = "semver_patch_only"
    http_status = 400


class Unauthorized(RtmError):
    code = "unauthorized"
    http_status = 401


class NotFound(RtmError):
    code = "not_found"
    http_status = 404


class Conflict(RtmError):
    code = "conflict"
    http_status = 409


class OperationInProgress(RtmError):
    code = "operation_in_progress"
    http_status = 409


class FencedOut(OperationInProgress):
    """A newer lease wrote the game meanwhile: this holder lost it (paused, partitioned,
    or outlived its TTL) and must write nothing more. Answered as `operation_in_progress`."""


class ImagePullFailed(RtmError):
    code = "image_pull_failed"
    http_status = 502


class ContainerStartFailed(RtmError):
    code = "container_start_failed"
    http_status = 502


class DockerUnavailable(RtmError):
    code = "docker_unavailable"
    http_status = 502


class PatchRolledBack(RtmError):
    """A patch behind the health gate (RTMANAGER_PATCH_HEALTH_GATE=on) whose new
    engine failed the gate: RTM put the previous image (and, with snapshots, the
    previous state) back. The message names the failed check."""

    code = "patch_rolled_back"
    http_status = 502


class LogsNotReadable(RtmError):
    """The engine's log driver cannot be read back (`none`, or a remote driver with
    Docker's dual logging off): `docker logs` would fail the same way (issue 13)."""

    code = "logs_not_readable"
    http_status = 501


class TooManyFollowers(RtmError):
    """This rtm-api already serves `RTMANAGER_API_MAX_FOLLOWERS` follow streams;
    the cap keeps followers from competing with lifecycle operations (issue 13)."""

    code = "too_many_followers"
    http_status = 429


class ServiceUnavailable(RtmError):
    code = "service_unavailable"
    http_status = 503


class InternalError(RtmError):
    """Anything unexpected, recorded and answered with a code rather than lost."""

    code = "internal_error"
    http_status = 500


#: Success code carried by an idempotent replay (not an error, but a code on the wire).
REPLAY_NO_OP = "replay_no_op"
