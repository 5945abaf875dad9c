"""The Docker adapter: everything RTM asks of the daemon, scoped to its own engines.

Every list and event subscription filters on owner AND stack, so two RTM
deployments on one daemon never see each other's containers. Calls are timed
into `rtmanager.docker_op_latency{op}`; daemon errors become RTM errors here
and nowhere else.

Usage (issue 13) is one `stats` call per engine (`one-shot`: no second
sample, the caller computes CPU from two of its own reads) beside an inspect
for the restart count.

Every call has a deadline (`Deadlines`): a wedged daemon or registry fails the
operation with its SPEC code instead of holding the game's lease forever.
Pulls get `RTMANAGER_DOCKER_PULL_TIMEOUT`, stops their SIGTERM grace plus
`RTMANAGER_DOCKER_CALL_TIMEOUT`, everything else the call timeout. The events
stream is the one call without a deadline: silence there is no fault.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.multiplexed import multiplexed_result_stream

from rtm_core.adapters.docker_credentials import (
    DockerConfigError,
    RegistryCredentials,
    qualified,
)
from rtm_core.domain.engine import ContainerInfo, ContainerNameInUse, EngineEvent, EngineSpec
from rtm_core.domain.errors import (
    ContainerStartFailed,
    DockerUnavailable,
    ImagePullFailed,
    LogsNotReadable,
    RtmError,
)
from rtm_core.domain.usage import CpuTimes, UsageReading
from rtm_core.domain.vocabulary import LABEL_GAME_ID, LABEL_OWNER, LABEL_STACK, OWNER
from rtm_core.observability import tracer
from rtm_core.settings import PullPolicy, Settings

T = TypeVar("T")

_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
#: The SPEC code of a call that ran out of time; any other op: docker_unavailable.
_EXPIRED_AS: dict[str, type[RtmError]] = {
    "pull": ImagePullFailed,
    "create": ContainerStartFailed,
    "start": ContainerStartFailed,
}


@dataclass(frozen=True)
class Deadlines:
    """Seconds each kind of Docker call may take (settings `docker_*_timeout`)."""

    call: float = 30.0
    pull: float = 300.0

    def of(self, op: str) -> float:
        return self.pull if op == "pull" else self.call

    def stop(self, grace_seconds: int) -> float:
        """A stop legitimately waits out the SIGTERM grace before its SIGKILL."""
        return grace_seconds + self.call


def create_config(spec: EngineSpec) -> dict[str, Any]:
    """The Docker create body of an engine: SPEC §4's hardening, limits and mount."""
    host_config: dict[str, Any] = {
        "NetworkMode": spec.network,
        "Binds": [f"{spec.state_host_path}:{spec.state_mount_path}:rw"],
        "NanoCpus": spec.nano_cpus,
        "Memory": spec.memory,
        "MemorySwap": spec.memory,
        "PidsLimit": spec.pids_limit,
        "Privileged": False,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true"],
        # A tiny init forwards SIGTERM, so stop does not wait out its timeout.
        "Init": True,
        "RestartPolicy": {"Name": "no"},
        "PortBindings": {},
        "PublishAllPorts": False,
    }
    if spec.log_driver:
        host_config["LogConfig"] = {"Type": spec.log_driver, "Config": spec.log_opts}
    return {
        "Image": spec.image_ref,
        "Hostname": spec.name,
        "Labels": spec.labels(),
        "Env": [f"{spec.state_env_name}={spec.state_mount_path}"],
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {spec.network: {"Aliases": [spec.name]}}},
    }


def info_from_inspect(data: dict[str, Any], network: str | None = None) -> ContainerInfo:
    state = data.get("State") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (networks.get(network) or {}).get("IPAddress") if network else None
    return ContainerInfo(
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


def info_from_list(data: dict[str, Any]) -> ContainerInfo:
    names = data.get("Names") or [""]
    return ContainerInfo(
        id=data["Id"],
        name=names[0].lstrip("/"),
        labels=data.get("Labels") or {},
        state=data.get("State", "unknown"),
    )


def _cpu_times(raw: dict[str, Any] | None) -> CpuTimes | None:
    raw = raw or {}
    engine = (raw.get("cpu_usage") or {}).get("total_usage")
    system = raw.get("system_cpu_usage")
    if not engine or not system:
        return None  # a one-shot read's empty `precpu_stats`, or a stopped container
    online = raw.get("online_cpus") or len((raw.get("cpu_usage") or {}).get("percpu_usage") or [])
    return CpuTimes(engine_ns=int(engine), system_ns=int(system), online_cpus=int(online or 1))


def reading_from_stats(stats: dict[str, Any], restart_count: int) -> UsageReading | None:
    """`GET /containers/{id}/stats` as a reading; None for a container that is not
    running (Docker answers zeros for it). Memory as `docker stats` shows it: usage
    without the inactive page cache (`inactive_file` on cgroup v2,
    `total_inactive_file` on v1)."""
    cpu = _cpu_times(stats.get("cpu_stats"))
    memory = stats.get("memory_stats") or {}
    if cpu is None or "usage" not in memory:
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return UsageReading(
        cpu=cpu,
        memory_bytes=max(int(memory["usage"]) - int(cache or 0), 0),
        memory_limit_bytes=int(memory.get("limit") or 0),
        restart_count=restart_count,
        pre_cpu=_cpu_times(stats.get("precpu_stats")),
    )


def event_from_raw(raw: dict[str, Any]) -> EngineEvent:
    actor = raw.get("Actor") or {}
    attributes = dict(actor.get("Attributes") or {})
    exit_code = attributes.pop("exitCode", None)
    time_nano = int(raw.get("timeNano") or time.time_ns())
    return EngineEvent(
        action=str(raw.get("Action") or raw.get("status") or "").split(":", 1)[0],
        container_id=str(actor.get("ID") or raw.get("id") or ""),
        labels={k: str(v) for k, v in attributes.items()},
        time_nano=time_nano,
        exit_code=int(exit_code) if exit_code not in (None, "") else None,
    )


#: Records one call's seconds under its op (`Metrics.record_docker_latency`).
LatencyRecorder = Callable[[str, float], None]


def _ignore_latency(_op: str, _seconds: float) -> None:
    return None


#: What the daemon answers for a log driver it cannot read back (`none`, or a
#: remote driver with dual logging off): errdefs.NotImplemented.
_UNREADABLE_STATUS = 501
_UNREADABLE_TEXT = "does not support reading"


def log_params(*, tail: int | None, since: datetime | None, follow: bool) -> dict[str, str]:
    """Query of `GET /containers/{id}/logs` and `GET /services/{id}/logs`."""
    params = {
        "stdout": "1",
        "stderr": "1",
        "follow": "1" if follow else "0",
        "tail": "all" if tail is None else str(tail),
    }
    if since is not None:
        params["since"] = str(int(since.timestamp()))
    return params


def logs_error(exc: DockerError, what: str) -> RtmError:
    if exc.status == _UNREADABLE_STATUS or _UNREADABLE_TEXT in exc.message:
        return LogsNotReadable(f"{what}: {exc.message}")
    return DockerUnavailable(f"docker logs: {exc.message}")


class DockerLogs:
    """One open logs response of the daemon, demultiplexed into text (`ports.EngineLogs`)."""

    def __init__(self, response: aiohttp.ClientResponse, *, tty: bool) -> None:
        self._response = response
        self._tty = tty

    async def chunks(self) -> AsyncIterator[str]:
        try:
            stream = multiplexed_result_stream(self._response, is_tty=self._tty)  # type: ignore[no-untyped-call]
            async for text in stream:
                yield str(text)
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError):
            return  # the daemon (or `aclose`) ended the read

    async def aclose(self) -> None:
        self._response.close()


class DockerEngine:
    def __init__(
        self,
        client: aiodocker.Docker,
        *,
        stack: str,
        network: str,
        record_latency: LatencyRecorder = _ignore_latency,
        deadlines: Deadlines | None = None,
        credentials: RegistryCredentials | None = None,
        streams: aiodocker.Docker | None = None,
    ) -> None:
        self._docker = client
        #: Long reads (log follows) on a connection pool of their own, so that
        #: followers never hold a connection a lifecycle call waits for.
        self._streams = streams or client
        self.stack = stack
        self.network = network
        self._record_latency = record_latency
        self.deadlines = deadlines or Deadlines()
        self._credentials = credentials

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
        # Connecting is bounded for every request, the events stream included;
        # the rest of each call's deadline is `_timed`'s.
        timeout = aiohttp.ClientTimeout(sock_connect=settings.docker_call_timeout)
        client = aiodocker.Docker(url=url, ssl_context=ssl_context, timeout=timeout)
        streams = aiodocker.Docker(url=url, ssl_context=ssl_context, timeout=timeout)
        credentials = None
        if settings.docker_config is not None:
            credentials = RegistryCredentials(settings.docker_config)
            credentials.announce()
        return cls(
            client,
            stack=settings.stack,
            network=settings.docker_network,
            record_latency=record_latency,
            deadlines=Deadlines(
                call=settings.docker_call_timeout, pull=settings.docker_pull_timeout
            ),
            credentials=credentials,
            streams=streams,
        )

    async def close(self) -> None:
        if self._streams is not self._docker:
            await self._streams.close()
        await self._docker.close()

    async def open_stream(
        self, path: str, params: dict[str, str], *, tty: bool, what: str
    ) -> DockerLogs | None:
        """`GET <path>` on the streams' pool, answered (headers in) within the call
        deadline and then read without one; None on 404 (`ports.EngineLogs`)."""
        # No read deadline: a follow of a quiet engine is silent for as long as it likes.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.deadlines.call)
        try:
            response = await self._timed(
                "logs", self._streams._do_query(path, "GET", params=params, timeout=timeout)
            )
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise logs_error(exc, what) from exc
        return DockerLogs(response, tty=tty)

    @property
    def client(self) -> aiodocker.Docker:
        """The daemon's client, for an adapter built over this one (the swarm backend)."""
        return self._docker

    @property
    def owner_filters(self) -> list[str]:
        return [f"{LABEL_OWNER}={OWNER}", f"{LABEL_STACK}={self.stack}"]

    async def timed(self, op: str, call: Awaitable[T], *, deadline: float | None = None) -> T:
        """One Docker call of an adapter built over this one, under the same
        deadlines, latency histogram and error mapping as this adapter's own."""
        return await self._timed(op, call, deadline=deadline)

    async def _timed(self, op: str, call: Awaitable[T], *, deadline: float | None = None) -> T:
        """Await one Docker call within its deadline (`Deadlines.of(op)` unless given)."""
        limit = self.deadlines.of(op) if deadline is None else deadline
        scope = asyncio.timeout(limit)
        began = time.perf_counter()
        with tracer.start_as_current_span(f"docker.{op}", attributes={"rtm.docker_op": op}):
            try:
                async with scope:
                    return await call
            except TimeoutError as exc:
                if not scope.expired():  # the client's own timeout, not the deadline
                    raise DockerUnavailable(f"docker {op}: {exc or type(exc).__name__}") from exc
                error = _EXPIRED_AS.get(op, DockerUnavailable)
                raise error(f"docker {op} timed out after {limit:g}s") from exc
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
        await self._pull(image_ref)
        labels = await self.image_labels(image_ref)
        if labels is None:
            raise ImagePullFailed(f"pull failed: {image_ref} absent after pull")
        return labels

    async def _pull(self, image_ref: str) -> None:
        """Pull with the registry's credentials, if the Docker config has any."""
        try:
            auth = self._credentials.for_image(image_ref) if self._credentials else None
        except DockerConfigError as exc:
            raise ImagePullFailed(f"pull failed: {exc}") from exc
        if auth is None:
            call = self._docker.images.pull(image_ref)
        else:
            call = self._docker.images.pull(qualified(image_ref), auth=auth.header())
        try:
            await self._timed("pull", call)
        except DockerError as exc:
            raise ImagePullFailed(f"pull failed: {exc.message}") from exc
        except DockerUnavailable as exc:
            raise ImagePullFailed(f"pull failed: {exc.message}") from exc

    # containers ------------------------------------------------------------

    async def create_and_start(self, spec: EngineSpec) -> ContainerInfo:
        try:
            container = await self._timed(
                "create", self._docker.containers.create(create_config(spec), name=spec.name)
            )
        except DockerError as exc:
            if exc.status == 409:
                raise ContainerNameInUse(f"create failed: {exc.message}") from exc
            raise ContainerStartFailed(f"create failed: {exc.message}") from exc
        try:
            await self._timed("start", container.start())
        except (DockerError, ContainerStartFailed) as exc:
            # A container that never ran (or ran out of time starting) is ours to
            # clean at once: leave nothing behind. A create that timed out may
            # still leave one: the next start retires it as a leftover.
            with suppress(DockerError, DockerUnavailable):
                await self.remove(container.id)
            if isinstance(exc, ContainerStartFailed):
                raise
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
        return info_from_inspect(container._container, self.network)

    async def stop(self, ref: str, timeout: int) -> None:
        try:
            container = self._docker.containers.container(ref)
            await self._timed(
                "stop", container.stop(t=timeout), deadline=self.deadlines.stop(timeout)
            )
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

    async def usage(self, ref: str, *, instant: bool = True) -> UsageReading | None:
        """One stats read (op `stats`; `one-shot` unless `instant=False`) and the
        container's restart count from its inspect, side by side."""
        params = {"stream": "false", "one-shot": "true" if instant else "false"}
        stats_call = self._docker._query_json(f"containers/{ref}/stats", params=params)
        try:
            stats, info = await asyncio.gather(self._timed("stats", stats_call), self.inspect(ref))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerUnavailable(f"docker stats: {exc.message}") from exc
        if info is None or info.state != "running":
            return None
        return reading_from_stats(stats, info.restart_count)

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
        return [info_from_list(c._container) for c in raw]

    async def open_logs(
        self,
        ref: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> DockerLogs | None:
        """`docker logs [--tail] [--since] [-f]`: a follow ends when the container
        stops (the daemon closes the response), or at `aclose`."""
        try:
            container = await self._timed("inspect", self._docker.containers.get(ref))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerUnavailable(f"docker inspect: {exc.message}") from exc
        data = container._container
        return await self.open_stream(
            f"containers/{data['Id']}/logs",
            log_params(tail=tail, since=since, follow=follow),
            tty=bool((data.get("Config") or {}).get("Tty")),
            what=f"the log driver of container {ref} cannot be read back",
        )

    async def events(self, since: float | None = None) -> AsyncIterator[EngineEvent]:
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
                yield event_from_raw(raw)
            if task.done() and task.exception() is not None:
                exc = task.exception()
                raise DockerUnavailable(f"docker events: {exc}") from exc
            raise DockerUnavailable("docker events stream closed by the daemon")
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task
