"""The swarm backend's translations, with no swarm: the service an engine is, the
ContainerInfo a service and its tasks amount to, the events task changes make."""

from __future__ import annotations

from typing import Any

from rtm_core.adapters.swarm_spec import (
    NODE_UNAVAILABLE,
    info_from_service,
    least_loaded_value,
    pinned_node,
    service_spec,
)
from rtm_core.adapters.swarm_tasks import TaskTransitions
from rtm_core.domain.engine import EngineSpec
from rtm_core.settings import load_settings

LABELS = {"com.galaxy.owner": "rtmanager", "com.galaxy.stack": "s", "com.galaxy.game_id": "g1"}


def spec(**overrides: Any) -> EngineSpec:
    values: dict[str, Any] = {
        "game_id": "g1",
        "name": "galaxy-game-g1",
        "image_ref": "galaxy/test-engine:1.0.0",
        "network": "galaxy-net",
        "stack": "s",
        "state_host_path": "/var/lib/galaxy/games/g1",
        "state_mount_path": "/var/lib/galaxy-game",
        "state_env_name": "GAME_STATE_PATH",
        "nano_cpus": 500_000_000,
        "memory": 64 * 1024**2,
        "pids_limit": 64,
        "cpu_quota_label": "0.5",
        "memory_label": "64m",
        "stop_timeout": 7,
    }
    values.update(overrides)
    return EngineSpec(**values)


def node(state: str = "ready", availability: str = "active") -> dict[str, Any]:
    return {"Status": {"State": state}, "Spec": {"Availability": availability}}


def service(replicas: int = 1, constraint: str | None = None) -> dict[str, Any]:
    placement = {"Constraints": [constraint]} if constraint else {}
    return {
        "ID": "svc1",
        "Spec": {
            "Name": "galaxy-game-g1",
            "Labels": LABELS,
            "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"Placement": placement},
        },
    }


def task(
    state: str, node_id: str = "n1", created: str = "2026-01-01T00:00:01Z", **status: Any
) -> dict[str, Any]:
    return {
        "ID": f"t-{state}-{created}",
        "ServiceID": "svc1",
        "NodeID": node_id,
        "CreatedAt": created,
        "Status": {"State": state, "Timestamp": "2026-01-01T00:00:02.5Z", **status},
        "NetworksAttachments": [
            {"Network": {"Spec": {"Name": "galaxy-net"}}, "Addresses": ["10.0.1.7/24"]}
        ],
    }


def test_the_service_of_an_engine() -> None:
    body = service_spec(spec(placement_node="n1", log_driver="local", log_opts={"max-size": "1m"}))
    assert body["Name"] == "galaxy-game-g1"
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    assert body["EndpointSpec"] == {"Mode": "dnsrr"}  # one task: no VIP, no IPVS
    template = body["TaskTemplate"]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Placement"] == {"Constraints": ["node.id==n1"]}
    assert template["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 64 * 1024**2,
        "Pids": 64,
    }
    container = template["ContainerSpec"]
    assert container["CapabilityDrop"] == ["ALL"] and container["Init"] is True
    assert container["StopGracePeriod"] == 7_000_000_000
    assert container["Labels"] == body["Labels"] == spec().labels()
    assert container["Mounts"] == [
        {
            "Type": "bind",
            "Source": "/var/lib/galaxy/games/g1",
            "Target": "/var/lib/galaxy-game",
            "ReadOnly": False,
        }
    ]
    assert template["Networks"] == [{"Target": "galaxy-net", "Aliases": ["galaxy-game-g1"]}]
    assert template["LogDriver"] == {"Name": "local", "Options": {"max-size": "1m"}}
    assert pinned_node(body | {"Spec": body}) == "n1"


def test_a_first_placement_is_swarms_unless_rtm_chose_a_zone() -> None:
    assert service_spec(spec())["TaskTemplate"]["Placement"] == {}
    zoned = service_spec(spec(), constraints=["node.labels.zone==b"])
    assert zoned["TaskTemplate"]["Placement"] == {"Constraints": ["node.labels.zone==b"]}
    # A game with a node is pinned to it; the zone does not matter any more.
    pinned = service_spec(spec(placement_node="n1"), constraints=["node.labels.zone==b"])
    assert pinned["TaskTemplate"]["Placement"] == {"Constraints": ["node.id==n1"]}


def test_the_least_loaded_zone_counts_running_tasks_and_placements_under_way() -> None:
    def zoned(zone: str | None, **kw: str) -> dict[str, Any]:
        labels = {"zone": zone} if zone else {}
        return {
            "Spec": {"Labels": labels, "Availability": kw.get("availability", "active")},
            "Status": {"State": kw.get("state", "ready")},
        }

    nodes = {
        "a1": zoned("a"),
        "a2": zoned("a"),
        "b1": zoned("b"),
        "x": zoned(None),
        "c1": zoned("c", availability="drain"),
    }
    running = [{"NodeID": "a1"}, {"NodeID": "a2"}, {"NodeID": "b1"}, {"NodeID": "x"}]
    pick = least_loaded_value
    assert pick(nodes, running, "node.labels.zone", {}) == "b"  # a:2 b:1 (c drained)
    assert pick(nodes, running, "node.labels.zone", {"b": 2}) == "a"
    assert pick(nodes, [], "node.labels.zone", {}) == "a"  # ties: by value
    assert pick(nodes, running, "node.labels.rack", {}) is None  # nobody has it


def test_a_running_task_is_a_running_engine_on_its_node() -> None:
    info = info_from_service(service(), [task("running")], {"n1": node()}, "galaxy-net")
    assert (info.id, info.name, info.state, info.running) == (
        "svc1",
        "galaxy-game-g1",
        "running",
        True,
    )
    assert (info.node_id, info.ip_address, info.exit_code, info.game_id) == (
        "n1",
        "10.0.1.7",
        0,
        "g1",
    )
    assert info.started_at == "2026-01-01T00:00:02.5Z" and info.finished_at is None


def test_the_newest_task_speaks_for_the_service() -> None:
    old = task("failed", created="2026-01-01T00:00:01Z", ContainerStatus={"ExitCode": 3})
    new = task("running", created="2026-01-01T00:00:09Z")
    info = info_from_service(service(), [new, old], {"n1": node()})
    assert info.state == "running" and info.restart_count == 1


def test_ended_tasks_in_dockers_words() -> None:
    nodes = {"n1": node()}
    failed = task("failed", ContainerStatus={"ExitCode": 3}, Err="task: non-zero exit (3)")
    info = info_from_service(service(), [failed], nodes)
    assert (info.state, info.exit_code, info.running) == ("exited", 3, False)
    assert info.finished_at == "2026-01-01T00:00:02.5Z"
    assert info_from_service(service(), [task("rejected")], nodes).state == "dead"
    assert info_from_service(service(), [task("pending")], nodes).state == "created"
    # Stopped by RTM: scaled to 0, and Docker 20.10 deleted the task.
    stopped = info_from_service(service(replicas=0), [], nodes)
    assert (stopped.state, stopped.exit_code, stopped.node_id) == ("exited", None, None)


def test_a_drained_down_or_vanished_node_is_node_unavailable() -> None:
    for nodes in ({"n1": node(availability="drain")}, {"n1": node(state="down")}, {}):
        info = info_from_service(service(), [task("running")], nodes)
        assert (info.state, info.running, info.node_id) == (NODE_UNAVAILABLE, False, "n1")
    # A task waiting for its pinned node has no node yet: the pin names it.
    pending = task("pending", node_id="")
    info = info_from_service(service(constraint="node.id==n2"), [pending], {"n1": node()})
    assert (info.state, info.node_id) == (NODE_UNAVAILABLE, "n2")


def test_task_changes_on_other_nodes_become_events() -> None:
    services = {"svc1": service()}
    transitions = TaskTransitions(local_node="manager")
    running = task("running", node_id="n1")
    assert transitions.update(services, [running]) == []  # the baseline says nothing
    assert transitions.update(services, [running]) == []
    died = dict(
        running,
        Status={
            "State": "failed",
            "ContainerStatus": {"ExitCode": 2},
            "Err": "task: non-zero exit (2)",
            "Timestamp": "2026-01-01T00:00:03Z",
        },
    )
    (event,) = transitions.update(services, [died])
    assert (event.action, event.container_id, event.exit_code, event.game_id) == (
        "die",
        "svc1",
        2,
        "g1",
    )
    assert event.time_nano == 1767225603 * 1_000_000_000
    assert transitions.update(services, [died]) == []  # once


def test_a_drain_ends_a_running_task_with_its_exit_code() -> None:
    services = {"svc1": service()}
    transitions = TaskTransitions(local_node="manager")
    running = task("running", node_id="n1")
    transitions.update(services, [])
    (start,) = transitions.update(services, [running])
    assert start.action == "start"
    shut = dict(running, Status={"State": "shutdown", "ContainerStatus": {"ExitCode": 143}})
    (event,) = transitions.update(services, [shut])
    assert (event.action, event.exit_code) == ("die", 143)


def test_tasks_of_the_managers_own_node_and_failed_starts_make_no_event() -> None:
    services = {"svc1": service()}
    transitions = TaskTransitions(local_node="n1")
    transitions.update(services, [])
    assert transitions.update(services, [task("running", node_id="n1")]) == []  # own events
    transitions = TaskTransitions(local_node="manager")
    transitions.update(services, [])
    rejected = task("rejected", node_id="n2", Err="invalid mount config")
    assert transitions.update(services, [rejected]) == []  # a failed start, not a death


def test_the_swarm_settings() -> None:
    settings = load_settings(
        postgres_primary_dsn="postgres://x@y/z",
        redis_master_addr="r:6379",
        engine_backend="swarm",
        swarm_placement_spread=" node.labels.zone ",
        swarm_start_timeout="2m",
    )
    assert settings.engine_backend == "swarm"
    assert settings.swarm_placement_spread == "node.labels.zone"
    assert settings.swarm_start_timeout == 120.0
    default = load_settings(postgres_primary_dsn="postgres://x@y/z", redis_master_addr="r:6379")
    assert default.engine_backend == "docker" and default.swarm_placement_spread is None


def test_a_bad_swarm_setting_is_refused_by_name() -> None:
    import pytest

    from rtm_core.settings import SettingsError

    base = {"postgres_primary_dsn": "postgres://x@y/z", "redis_master_addr": "r:6379"}
    with pytest.raises(SettingsError, match="RTMANAGER_SWARM_PLACEMENT_SPREAD"):
        load_settings(**base, swarm_placement_spread="zone")
    with pytest.raises(SettingsError, match="RTMANAGER_ENGINE_BACKEND"):
        load_settings(**base, engine_backend="kubernetes")
