"""The Docker adapter: everything RTM asks of the daemon, scoped to its own engines.

Every list and event subscription filters on owner AND stack, so two RTM
deployments on one daemon never see each other's containers. Calls are timed
into `rtmanager.docker_op_latency{op}`; daemon errors become RTM errors here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from rtm_core.domain import (
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
from rtm_core.errors import ContainerStartFailed, DockerUnavailable, ImagePullFailed
from rtm_core.settings import PullPolicy, Settings, parse_size
from rtm_core.telemetry import tracer

T = TypeVar("T")

_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


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

    def create_config(self) -> dict[str, Any]:
        host_config: dict[str, Any] = {
            "NetworkMode": self.network,
            "Binds": [f"{self.state_host_path}:{self.state_mount_path}:rw"],
            "NanoCpus": self.nano_cpus,
            "Memory": self.memory,
            "MemorySwap": self.memory,
            "PidsLimit": self.pids_limit,
            "Privileged": False,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges:true"],
            # A tiny init forwards SIGTERM, so stop does not wait out its timeout.
            "Init": True,
            "RestartPolicy": {"Name": "no"},
            "PortBindings": {},
            "PublishAllPorts": False,
        }
        if self.log_driver:
            host_config["LogConfig"] = {"Type": self.log_driver, "Config": self.log_opts}
        return {
            "Image": self.image_ref,
            "Hostname": self.name,
            "Labels": self.labels(),
            "Env": [f"{self.state_env_name}={self.state_mount_path}"],
            "HostConfig": host_config,
            "NetworkingConfig": {"EndpointsConfig": {self.network: {"Aliases": [self.name]}}},
        }


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    state: str  # created | running | paused | restarting | removing | exited | dead
    exit_code: int | None = None
    oom_killed: bool = False
    restart_count: int = 0
    health: str | None = None
    ip_address: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def game_id(self) -> str | None:
        return self.labels.get(LABEL_GAME_ID)

    @property
    def image_ref(self) -> str | None:
        return self.labels.get(LABEL_IMAGE_REF)

    @property
    def running(self) -> bool:
        return self.state in {"running", "restarting", "paused"}

    @classmethod
    def from_inspect(cls, data: dict[str, Any], network: str | None = None) -> ContainerInfo:
        state = data.get("State") or {}
        networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (networks.get(network) or {}).get("IPAddress") if network else None
        return cls(
            id=data["Id"],
            name=str(data.get("Name", "")).lstrip("/"),
            labels=(data.get("Config") or {}).get("Labels") or {},
            state=state.get("Status", "unknown"),
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            restart_count=int(data.get("RestartCount") or 0),
            health=(state.get("Health") or {}).get("Status"),
            ip_address=ip or None,
            started_at=state.get("StartedAt"),
            finished_at=state.get("FinishedAt"),
        )

    @classmethod
    def from_list(cls, data: dict[str, Any]) -> ContainerInfo:
        names = data.get("Names") or [""]
        return cls(
            id=data["Id"],
            name=names[0].lstrip("/"),
            labels=data.get("Labels") or {},
            state=data.get("State", "unknown"),
        )


@dataclass(frozen=True)
class DockerEvent:
    action: str
    container_id: str
    labels: dict[str, str]
    time_nano: int
    exit_code: int | None

    @property
    def game_id(self) -> str | None:
        return self.labels.get(LABEL_GAME_ID)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> DockerEvent:
        actor = raw.get("Actor") or {}
        attributes = dict(actor.get("Attributes") or {})
        exit_code = attributes.pop("exitCode", None)
        time_nano = int(raw.get("timeNano") or time.time_ns())
        return cls(
            action=str(raw.get("Action") or raw.get("status") or "").split(":", 1)[0],
            container_id=str(actor.get("ID") or raw.get("id") or ""),
            labels={k: str(v) for k, v in attributes.items()},
            time_nano=time_nano,
            exit_code=int(exit_code) if exit_code not in (None, "") else None,
        )


class ContainerNameInUse(ContainerStartFailed):
    """The engine's name is taken: a leftover of ours, or someone else's container."""


LatencyRecorder = Callable[[str, float], None]


def _ignore_latency(_op: str, _seconds: float) -> None:
    return None


class DockerEngine:
    def __init__(
        self,
        client: aiodocker.Docker,
        *,
        stack: str,
        network: str,
        record_latency: LatencyRecorder = _ignore_latency,
    ) -> None:
        self._docker = client
        self.stack = stack
        self.network = network
        self._record_latency = record_latency

    @classmethod
    def from_settings(
        cls, settings: Settings, record_latency: LatencyRecorder = _ignore_latency
    ) -> DockerEngine:
        ssl_context: ssl.SSLContext | None = None
        url = settings.docker_host
        if settings.docker_tls_enabled:
            ssl_context = ssl.create_default_context(cafile=str(settings.docker_tls_ca))
            ssl_context.load_cert_chain(str(settings.docker_tls_cert), str(settings.docker_tls_key))
            url = url.replace("tcp://", "https://", 1)
        client = aiodocker.Docker(url=url, ssl_context=ssl_context)
        return cls(
            client,
            stack=settings.stack,
            network=settings.docker_network,
            record_latency=record_latency,
        )

    async def close(self) -> None:
        await self._docker.close()

    @property
    def owner_filters(self) -> list[str]:
        return [f"{LABEL_OWNER}={OWNER}", f"{LABEL_STACK}={self.stack}"]

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        began = time.perf_counter()
        with tracer.start_as_current_span(f"docker.{op}", attributes={"rtm.docker_op": op}):
            try:
                return await call
            except _TRANSPORT_ERRORS as exc:
                raise DockerUnavailable(f"docker {op}: {exc or type(exc).__name__}") from exc
            finally:
                self._record_latency(op, time.perf_counter() - began)

    # daemon ----------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self._timed("ping", self._docker.system.info())
        except DockerError as exc:
            raise DockerUnavailable(f"docker ping: {exc.message}") from exc

    async def network_exists(self, name: str | None = None) -> bool:
        try:
            await self._timed("inspect", self._docker.networks.get(name or self.network))
        except DockerError as exc:
            if exc.status == 404:
                return False
            raise DockerUnavailable(f"docker network inspect: {exc.message}") from exc
        return True

    # images ----------------------------------------------------------------

    async def image_labels(self, image_ref: str) -> dict[str, str] | None:
        """The image's labels, or None when the image is not present locally."""
        try:
            data = await self._timed("inspect", self._docker.images.inspect(image_ref))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerUnavailable(f"docker image inspect: {exc.message}") from exc
        return dict((data.get("Config") or {}).get("Labels") or {})

    async def ensure_image(self, image_ref: str, policy: PullPolicy) -> dict[str, str]:
        """Make the image present per policy; returns its labels."""
        labels = None if policy is PullPolicy.ALWAYS else await self.image_labels(image_ref)
        if labels is not None:
            return labels
        if policy is PullPolicy.NEVER:
            raise ImagePullFailed(f"image {image_ref} is not present and pull policy is never")
        try:
            await self._timed("pull", self._docker.images.pull(image_ref))
        except DockerError as exc:
            raise ImagePullFailed(f"pull failed: {exc.message}") from exc
        except DockerUnavailable as exc:
            raise ImagePullFailed(f"pull failed: {exc.message}") from exc
        labels = await self.image_labels(image_ref)
        if labels is None:
            raise ImagePullFailed(f"pull failed: {image_ref} absent after pull")
        return labels

    # containers ------------------------------------------------------------

    async def create_and_start(self, spec: EngineSpec) -> ContainerInfo:
        try:
            container = await self._timed(
                "create", self._docker.containers.create(spec.create_config(), name=spec.name)
            )
        except DockerError as exc:
            if exc.status == 409:
                raise ContainerNameInUse(f"create failed: {exc.message}") from exc
            raise ContainerStartFailed(f"create failed: {exc.message}") from exc
        try:
            await self._timed("start", container.start())
        except DockerError as exc:
            # A container that never ran is ours to clean at once: leave nothing behind.
            with suppress(DockerError, DockerUnavailable):
                await self.remove(container.id)
            raise ContainerStartFailed(f"start failed: {exc.message}") from exc
        # No inspect here: it would add a round trip to every start for nothing
        # the caller uses; the watcher and reconciler observe the real state.
        return ContainerInfo(id=container.id, name=spec.name, labels=spec.labels(), state="running")

    async def inspect(self, ref: str) -> ContainerInfo | None:
        try:
            container = await self._timed("inspect", self._docker.containers.get(ref))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerUnavailable(f"docker inspect: {exc.message}") from exc
        return ContainerInfo.from_inspect(container._container, self.network)

    async def stop(self, ref: str, timeout: int) -> None:
        try:
            container = self._docker.containers.container(ref)
            await self._timed("stop", container.stop(t=timeout))
        except DockerError as exc:
            if exc.status in (304, 404):  # already stopped / already gone
                return
            raise DockerUnavailable(f"docker stop: {exc.message}") from exc

    async def remove(self, ref: str) -> None:
        try:
            container = self._docker.containers.container(ref)
            await self._timed("remove", container.delete(force=True, v=False))
        except DockerError as exc:
            if exc.status == 404:
                return
            if exc.status == 409 and "in progress" in exc.message:
                return  # another remove of the same container is already under way
            raise DockerUnavailable(f"docker remove: {exc.message}") from exc

    async def list_owned(self, game_id: str | None = None) -> list[ContainerInfo]:
        labels = self.owner_filters
        if game_id is not None:
            labels = [*labels, f"{LABEL_GAME_ID}={game_id}"]
        try:
            raw = await self._timed(
                "list",
                self._docker.containers.list(all=True, filters=json.dumps({"label": labels})),
            )
        except DockerError as exc:
            raise DockerUnavailable(f"docker list: {exc.message}") from exc
        return [ContainerInfo.from_list(c._container) for c in raw]

    async def events(self, since: float | None = None) -> AsyncIterator[DockerEvent]:
        """Container events of this stack until the daemon closes the stream.

        Raises DockerUnavailable when the stream breaks, so the caller can
        reconnect and catch up with an inspect pass.
        """
        filters = json.dumps({"type": ["container"], "label": self.owner_filters})
        params: dict[str, Any] = {"filters": filters}
        if since is not None:
            params["since"] = f"{since:.9f}"
        subscriber = self._docker.events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        task = asyncio.ensure_future(self._docker.events.run(**params))
        try:
            while True:
                raw = await subscriber.get()
                if raw is None:
                    break
                yield DockerEvent.from_raw(raw)
            if task.done() and task.exception() is not None:
                exc = task.exception()
                raise DockerUnavailable(f"docker events: {exc}") from exc
            raise DockerUnavailable("docker events stream closed by the daemon")
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task


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
    if not value or value.startswith("0001-"):
        return None
    try:
        """Docker's RFC 3339 timestamps (nanoseconds, `0001-…` for never) as UTC datetimes."""
        # Docker writes nanoseconds; Python takes at most microseconds.
        head, _, frac = value.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{frac[:6] or '0'}+00:00")
    except ValueError:
        return None
