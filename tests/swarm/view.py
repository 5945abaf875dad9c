"""The `docker` fixture of the swarm suites: the slice of `aiodocker.Docker` the
core, watcher and reconciler tests use, answered by a Swarm manager, so the very
same test functions check the swarm backend.

The translation is the swarm backend's own: a game's "container" is its
service (RTM keeps the service id), so

- `containers.get(ref)` with a service id or name → the inspect of the
  service's newest task container, with `Id` set to the service id (what the
  tests compare with `current_container_id`); `kill`/`exec` act on that task
  container; `delete` removes the service — a vanished engine on this
  backend is a `docker service rm` behind RTM's back. A service scaled to 0
  (a stopped game) has no task left: Docker 20.10 deletes scaled-down tasks
  and their containers, so it is shown as an exited container with no
  process. `State.Running`/`Status` are the task's (what Swarm, hence RTM,
  knows: the agent reports a container's exit a few hundred ms after
  Docker does), the rest of `State` the container's;
- `containers.run(config, name)` → what an operator starts by hand on this
  backend: a service with the config's image, labels, env and init, one
  replica, restart condition none, returned once its task has a container;
- any other ref → the plain container, as before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiodocker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from rtm_core.adapters.swarm_spec import current_task, replicas, task_container_id

TASK_CONTAINER_SECONDS = 30


#: What a stopped game's service looks like as a container: it runs nothing.
STOPPED = {"Status": "exited", "Running": False, "Pid": 0}
STARTING = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}


class SwarmEngineContainer:
    """A service seen through the task container that runs (or ran) it."""

    def __init__(
        self,
        client: aiodocker.Docker,
        service: dict[str, Any],
        task: DockerContainer | None,
        task_state: str = "shutdown",
    ):
        self._client = client
        self._service_id = str(service["ID"])
        self._task = task
        data = dict(task._container) if task is not None else {"State": dict(STOPPED)}
        running = task_state == "running"
        data["State"] = {
            **data["State"],
            "Running": running,
            "Status": "running" if running else "created" if task_state in STARTING else "exited",
        }
        self._container = {**data, "Id": self._service_id}
        self.id = self._service_id

    def _running_task(self) -> DockerContainer:
        if self._task is None:
            raise DockerError(409, {"message": f"service {self._service_id} runs nothing"})
        return self._task

    async def kill(self, **kwargs: Any) -> None:
        await self._running_task().kill(**kwargs)

    async def exec(self, **kwargs: Any) -> Any:
        return await self._running_task().exec(**kwargs)

    async def delete(self, **_: Any) -> None:
        await self._client.services.delete(self._service_id)

    async def show(self) -> dict[str, Any]:
        return {**(await self._task.show() if self._task else self._container)}


class SwarmContainers:
    def __init__(self, client: aiodocker.Docker) -> None:
        self._client = client

    async def _service(self, ref: str) -> dict[str, Any] | None:
        try:
            return dict(await self._client.services.inspect(ref))
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    async def _task_container(
        self, service: dict[str, Any], wait: float = 0
    ) -> tuple[DockerContainer, str]:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            task = current_task(await self._tasks(service))
            container_id = task_container_id(task)
            state = str((task or {}).get("Status", {}).get("State"))
            # Waiting (a `run`) means until the task runs or ended, as `docker run` returns.
            if task is not None and container_id and not (wait and state in STARTING):
                return await self._client.containers.get(container_id), state
            if asyncio.get_running_loop().time() >= deadline:
                raise DockerError(404, {"message": f"service {service['ID']} has no container"})
            await asyncio.sleep(0.1)

    async def get(self, ref: str) -> SwarmEngineContainer | DockerContainer:
        service = await self._service(ref)
        if service is None:
            return await self._client.containers.get(ref)
        if replicas(service) == 0 and not await self._tasks(service):
            return SwarmEngineContainer(self._client, service, None)
        return SwarmEngineContainer(self._client, service, *await self._task_container(service))

    async def _tasks(self, service: dict[str, Any]) -> list[dict[str, Any]]:
        tasks = await self._client.tasks.list(filters={"service": service["ID"]})
        return [dict(t) for t in tasks if t.get("ServiceID") == service["ID"]]

    async def run(self, config: dict[str, Any], name: str) -> SwarmEngineContainer:
        labels = dict(config.get("Labels") or {})
        env = list(config.get("Env") or [])
        body = {
            "Name": name,
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": config["Image"],
                    "Labels": labels,
                    "Env": env,
                    "Init": bool((config.get("HostConfig") or {}).get("Init")),
                },
                "RestartPolicy": {"Condition": "none"},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
        }
        created = await self._client._query_json("services/create", method="POST", data=body)
        service = dict(await self._client.services.inspect(created["ID"]))
        found = await self._task_container(service, wait=TASK_CONTAINER_SECONDS)
        return SwarmEngineContainer(self._client, service, *found)

    async def create(self, config: dict[str, Any], name: str) -> DockerContainer:
        return await self._client.containers.create(config, name=name)

    async def list(self, *, filters: str | dict[str, Any] | None = None, **_: Any) -> list[Any]:
        """Services (seen as their containers) and plain containers with these labels."""
        wanted = json.loads(filters) if isinstance(filters, str) else (filters or {})
        labels = wanted.get("label") or []
        services = await self._client.services.list(filters={"label": labels})
        found: list[Any] = [await self.get(str(s["ID"])) for s in services]
        plain = await self._client.containers.list(all=True, filters=json.dumps(wanted))
        return found + [c for c in plain if "com.docker.swarm.service.id" not in c["Labels"]]


class SwarmDocker:
    def __init__(self, client: aiodocker.Docker) -> None:
        self.client = client
        self.containers = SwarmContainers(client)
        self.services = client.services
        self.tasks = client.tasks
        self.nodes = client.nodes

    async def _query_json(self, *args: Any, **kwargs: Any) -> Any:
        return await self.client._query_json(*args, **kwargs)

    async def close(self) -> None:
        await self.client.close()
