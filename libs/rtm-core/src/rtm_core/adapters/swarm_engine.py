"""The Swarm adapter (`RTMANAGER_ENGINE_BACKEND=swarm`): engines as Swarm services.

Satisfies `rtm_core.ports.EngineRuntime` with the port's vocabulary mapped
onto a Swarm manager (`RTMANAGER_DOCKER_HOST`):

    port               Swarm
    ----------------   --------------------------------------------------------
    create_and_start   service create (one replica, pinned to the game's node
                       when it has one; a first placement constrained to the
                       least loaded zone when RTMANAGER_SWARM_PLACEMENT_SPREAD
                       names a node label), then wait for its task to run, up to
                       RTMANAGER_SWARM_START_TIMEOUT → ContainerStartFailed
                       (the service is removed again: nothing is left behind)
    inspect(ref)       the service + its newest task + that task's node →
                       ContainerInfo (`swarm_spec.info_from_service`); OOM and
                       health where the task runs on the manager itself
    stop               scale to 0 replicas, wait for the task to end (not for a
                       task whose node is gone); the service is kept until
                       cleanup (Docker 20.10 deletes a scaled-down task and its
                       container itself: a stopped engine's logs are the log
                       driver's, RTMANAGER_DOCKER_LOG_DRIVER)
    remove             service remove
    list_owned         services labelled owner + stack (+ game_id)
    events             the manager's own container events (service id as the
                       id, `oom` included) + task transitions of the other
                       nodes, polled (`swarm_tasks.TaskTransitions`)
    open_logs          service logs (`docker service logs`, every node's tasks);
                       a follow ends once no task of the service runs (Swarm's
                       own stream would wait for the next task forever)
    usage              stats of the task's container when it runs on the
                       manager itself; None for a task on another node (the
                       Docker API of a manager serves stats only of its own
                       containers; docs/scale-out.md)

A game's id (`current_container_id`) is its service id. Containers of this
stack that are not Swarm tasks (engines started before the deployment
switched from the docker backend) are still seen: inspect, stop, remove and
list fall back to them, so switching a running deployment to swarm neither
orphans nor duplicates its engines; each becomes a service at its next
restart, patch, or start after a stop.

Everything the manager answers with an error becomes an RTM error here, as
in `docker_engine`. The adapter is built over a `DockerEngine` of the same
daemon (images, the manager's own container events, pre-swarm containers)
and makes every call through it, so each has the same deadline
(`RTMANAGER_DOCKER_CALL_TIMEOUT`; a start waits up to
`RTMANAGER_SWARM_START_TIMEOUT`, a stop its grace, each plus the call
timeout), latency histogram `rtmanager.docker_op_latency{op}` and error
mapping as on the docker backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aiodocker.exceptions import DockerError

from rtm_core.adapters.docker_engine import DockerEngine, DockerLogs, LatencyRecorder, log_params
from rtm_core.adapters.swarm_spec import (
    ENDED_TASK_STATES,
    SERVICE_ID_LABEL,
    current_task,
    info_from_service,
    least_loaded_value,
    node_summary,
    node_usable,
    service_spec,
    task_container_id,
    task_problem,
    task_ran,
)
from rtm_core.adapters.swarm_tasks import TaskTransitions
from rtm_core.domain.engine import ContainerInfo, ContainerNameInUse, EngineEvent, EngineSpec
from rtm_core.domain.errors import ContainerStartFailed, DockerUnavailable
from rtm_core.domain.usage import UsageReading
from rtm_core.domain.vocabulary import LABEL_GAME_ID
from rtm_core.settings import PullPolicy, Settings

T = TypeVar("T")

#: First and longest pause between task polls while a start or a stop waits.
WAIT_POLL_INITIAL_SECONDS = 0.05
WAIT_POLL_MAX_SECONDS = 0.5
#: A stop waits for the task to end this long past the task's stop grace.
STOP_MARGIN_SECONDS = 10.0
#: Node states are cached this long between inspects (a whole watcher cycle
#: asks once, not once per game); the start pre-check always asks afresh.
NODE_CACHE_SECONDS = 1.0
#: Services per `GET /tasks?filters={"service": [...]}` (a URL, not a body).
TASK_FILTER_CHUNK = 100
#: A service update raced another writer (Swarm's optimistic versioning): retry.
UPDATE_ATTEMPTS = 3
#: How often a service-logs follow checks whether the engine still runs.
LOGS_FOLLOW_CHECK_SECONDS = 2.0


class ServiceLogs:
    """A service-logs read (`ports.EngineLogs`) that a follow ends once the
    service's engine no longer runs."""

    def __init__(self, logs: DockerLogs, running: Awaitable[None] | None) -> None:
        self._logs = logs
        self._watch = asyncio.ensure_future(self._end_after(running)) if running else None

    async def _end_after(self, running: Awaitable[None]) -> None:
        with suppress(Exception):
            await running
        await self._logs.aclose()

    def chunks(self) -> AsyncIterator[str]:
        return self._logs.chunks()

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch
        await self._logs.aclose()


class SwarmEngine:
    def __init__(
        self,
        containers: DockerEngine,
        *,
        placement_spread: str | None = None,
        start_timeout: float = 60.0,
        task_poll_interval: float = 1.0,
    ) -> None:
        #: The same daemon as plain Docker: images, the manager's own container
        #: events, pre-swarm containers, and every call's deadline and timing.
        self._containers = containers
        self._docker = containers.client
        self.stack = containers.stack
        self.network = containers.network
        self.placement_spread = placement_spread
        self.start_timeout = start_timeout
        self.task_poll_interval = task_poll_interval
        self._node_id: str | None = None
        #: First placements under way per zone, so concurrent starts spread too.
        self._reserved: Counter[str] = Counter()
        self._nodes_cache: tuple[float, dict[str, dict[str, Any]]] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, record_latency: LatencyRecorder | None = None
    ) -> SwarmEngine:
        containers = (
            DockerEngine.from_settings(settings)
            if record_latency is None
            else DockerEngine.from_settings(settings, record_latency)
        )
        return cls(
            containers,
            placement_spread=settings.swarm_placement_spread,
            start_timeout=settings.swarm_start_timeout,
            task_poll_interval=settings.swarm_task_poll_interval,
        )

    async def close(self) -> None:
        await self._containers.close()

    @property
    def owner_filters(self) -> list[str]:
        return self._containers.owner_filters

    async def _timed(self, op: str, call: Awaitable[T], *, deadline: float | None = None) -> T:
        return await self._containers.timed(op, call, deadline=deadline)

    async def _api(self, op: str, path: str, method: str = "GET", **kwargs: Any) -> Any:
        """One manager call; DockerError passes through for the caller to judge."""
        return await self._timed(op, self._docker._query_json(path, method=method, **kwargs))

    # daemon ----------------------------------------------------------------

    async def ping(self) -> None:
        """DockerUnavailable unless the daemon answers and is a Swarm manager."""
        try:
            info = await self._api("ping", "info")
        except DockerError as exc:
            raise DockerUnavailable(f"docker ping: {exc.message}") from exc
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            state = swarm.get("LocalNodeState") or "inactive"
            raise DockerUnavailable(
                f"the daemon is not a Swarm manager (swarm {state}); "
                "RTMANAGER_ENGINE_BACKEND=swarm needs RTMANAGER_DOCKER_HOST to be one"
            )
        self._node_id = swarm.get("NodeID") or None

    async def network_exists(self, name: str | None = None) -> bool:
        """The engines' network exists and is an attachable overlay (swarm scope):
        a bridge network cannot carry a service, and without `--attachable` RTM's
        own containers could not join it to reach the engines by name."""
        try:
            data = await self._api("inspect", f"networks/{name or self.network}")
        except DockerError as exc:
            if exc.status == 404:
                return False
            raise DockerUnavailable(f"docker network inspect: {exc.message}") from exc
        return (
            data.get("Driver") == "overlay"
            and bool(data.get("Attachable"))
            and data.get("Scope") == "swarm"
        )

    async def own_node_id(self) -> str | None:
        """The manager's own node id (its tasks' events come from its own stream)."""
        if self._node_id is None:
            await self.ping()
        return self._node_id

    # images ----------------------------------------------------------------

    async def ensure_image(self, image_ref: str, policy: PullPolicy) -> dict[str, str]:
        """Per policy on the manager, for the image's labels (resource overrides).
        Each node then resolves the image itself when it starts the task: in a
        multi-node swarm it must come from a registry every node can reach."""
        return await self._containers.ensure_image(image_ref, policy)

    # services --------------------------------------------------------------

    async def create_and_start(self, spec: EngineSpec) -> ContainerInfo:
        if spec.placement_node:
            await self._require_usable(spec.placement_node, spec.game_id)
            return await self._create_and_start(spec, ())
        zone = await self._least_loaded_zone() if self.placement_spread else None
        if zone is None:
            return await self._create_and_start(spec, ())
        self._reserved[zone] += 1
        try:
            return await self._create_and_start(spec, [f"{self.placement_spread}=={zone}"])
        finally:
            self._reserved[zone] -= 1

    async def _least_loaded_zone(self) -> str | None:
        """The spread label's value whose nodes run the fewest tasks (a first placement)."""
        assert self.placement_spread is not None
        try:
            running = await self._api(
                "list", "tasks", params={"filters": json.dumps({"desired-state": ["running"]})}
            )
        except DockerError as exc:
            raise DockerUnavailable(f"docker task list: {exc.message}") from exc
        nodes = await self._nodes()
        return least_loaded_value(nodes, running, self.placement_spread, self._reserved)

    async def _create_and_start(
        self, spec: EngineSpec, constraints: Sequence[str]
    ) -> ContainerInfo:
        body = service_spec(spec, constraints=constraints)
        try:
            created = await self._api("create", "services/create", "POST", data=json.dumps(body))
        except DockerError as exc:
            if exc.status == 409:
                raise ContainerNameInUse(f"service create failed: {exc.message}") from exc
            raise ContainerStartFailed(f"service create failed: {exc.message}") from exc
        service_id = str(created["ID"])
        try:
            task = await self._timed(
                "start",
                self._until_started(service_id),
                deadline=self.start_timeout + self._containers.deadlines.call,
            )
        except (ContainerStartFailed, DockerError) as exc:
            # A service whose task never ran is ours to clean at once.
            with suppress(DockerError, DockerUnavailable):
                await self._api("remove", f"services/{service_id}", "DELETE")
            if isinstance(exc, DockerError):
                raise ContainerStartFailed(f"start failed: {exc.message}") from exc
            raise
        # The task is running (or ran and already ended: the watcher reports that).
        return ContainerInfo(
            id=service_id,
            name=spec.name,
            labels=spec.labels(),
            state="running",
            node_id=task.get("NodeID") or None,
        )

    async def _require_usable(self, node_id: str, game_id: str) -> None:
        """A game pinned to its state's node starts only when that node can run it."""
        node = (await self._nodes(fresh=True)).get(node_id)
        if not node_usable(node):
            summary = node_summary(node)
            raise ContainerStartFailed(
                f"game {game_id} is pinned to node {node_id} (its state is there), which is "
                f"{summary['node_state']}/{summary['availability']}: bring the node back, "
                "or move the game (docs/scale-out.md)"
            )

    async def _until_started(self, service_id: str) -> dict[str, Any]:
        """The service's task once it runs; ContainerStartFailed when it cannot."""
        deadline = time.monotonic() + self.start_timeout
        pause = WAIT_POLL_INITIAL_SECONDS
        task: dict[str, Any] | None = None
        while True:
            task = current_task(await self._tasks([service_id]))
            state = (task or {}).get("Status", {}).get("State")
            if task is not None and (state == "running" or task_ran(task)):
                return task
            if state in ENDED_TASK_STATES:
                raise ContainerStartFailed(f"engine did not start: {task_problem(task)}")
            if time.monotonic() >= deadline:
                raise ContainerStartFailed(
                    f"engine not running after {self.start_timeout:g}s: {task_problem(task)}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, WAIT_POLL_MAX_SECONDS)

    async def inspect(self, ref: str) -> ContainerInfo | None:
        service = await self._service(ref)
        if service is None:
            return await self._containers.inspect(ref)  # a pre-swarm container, or nothing
        tasks = await self._tasks([str(service["ID"])])
        info = info_from_service(service, tasks, await self._nodes(), self.network)
        return await self._with_local_details(info, tasks)

    async def _with_local_details(
        self, info: ContainerInfo, tasks: list[dict[str, Any]]
    ) -> ContainerInfo:
        """OOM and health are only in the container's own inspect: add them when
        the task runs on the manager this adapter talks to."""
        task = current_task(tasks)
        container_id = task_container_id(task)
        if task is None or not container_id or task.get("NodeID") != await self.own_node_id():
            return info
        local = await self._containers.inspect(container_id)
        if local is None:
            return info
        return dataclasses.replace(
            info,
            oom_killed=local.oom_killed,
            health=local.health,
            started_at=local.started_at or info.started_at,
            finished_at=local.finished_at if not info.running else None,
        )

    async def usage(self, ref: str, *, instant: bool = True) -> UsageReading | None:
        """The usage of the service's running task, read from its container where
        the manager can: its own node. A task on another node is out of sight (a
        manager's API has no stats of other nodes' containers): None."""
        service = await self._service(ref)
        if service is None:
            return await self._containers.usage(ref, instant=instant)  # a pre-swarm container
        tasks = await self._tasks([str(service["ID"])])
        task = current_task(tasks)
        container_id = task_container_id(task)
        if task is None or not container_id or task.get("NodeID") != await self.own_node_id():
            return None
        reading = await self._containers.usage(container_id, instant=instant)
        if reading is None:
            return None
        # The game's restarts are its service's tasks, as `inspect` counts them.
        info = info_from_service(service, tasks, await self._nodes(), self.network)
        return dataclasses.replace(reading, restart_count=info.restart_count)

    async def stop(self, ref: str, timeout: int) -> None:
        """Scale to 0 and wait for the task to end. The task's grace is the one it
        was created with (RTMANAGER_CONTAINER_STOP_TIMEOUT_SECONDS, which is what
        the lifecycle passes as `timeout`); Swarm adds its own 2 s "gossip
        converge" pause before it stops a networked task."""
        service = await self._service(ref)
        if service is None:
            await self._containers.stop(ref, timeout)
            return
        service_id = str(service["ID"])
        for attempt in range(UPDATE_ATTEMPTS):
            spec = service["Spec"]
            if ((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas") == 0:
                break
            spec["Mode"] = {"Replicated": {"Replicas": 0}}
            version = (service.get("Version") or {}).get("Index")
            try:
                await self._api(
                    "stop",
                    f"services/{service_id}/update",
                    "POST",
                    params={"version": str(version)},
                    data=json.dumps(spec),
                )
                break
            except DockerError as exc:
                if exc.status == 404:
                    return
                if "out of sequence" not in exc.message or attempt + 1 == UPDATE_ATTEMPTS:
                    raise DockerUnavailable(f"docker service scale: {exc.message}") from exc
                refreshed = await self._service(service_id)
                if refreshed is None:
                    return
                service = refreshed
        limit = timeout + STOP_MARGIN_SECONDS
        await self._timed(
            "stop",
            self._until_ended(service_id, limit),
            deadline=limit + self._containers.deadlines.call,
        )

    async def _until_ended(self, service_id: str, limit: float) -> None:
        """Wait until no task of the service still runs; a task on an unavailable
        node cannot be waited for (Swarm ends it when the node is back)."""
        deadline = time.monotonic() + limit
        pause = WAIT_POLL_INITIAL_SECONDS
        while time.monotonic() < deadline:
            live = [
                t
                for t in await self._tasks([service_id])
                if (t.get("Status") or {}).get("State") not in ENDED_TASK_STATES and t.get("NodeID")
            ]
            if not live:
                return
            nodes = await self._nodes()
            if not any(node_usable(nodes.get(str(t.get("NodeID")))) for t in live):
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, WAIT_POLL_MAX_SECONDS)
        raise DockerUnavailable(f"docker stop: service {service_id} still running after {limit}s")

    async def remove(self, ref: str) -> None:
        try:
            await self._api("remove", f"services/{ref}", "DELETE")
        except DockerError as exc:
            if exc.status != 404:
                raise DockerUnavailable(f"docker service remove: {exc.message}") from exc
            await self._containers.remove(ref)  # a pre-swarm container, or nothing

    async def list_owned(self, game_id: str | None = None) -> list[ContainerInfo]:
        labels = self.owner_filters
        if game_id is not None:
            labels = [*labels, f"{LABEL_GAME_ID}={game_id}"]
        services = await self._services(labels)
        by_service: dict[str, list[dict[str, Any]]] = {sid: [] for sid in services}
        for task in await self._tasks(list(services)):
            by_service.setdefault(str(task.get("ServiceID")), []).append(task)
        nodes = await self._nodes() if services else {}
        owned = [
            info_from_service(service, by_service[sid], nodes, self.network)
            for sid, service in services.items()
        ]
        containers = await self._containers.list_owned(game_id)
        legacy = [c for c in containers if SERVICE_ID_LABEL not in c.labels]
        return owned + legacy

    # events ----------------------------------------------------------------

    async def events(self, since: float | None = None) -> AsyncIterator[EngineEvent]:
        """This stack's engine events until either source breaks (DockerUnavailable):
        the manager's container events, and the other nodes' task transitions."""
        queue: asyncio.Queue[EngineEvent | BaseException] = asyncio.Queue()

        async def local() -> None:
            try:
                async for event in self._containers.events(since):
                    queue.put_nowait(_as_service_event(event))
            except Exception as exc:
                queue.put_nowait(exc)

        async def remote() -> None:
            try:
                transitions = TaskTransitions(await self.own_node_id())
                while True:
                    services = await self._services(self.owner_filters)
                    for event in transitions.update(services, await self._tasks(list(services))):
                        queue.put_nowait(event)
                    await asyncio.sleep(self.task_poll_interval)
            except Exception as exc:
                queue.put_nowait(exc)

        pumps = [asyncio.ensure_future(local()), asyncio.ensure_future(remote())]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, DockerUnavailable):
                    raise item
                if isinstance(item, BaseException):
                    message = item.message if isinstance(item, DockerError) else str(item)
                    raise DockerUnavailable(f"docker events: {message}") from item
                yield item
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    # logs ------------------------------------------------------------------

    async def open_logs(
        self,
        ref: str,
        *,
        tail: int | None = None,
        since: datetime | None = None,
        follow: bool = False,
    ) -> ServiceLogs | DockerLogs | None:
        service = await self._service(ref)
        if service is None:  # a pre-swarm container, or nothing
            return await self._containers.open_logs(ref, tail=tail, since=since, follow=follow)
        service_id = str(service["ID"])
        spec = (service.get("Spec") or {}).get("TaskTemplate") or {}
        logs = await self._containers.open_stream(
            f"services/{service_id}/logs",
            log_params(tail=tail, since=since, follow=follow),
            tty=bool((spec.get("ContainerSpec") or {}).get("TTY")),
            what=f"the log driver of service {ref} cannot be read back",
        )
        if logs is None:
            return None
        return ServiceLogs(logs, self._while_running(service_id) if follow else None)

    async def _while_running(self, service_id: str) -> None:
        """Returns once no task of the service runs (or the service is gone)."""
        while True:
            await asyncio.sleep(LOGS_FOLLOW_CHECK_SECONDS)
            info = await self.inspect(service_id)
            if info is None or not info.running:
                return

    # reads -----------------------------------------------------------------

    async def _service(self, ref: str) -> dict[str, Any] | None:
        if not ref:
            return None
        try:
            service: dict[str, Any] = await self._api("inspect", f"services/{ref}")
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerUnavailable(f"docker service inspect: {exc.message}") from exc
        return service

    async def _services(self, labels: list[str]) -> dict[str, dict[str, Any]]:
        try:
            raw = await self._api(
                "list", "services", params={"filters": json.dumps({"label": labels})}
            )
        except DockerError as exc:
            raise DockerUnavailable(f"docker service list: {exc.message}") from exc
        return {str(s["ID"]): s for s in raw}

    async def _tasks(self, service_ids: list[str]) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = []
        for at in range(0, len(service_ids), TASK_FILTER_CHUNK):
            chunk = service_ids[at : at + TASK_FILTER_CHUNK]
            try:
                tasks += await self._api(
                    "list", "tasks", params={"filters": json.dumps({"service": chunk})}
                )
            except DockerError as exc:
                raise DockerUnavailable(f"docker task list: {exc.message}") from exc
        # The service filter also matches by name prefix: keep exactly ours.
        wanted = set(service_ids)
        return [t for t in tasks if t.get("ServiceID") in wanted]

    async def _nodes(self, *, fresh: bool = False) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        if not fresh and self._nodes_cache and now - self._nodes_cache[0] < NODE_CACHE_SECONDS:
            return self._nodes_cache[1]
        try:
            raw = await self._api("list", "nodes")
        except DockerError as exc:
            raise DockerUnavailable(f"docker node list: {exc.message}") from exc
        nodes = {str(n["ID"]): n for n in raw}
        self._nodes_cache = (now, nodes)
        return nodes


def _as_service_event(event: EngineEvent) -> EngineEvent:
    """A task container's event, named by its service (the id RTM keeps)."""
    service_id = event.labels.get(SERVICE_ID_LABEL)
    if not service_id:
        return event  # a pre-swarm container: its own id is the one RTM keeps
    return EngineEvent(
        action=event.action,
        container_id=service_id,
        labels=event.labels,
        time_nano=event.time_nano,
        exit_code=event.exit_code,
    )


if TYPE_CHECKING:
    from rtm_core.ports import EngineRuntime

    def _satisfies_the_port(engine: SwarmEngine) -> EngineRuntime:
        """mypy --strict checks the adapter against the port here."""
        return engine
