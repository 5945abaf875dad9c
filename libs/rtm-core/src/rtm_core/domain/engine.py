"""What a game's engine is, independent of the backend that runs it.

`EngineSpec` is the engine SPEC §4 asks for (names, labels, limits, state
mount); `ContainerInfo` and `EngineEvent` are what a backend reports back.
Adapters translate these to and from their own API: Docker containers
(`adapters.docker_engine`) or Swarm services (`adapters.swarm_engine`), where
a game's "container" is its one-replica service and its id the service id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rtm_core.domain.errors import ContainerStartFailed
from rtm_core.domain.vocabulary import (
    LABEL_CPU_QUOTA,
    LABEL_GAME_ID,
    LABEL_IMAGE_REF,
    LABEL_MEMORY,
    LABEL_OWNER,
    LABEL_PIDS_LIMIT,
    LABEL_STACK,
    OWNER,
    container_name,
)
from rtm_core.settings import Settings, parse_size


@dataclass(frozen=True)
class EngineSpec:
    """What a game's engine container must look like (SPEC §4)."""

    game_id: str
    name: str
    image_ref: str
    network: str
    stack: str
    state_host_path: str
    state_mount_path: str
    state_env_name: str
    nano_cpus: int
    memory: int
    pids_limit: int
    cpu_quota_label: str
    memory_label: str
    log_driver: str | None = None
    log_opts: dict[str, str] = field(default_factory=dict)
    #: SIGTERM → SIGKILL grace when the backend itself ends the engine (Swarm drain).
    stop_timeout: int = 30
    #: Node the game's state lives on (a multi-node backend pins the engine there);
    #: None: the backend places it (first start, or a single host).
    placement_node: str | None = None

    def labels(self) -> dict[str, str]:
        return {
            LABEL_OWNER: OWNER,
            LABEL_GAME_ID: self.game_id,
            LABEL_STACK: self.stack,
            LABEL_IMAGE_REF: self.image_ref,
            LABEL_CPU_QUOTA: self.cpu_quota_label,
            LABEL_MEMORY: self.memory_label,
            LABEL_PIDS_LIMIT: str(self.pids_limit),
        }


@dataclass(frozen=True)
class ContainerInfo:
    """One engine container as the backend last saw it."""

    id: str
    name: str
    labels: dict[str, str]
    #: created | running | paused | restarting | removing | exited | dead, and on a
    #: multi-node backend `node_unavailable` (its node is down or drained).
    state: str
    exit_code: int | None = None
    oom_killed: bool = False
    restart_count: int = 0
    health: str | None = None
    ip_address: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    #: Node the engine runs (or last ran) on; None on a single-host backend.
    node_id: str | None = None

    @property
    def game_id(self) -> str | None:
        return self.labels.get(LABEL_GAME_ID)

    @property
    def image_ref(self) -> str | None:
        return self.labels.get(LABEL_IMAGE_REF)

    @property
    def running(self) -> bool:
        return self.state in {"running", "restarting", "paused"}


@dataclass(frozen=True)
class EngineEvent:
    """A lifecycle event of one engine container (`die`, `oom`, `start`, …)."""

    action: str
    container_id: str
    labels: dict[str, str]
    time_nano: int
    exit_code: int | None

    @property
    def game_id(self) -> str | None:
        return self.labels.get(LABEL_GAME_ID)


class ContainerNameInUse(ContainerStartFailed):
    """The engine's name is taken: a leftover of ours, or someone else's container."""


def memory_label(value: int) -> str:
    for unit, size in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def engine_spec(
    settings: Settings,
    game_id: str,
    image_ref: str,
    state_host_path: str,
    image_labels: dict[str, str],
    placement_node: str | None = None,
) -> EngineSpec:
    """The container SPEC §4 asks for: names, labels, limits, mount, env, logging.

    Raises ValueError when the image's resource labels are unusable.
    """
    cpu, memory, pids = resources_for(image_labels, settings)
    return EngineSpec(
        game_id=game_id,
        name=container_name(game_id),
        image_ref=image_ref,
        network=settings.docker_network,
        stack=settings.stack,
        state_host_path=state_host_path,
        state_mount_path=settings.engine_state_mount_path,
        state_env_name=settings.engine_state_env_name,
        nano_cpus=int(cpu * 1_000_000_000),
        memory=memory,
        pids_limit=pids,
        cpu_quota_label=f"{cpu:g}",
        memory_label=memory_label(memory),
        log_driver=settings.docker_log_driver,
        log_opts=settings.docker_log_opts_dict,
        stop_timeout=settings.container_stop_timeout_seconds,
        placement_node=placement_node,
    )


def resources_for(image_labels: dict[str, str], settings: Settings) -> tuple[float, int, int]:
    """Effective (cpu_quota, memory bytes, pids_limit): image labels override defaults."""
    cpu = float(image_labels.get(LABEL_CPU_QUOTA, settings.default_cpu_quota))
    memory = parse_size(image_labels.get(LABEL_MEMORY, settings.default_memory))
    pids = int(image_labels.get(LABEL_PIDS_LIMIT, settings.default_pids_limit))
    if cpu <= 0 or memory <= 0 or pids <= 0:
        raise ValueError("image resource labels must be positive")
    return cpu, memory, pids


def parse_docker_time(value: str | None) -> datetime | None:
    """RFC 3339 timestamps as the engine backend writes them (nanoseconds,
    `0001-…` for never) as UTC datetimes."""
    if not value or value.startswith("0001-"):
        return None
    try:
        # Docker writes nanoseconds; Python takes at most microseconds.
        head, _, frac = value.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{frac[:6] or '0'}+00:00")
    except ValueError:
        return None
