"""Configuration: every `RTMANAGER_*` variable, parsed once at the entry point.

Durations accept Go-style strings (`2s`, `5m`, `1h`, `500ms`) or plain
seconds, sizes accept Docker's `512m`, modes accept octal `0750`, as the
reference `.env` writes them.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `1.5`, `2s`, `500ms`, `5m`, `1h30m`."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from Docker-style `512m`, `1g`, `65536`."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(f"not a size: {value!r} (use e.g. 512m, 1g)")
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def parse_mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value).strip(), 8)


def parse_csv(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(p.strip() for p in str(value or "").split(",") if p.strip())


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Mode = Annotated[int, BeforeValidator(parse_mode)]
CsvList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_csv)]


class PullPolicy(StrEnum):
    ALWAYS = "always"
    IF_NOT_PRESENT = "if_not_present"
    NEVER = "never"


class ProbeAddressMode(StrEnum):
    ENDPOINT = "endpoint"
    CONTAINER_IP = "container_ip"


class EngineBackend(StrEnum):
    """How RTM runs engines: plain containers on one daemon, or Swarm services."""

    DOCKER = "docker"
    SWARM = "swarm"


class Switch(StrEnum):
    """An opt-in feature: `off` (the default: RTM behaves as the SPEC says) or `on`."""

    OFF = "off"
    ON = "on"

    @classmethod
    def _missing_(cls, value: object) -> Switch | None:
        # true/false, 1/0, yes/no as operators also write them.
        text = str(value).strip().lower()
        if text in {"on", "true", "1", "yes", "enabled"}:
            return cls.ON
        if text in {"off", "false", "0", "no", "disabled", ""}:
            return cls.OFF
        return None

    def __bool__(self) -> bool:
        return self is Switch.ON


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTMANAGER_", extra="ignore", frozen=True)

    # Listeners
    internal_http_addr: str = ":8096"
    ops_http_addr: str = ":8097"

    # Stores (required: RTM must never guess where its state lives)
    postgres_primary_dsn: str
    #: `host:port` (SPEC), or instead `redis_url` for TLS (`rediss://`) and ACL users.
    redis_master_addr: str | None = None
    redis_password: SecretStr | None = None
    redis_db: int = Field(default=0, ge=0)
    redis_url: SecretStr | None = None

    # Docker
    docker_host: str = "unix:///var/run/docker.sock"
    docker_tls_ca: Path | None = None
    docker_tls_cert: Path | None = None
    docker_tls_key: Path | None = None
    docker_network: str = "galaxy-net"
    docker_log_driver: str | None = None
    docker_log_opts: CsvList = ()
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    image_allowed_prefixes: CsvList = ()
    stack: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    #: Deadline of every Docker call but pulls and stops (an expired call fails
    #: with its SPEC code; nothing waits on a wedged daemon holding a lease).
    docker_call_timeout: Duration = 30.0
    #: Deadline of one image pull, registry round trips and layer downloads included.
    docker_pull_timeout: Duration = 300.0
    #: A Docker `config.json` (or the directory holding one): pulls send the
    #: `auths` entry of the image's registry. Unset: anonymous pulls. Only
    #: `auths` is read; `credsStore`/`credHelpers` programs are never run.
    docker_config: Path | None = None

    engine_backend: EngineBackend = EngineBackend.DOCKER

    # Swarm backend (engine_backend=swarm; ignored otherwise)
    #: A node label (`node.labels.zone`): a game's first placement goes to the value
    #: whose nodes run the fewest tasks; unset: Swarm's least-loaded node.
    swarm_placement_spread: str | None = None
    #: How long a new service's task may take to reach `running` before the start fails.
    swarm_start_timeout: Duration = 60.0
    #: How often task states are polled for engines on other nodes (their deaths).
    swarm_task_poll_interval: Duration = 1.0

    # Engines
    game_state_root: Path = Path("/var/lib/galaxy/games")
    game_state_dir_mode: Mode = 0o750
    game_state_owner_uid: int = 0
    game_state_owner_gid: int = 0
    engine_state_mount_path: str = "/var/lib/galaxy-game"
    engine_state_env_name: str = "GAME_STATE_PATH"
    default_cpu_quota: float = Field(default=1.0, gt=0)
    default_memory: Size = 512 * 1024**2
    default_pids_limit: int = Field(default=512, gt=0)
    container_stop_timeout_seconds: int = Field(default=30, ge=0)
    container_retention_days: float = Field(default=30, ge=0)

    # Lobby diagnostic client
    lobby_internal_base_url: str = "http://127.0.0.1:8095"
    lobby_internal_timeout: Duration = 2.0

    # Workers
    inspect_interval: Duration = 30.0
    probe_interval: Duration = 15.0
    probe_timeout: Duration = 2.0
    probe_failures_threshold: int = Field(default=3, gt=0)
    probe_concurrency: int = Field(default=64, gt=0)
    probe_address_mode: ProbeAddressMode = ProbeAddressMode.ENDPOINT
    reconcile_interval: Duration = 300.0
    #: Issue 13: the watcher samples CPU, memory and restarts of running engines
    #: every `inspect_interval` (metrics, the REST wide view). Opt-in: a loop of
    #: its own, and the SPEC counts seven `worker started` lines.
    engine_usage: Switch = Switch.OFF
    #: Engines read at once (the daemon's stats collector serves them one after
    #: the other anyway: a pass costs it ~0.1 s per engine, bench_watcher (c)).
    engine_usage_concurrency: int = Field(default=16, gt=0)
    #: `game_id` attribute on the engine usage gauges; off: fleet totals only,
    #: one series each however many engines run (very large fleets).
    engine_usage_per_game_label: Switch = Switch.ON
    cleanup_interval: Duration = 3600.0

    # Streams
    redis_start_jobs_stream: str = "runtime:start_jobs"
    redis_stop_jobs_stream: str = "runtime:stop_jobs"
    redis_job_results_stream: str = "runtime:job_results"
    redis_health_events_stream: str = "runtime:health_events"
    notification_intents_stream: str = "notification:intents"
    stream_maxlen: int = Field(default=100_000, ge=0)
    jobs_consumer_group: str = "rtmanager"
    jobs_consumer_name: str | None = None
    jobs_concurrency: int = Field(default=16, gt=0)
    jobs_claim_idle: Duration = 60.0
    #: A job whose entry was delivered more times than this without completing
    #: (a replica crashed or failed in it each time) is answered `internal_error`
    #: and copied to the dead-letter stream instead of being run again.
    jobs_max_deliveries: int = Field(default=5, gt=0)
    redis_dead_letter_stream: str = "runtime:dead_letter"
    #: How long a job retries an unavailable PostgreSQL, Redis or Docker, from
    #: when this replica picked its entry up; then it is answered with that code.
    jobs_deadline: Duration = 300.0

    # Self-healing (issue 12), every part opt-in: with the defaults RTM does
    # exactly what the SPEC says and nothing more.
    #: Restart engines that die or fail their probes while their record is `running`.
    auto_restart: Switch = Switch.OFF
    auto_restart_backoff_initial: Duration = 10.0
    auto_restart_backoff_factor: float = Field(default=2.0, ge=1.0)
    auto_restart_backoff_max: Duration = 300.0
    #: Each delay is drawn from [delay x (1 - jitter), delay].
    auto_restart_backoff_jitter: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: At most this many automatic restarts per window; the next crash quarantines.
    auto_restart_budget: int = Field(default=5, gt=0)
    auto_restart_window: Duration = 1800.0
    #: An engine that ran this long before it died starts the backoff over.
    auto_restart_reset_after: Duration = 600.0
    #: Whether an exit with code 0 counts as a crash (default: it is left alone).
    auto_restart_count_clean_exit: bool = False
    #: Consumer group of the auto-restart loop on the health events stream.
    auto_restart_consumer_group: str = "rtmanager-auto-restart"
    #: How often the loop looks at its due restarts and the engines' states.
    auto_restart_interval: Duration = 1.0

    #: Patch behind a health gate, rolled back (state included) when it fails.
    patch_health_gate: Switch = Switch.OFF
    #: Consecutive successful `/healthz` probes the new engine must answer…
    patch_gate_probes: int = Field(default=3, gt=0)
    #: …within this long after it started.
    patch_gate_deadline: Duration = 60.0
    patch_gate_interval: Duration = 1.0
    #: Copy the state dir before a gated patch, and restore it on rollback.
    patch_snapshots: Switch = Switch.ON
    patch_snapshot_keep: int = Field(default=3, gt=0)
    patch_snapshot_max_age: Duration = 7 * 24 * 3600.0
    #: A state dir larger than this refuses the snapshot, and the patch with it.
    patch_snapshot_max_size: Size = 1024**3

    #: Start answers only after the engine's first successful `/healthz`
    #: (REST `?wait_ready=` overrides it per request).
    start_wait_ready: Switch = Switch.OFF
    start_ready_timeout: Duration = 60.0

    # Operator reads over REST (issue 13)
    #: Follow streams (`…/logs?follow=true`, `…/events?follow=true`) one rtm-api
    #: serves at once; one more answers 429 `too_many_followers`.
    api_max_followers: int = Field(default=32, gt=0)
    #: A health-events follow ends after this long; the client reconnects with
    #: `Last-Event-ID` (or `?after=`) and misses nothing.
    events_follow_max_duration: Duration = 900.0

    # Coordination
    game_lease_ttl_seconds: int = Field(default=60, gt=0)
    leader_lease_ttl_seconds: int = Field(default=15, gt=0)

    # Security, process, logging
    internal_api_token: SecretStr | None = None
    log_level: str = "info"
    shutdown_timeout: Duration = 30.0

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "warn", "error"}:
            raise ValueError("must be debug, info, warn or error")
        return value.lower()

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, value: str) -> str:
        if not value.startswith(("unix://", "tcp://", "http://", "https://")):
            raise ValueError("must start with unix:// or tcp://")
        return value

    @field_validator("docker_config")
    @classmethod
    def _docker_config(cls, value: Path | None) -> Path | None:
        """The config file itself (a directory means its `config.json`), checked
        to be a JSON object now, so a bad one stops the process at boot."""
        if value is None:
            return None
        path = value / "config.json" if value.is_dir() else value
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"must name a readable Docker config.json: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
            raise ValueError(f"{path} is not a Docker config.json (no `auths` object)")
        return path

    @field_validator("swarm_placement_spread")
    @classmethod
    def _spread(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"(node\.labels|engine\.labels)\.[A-Za-z0-9_.-]+", value.strip()):
            raise ValueError("must be a node label descriptor such as node.labels.zone")
        return value.strip()

    @field_validator("internal_api_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() in {"", "changeme", "changethis"}:
            raise ValueError("refusing an empty or placeholder token; unset it to disable auth")
        return value

    @model_validator(mode="after")
    def _backoff(self) -> Settings:
        if self.auto_restart_backoff_initial > self.auto_restart_backoff_max:
            raise ValueError(
                "RTMANAGER_AUTO_RESTART_BACKOFF_INITIAL must not exceed "
                "RTMANAGER_AUTO_RESTART_BACKOFF_MAX"
            )
        return self

    @model_validator(mode="after")
    def _redis_target(self) -> Settings:
        if self.redis_master_addr is None and self.redis_url is None:
            raise ValueError("RTMANAGER_REDIS_MASTER_ADDR is required (or RTMANAGER_REDIS_URL)")
        if self.redis_url is not None and not self.redis_url.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("RTMANAGER_REDIS_URL must start with redis://, rediss:// or unix://")
        return self

    @property
    def docker_log_opts_dict(self) -> dict[str, str]:
        return dict(opt.split("=", 1) for opt in self.docker_log_opts if "=" in opt)

    @property
    def docker_tls_enabled(self) -> bool:
        return all((self.docker_tls_ca, self.docker_tls_cert, self.docker_tls_key))


class SettingsError(Exception):
    """Raised with one line per offending `RTMANAGER_*` variable."""


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if not err["loc"]:  # a rule across variables names them itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            problem = "is required" if err["type"] == "missing" else err["msg"]
            lines.append(f"RTMANAGER_{field.upper()} {problem}")
        raise SettingsError("; ".join(lines)) from None


def split_host_port(addr: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`:8096` → ("0.0.0.0", 8096); `127.0.0.1:8096` → ("127.0.0.1", 8096)."""
    host, _, port = addr.rpartition(":")
    return (host.strip("[]") or default_host), int(port)
