"""Swarm's vocabulary to RTM's and back, with no I/O: the service an engine is,
and the `ContainerInfo` a service and its tasks amount to.

Kept apart from `swarm_engine` (which talks to the manager) so that every
mapping decision sits in one readable place:

- A game is one replicated service `galaxy-game-<game_id>` with one replica,
  restart condition `none` (RTM, not Swarm, decides about restarts) and
  endpoint mode `dnsrr`: one task needs no virtual IP, and the VIP's IPVS load
  balancer is not available on every kernel. The task's alias on the network
  is the service name, so `engine_endpoint` stays `http://galaxy-game-<id>:8080`.
- SPEC §4 hardening, as far as API 1.41 (Docker 20.10) carries it:
  `CapabilityDrop: [ALL]`, `Init`, `Resources.Limits` (NanoCPUs, MemoryBytes,
  Pids), no published ports, one bind mount. Not privileged: Swarm cannot run
  privileged tasks at all. Not carried by 1.41: `no-new-privileges` (the
  nodes' daemons run with `--no-new-privileges` instead, see docs/scale-out.md)
  and `MemorySwap` (a node without swap, or its default of twice the limit).
- The game's "container" seen by the lifecycle is the service: its id is the
  service id (stable across the task's life, what the lifecycle stores in
  `current_container_id` and marks in ExpectedExits); its state is the newest
  task's, in Docker's container vocabulary so the wire shapes are the same in
  both backends, plus `node_unavailable` when that task's node is down or
  drained (the state is on that node: the game cannot just run elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rtm_core.domain.engine import ContainerInfo, EngineSpec

#: Labels Swarm adds to a task's container.
SERVICE_ID_LABEL = "com.docker.swarm.service.id"
NODE_ID_LABEL = "com.docker.swarm.node.id"

#: A task whose node is down, disconnected or drained (not a Docker container state).
NODE_UNAVAILABLE = "node_unavailable"

_NANOS = 1_000_000_000
_PLACEMENT_PREFIX = "node.id=="

#: Swarm task states → Docker container states.
_TASK_STATES = {
    "new": "created",
    "allocated": "created",
    "pending": "created",
    "assigned": "created",
    "accepted": "created",
    "preparing": "created",
    "ready": "created",
    "starting": "created",
    "running": "running",
    "complete": "exited",
    "failed": "exited",
    "shutdown": "exited",
    "rejected": "dead",
    "orphaned": NODE_UNAVAILABLE,
    "remove": "removing",
}
#: Task states after which the task never runs again.
ENDED_TASK_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
#: What Swarm writes in a task's `Status.Err` when its container ran and exited non-zero.
RAN_AND_EXITED = "task: non-zero exit"


def service_spec(spec: EngineSpec, *, constraints: Sequence[str] = ()) -> dict[str, Any]:
    """The `POST /services/create` body of a game's engine. `constraints`: extra
    placement constraints of a first placement (the zone `RTMANAGER_SWARM_PLACEMENT_SPREAD`
    chose); a game that has a node is pinned to it."""
    labels = spec.labels()
    container: dict[str, Any] = {
        "Image": spec.image_ref,
        "Hostname": spec.name,
        "Labels": labels,
        "Env": [f"{spec.state_env_name}={spec.state_mount_path}"],
        "Mounts": [
            {
                "Type": "bind",
                "Source": spec.state_host_path,
                "Target": spec.state_mount_path,
                "ReadOnly": False,
            }
        ],
        "Init": True,
        "CapabilityDrop": ["ALL"],
        # Used when Swarm ends the task itself (scale to 0, drain, service rm).
        "StopGracePeriod": spec.stop_timeout * _NANOS,
    }
    placement: dict[str, Any] = {}
    if spec.placement_node:
        placement["Constraints"] = [f"{_PLACEMENT_PREFIX}{spec.placement_node}"]
    elif constraints:
        placement["Constraints"] = list(constraints)
    task: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": {
            "Limits": {
                "NanoCPUs": spec.nano_cpus,
                "MemoryBytes": spec.memory,
                "Pids": spec.pids_limit,
            }
        },
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": placement,
        "Networks": [{"Target": spec.network, "Aliases": [spec.name]}],
    }
    if spec.log_driver:
        task["LogDriver"] = {"Name": spec.log_driver, "Options": spec.log_opts}
    return {
        "Name": spec.name,
        "Labels": labels,
        "TaskTemplate": task,
        "Mode": {"Replicated": {"Replicas": 1}},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def label_value(node: dict[str, Any], descriptor: str) -> str | None:
    """A node's value of `node.labels.<k>` or `engine.labels.<k>`."""
    kind, _, key = descriptor.partition(".labels.")
    if kind == "node":
        labels = (node.get("Spec") or {}).get("Labels") or {}
    else:
        labels = ((node.get("Description") or {}).get("Engine") or {}).get("Labels") or {}
    value = labels.get(key)
    return str(value) if value is not None else None


def least_loaded_value(
    nodes: Mapping[str, dict[str, Any]],
    running_tasks: Sequence[dict[str, Any]],
    descriptor: str,
    reserved: Mapping[str, int],
) -> str | None:
    """The label value (zone) whose usable nodes run the fewest tasks, counting the
    placements under way (`reserved`); None when no usable node carries the label.

    Why RTM chooses and not a Swarm spread preference: a preference spreads the
    replicas *of one service*, and every game is a one-replica service, so it
    would never balance games (it skewed 12 games 4/6/2 over three zones where
    Swarm's default least-loaded choice gives 4/4/4).
    """
    load: dict[str, int] = {}
    for node in nodes.values():
        value = label_value(node, descriptor)
        if value is not None and node_usable(node):
            load.setdefault(value, 0)
    for task in running_tasks:
        runs_on = nodes.get(str(task.get("NodeID") or ""))
        value = label_value(runs_on, descriptor) if runs_on else None
        if value in load:
            load[value] += 1
    for value, count in reserved.items():
        if value in load:
            load[value] += count
    return min(load, key=lambda v: (load[v], v)) if load else None


def pinned_node(service: dict[str, Any]) -> str | None:
    """The node a service is pinned to by RTM's `node.id==<id>` constraint."""
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    for constraint in placement.get("Constraints") or []:
        text = str(constraint).replace(" ", "")
        if text.startswith(_PLACEMENT_PREFIX):
            return text[len(_PLACEMENT_PREFIX) :]
    return None


def replicas(service: dict[str, Any]) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    return int((mode.get("Replicated") or {}).get("Replicas") or 0)


def current_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The service's newest task: the one that says how the game is now."""
    if not tasks:
        return None
    return max(tasks, key=lambda t: (str(t.get("CreatedAt") or ""), _version(t)))


def _version(obj: dict[str, Any]) -> int:
    return int((obj.get("Version") or {}).get("Index") or 0)


def node_usable(node: dict[str, Any] | None) -> bool:
    """A node that can run (and keep running) a game: up and not drained."""
    if node is None:
        return False
    state = (node.get("Status") or {}).get("State")
    availability = (node.get("Spec") or {}).get("Availability")
    return state == "ready" and availability != "drain"


def node_summary(node: dict[str, Any] | None) -> dict[str, str]:
    """`{node_state, availability}` of a node, `gone` for one no longer in the swarm."""
    if node is None:
        return {"node_state": "gone", "availability": "gone"}
    return {
        "node_state": str((node.get("Status") or {}).get("State") or "unknown"),
        "availability": str((node.get("Spec") or {}).get("Availability") or "unknown"),
    }


def task_ran(task: dict[str, Any]) -> bool:
    """Whether an ended task's container did run (and then exited), as opposed to
    never starting (rejected, no such image, bad mount, …)."""
    status = task.get("Status") or {}
    state = status.get("State")
    if state == "complete":
        return True
    return state == "failed" and str(status.get("Err") or "").startswith(RAN_AND_EXITED)


def task_exit_code(task: dict[str, Any]) -> int | None:
    status = task.get("Status") or {}
    if status.get("State") not in ENDED_TASK_STATES:
        return None
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return int(code) if isinstance(code, int) and code >= 0 else None


def task_container_id(task: dict[str, Any] | None) -> str | None:
    if task is None:
        return None
    return ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or None


def task_problem(task: dict[str, Any] | None) -> str:
    """What Swarm says about a task that is not running, for error messages."""
    if task is None:
        return "no task scheduled yet"
    status = task.get("Status") or {}
    detail = status.get("Err") or status.get("Message") or ""
    return f"task {status.get('State', 'unknown')}" + (f": {detail}" if detail else "")


def _address(task: dict[str, Any], network: str | None) -> str | None:
    for attachment in task.get("NetworksAttachments") or []:
        spec = (attachment.get("Network") or {}).get("Spec") or {}
        if network is None or spec.get("Name") == network:
            for address in attachment.get("Addresses") or []:
                return str(address).split("/", 1)[0]
    return None


def info_from_service(
    service: dict[str, Any],
    tasks: list[dict[str, Any]],
    nodes: dict[str, dict[str, Any]],
    network: str | None = None,
) -> ContainerInfo:
    """One game's engine as RTM sees it: the service, its newest task, that task's node."""
    spec = service.get("Spec") or {}
    task = current_task(tasks)
    node_id = (task.get("NodeID") if task else None) or pinned_node(service)
    if task is None:
        state = "created" if replicas(service) > 0 else "exited"
    else:
        state = _TASK_STATES.get(str((task.get("Status") or {}).get("State")), "unknown")
    if node_id and state != "removing" and not node_usable(nodes.get(node_id)):
        state = NODE_UNAVAILABLE
    status = (task or {}).get("Status") or {}
    ended = task is not None and status.get("State") in ENDED_TASK_STATES
    return ContainerInfo(
        id=str(service["ID"]),
        name=str(spec.get("Name") or ""),
        labels=dict(spec.get("Labels") or {}),
        state=state,
        exit_code=task_exit_code(task) if ended and task else (0 if task else None),
        restart_count=max(0, len(tasks) - 1),
        ip_address=_address(task, network) if task else None,
        started_at=(task or {}).get("CreatedAt") if ended else status.get("Timestamp"),
        finished_at=status.get("Timestamp") if ended else None,
        node_id=node_id or None,
    )
