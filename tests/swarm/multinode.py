"""The multi-node test of the swarm backend (`make swarm-multinode`).

A real three-node swarm on this machine (tests/swarm/nodes.py: a manager and
two workers, each its own `dockerd` in its own network namespace), real
`rtm-watcher` and `rtm-reconciler` processes with
`RTMANAGER_ENGINE_BACKEND=swarm`, the lifecycle (what rtm-api and rtm-jobs
call) in this process over the same settings, PostgreSQL and Redis from the
test environment. It

1. starts GAMES games (default 12) through the lifecycle, all at once;
2. shows from `docker node ps` that they spread over every node (spread
   preference `node.labels.zone`, one zone per node);
3. kills one engine on a worker and checks the watcher reports it
   (`container_exited` through the task-transition path: a worker's
   container events never reach the manager);
4. drains one worker and checks RTM reports its games: `inspect_unhealthy`
   {state: node_unavailable} on the stream, the snapshot, and the records
   (`stopped`, `placement_node` = that worker) once the reconciler passes;
   a restart while the node is drained is refused at once;
5. puts the node back and restarts one of its games: it runs on its
   original node again (its state is there);
6. measures: start wall time, games per node, idle memory and CPU per
   engine, time to report a drained node, time to report a remote death.

Everything it starts (cluster, processes, database, state dirs) is removed at
the end, also when a step fails. Exit status 0 when every check held; the
report is printed as text and as one JSON line (and written to --report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from harness import fresh_database, wait_for
from processes import RtmProcess, free_port, settings_env
from redis.asyncio import Redis
from rig import Rig
from swarm.nodes import Cluster, sweep

from rtm_core.domain.errors import RtmError
from rtm_core.domain.vocabulary import OpSource
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import CoreAdapters, connect
from rtm_core.settings import Settings, load_settings

ENGINE = "galaxy/test-engine:1.0.0"
ADMIN = OpSource.ADMIN_REST


async def outcome(call: Any) -> tuple[str, float]:
    """An operation's error code ("" on success) and how long it took."""
    began = time.monotonic()
    try:
        await call
    except RtmError as error:
        return error.code, time.monotonic() - began
    return "", time.monotonic() - began


class Check(Exception):
    """A multi-node expectation that did not hold."""


def say(message: str) -> None:
    print(f"[multinode] {message}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Check(message)


class Run:
    def __init__(self, cluster: Cluster, settings: Settings, redis: Redis, dsn: str) -> None:
        self.cluster = cluster
        self.settings = settings
        self.redis = redis
        self.dsn = dsn
        self.report: dict[str, Any] = {"nodes": len(cluster.nodes)}
        self.hostnames = {
            n.node_id: n.docker("info", "-f", "{{.Name}}").stdout.strip() for n in cluster.nodes
        }

    # what RTM reports ---------------------------------------------------------

    async def events(self, event_type: str, games: set[str]) -> list[dict[str, Any]]:
        entries = await self.redis.xrange(self.settings.redis_health_events_stream)
        return [
            {**fields, "details": json.loads(fields["details"])}
            for _id, fields in entries
            if fields["event_type"] == event_type and fields["game_id"] in games
        ]

    async def records(self, games: set[str]) -> dict[str, dict[str, Any]]:
        conn = await asyncpg.connect(self.dsn.split("?", 1)[0])
        try:
            rows = await conn.fetch(
                "SELECT game_id, status, current_container_id, placement_node"
                " FROM rtmanager.runtime_records WHERE game_id = ANY($1::text[])",
                list(games),
            )
        finally:
            await conn.close()
        return {r["game_id"]: dict(r) for r in rows}

    # what Swarm shows ---------------------------------------------------------

    def node_ps(self) -> dict[str, list[str]]:
        """`docker node ps <node>` on the manager: this stack's running tasks per node."""
        per_node: dict[str, list[str]] = {}
        for node in self.cluster.nodes:
            out = self.cluster.manager.docker(
                "node",
                "ps",
                node.node_id,
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Name}}\t{{.CurrentState}}",
            ).stdout
            per_node[node.node_id] = [
                line.split("\t")[0].rsplit(".", 1)[0]
                for line in out.splitlines()
                if line.startswith("galaxy-game-") and "Running" in line
            ]
        return per_node

    def show_node_ps(self, title: str) -> dict[str, list[str]]:
        per_node = self.node_ps()
        say(title)
        for node_id, tasks in per_node.items():
            say(f"  {self.hostnames[node_id]} ({node_id[:12]}): {len(tasks)} running")
            for name in sorted(tasks):
                say(f"      {name}")
        return per_node

    def idle_usage(self, seconds: float = 5.0) -> dict[str, float]:
        """Memory and CPU of the engines' cgroups (the busybox test engine, idle)."""

        def read(kind: str, name: str) -> dict[str, int]:
            values = {}
            for node in self.cluster.nodes:
                root = Path("/sys/fs/cgroup") / kind / node.cgroup_parent.lstrip("/")
                for cg in root.glob("*"):
                    if cg.is_dir() and (cg / name).exists():
                        values[cg.name] = int((cg / name).read_text().split()[0])
            return values

        cpu_before = read("cpuacct", "cpuacct.usage")
        time.sleep(seconds)
        cpu_after = read("cpuacct", "cpuacct.usage")
        memory = read("memory", "memory.usage_in_bytes")
        shims = _shim_rss(self.cluster)
        n = max(len(memory), 1)
        cpu = [(cpu_after[c] - cpu_before.get(c, cpu_after[c])) / 1e9 / seconds for c in cpu_after]
        return {
            "engines": len(memory),
            "memory_mib_per_engine": round(sum(memory.values()) / n / 2**20, 2),
            "shim_rss_mib_per_engine": round(sum(shims) / max(len(shims), 1) / 2**20, 2),
            "cpu_percent_per_engine": round(100 * statistics.fmean(cpu) if cpu else 0.0, 3),
        }


def _shim_rss(cluster: Cluster) -> list[int]:
    marker = f"/run/rsw/{cluster.tag}/".encode()
    sizes = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and marker in cmdline:
                for line in (proc / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) * 1024)
    return sizes


async def scenario(run: Run, core: Rig, games: list[str]) -> None:
    cluster, report = run.cluster, run.report
    manager, workers = cluster.manager, cluster.nodes[1:]
    lifecycle = core.lifecycle

    # 1. GAMES starts at once ---------------------------------------------------------
    began = time.monotonic()
    answers = await asyncio.gather(*(outcome(lifecycle.start(g, ENGINE, ADMIN)) for g in games))
    report["start_wall_s"] = round(time.monotonic() - began, 2)
    report["start_each_s"] = {
        "median": round(statistics.median(t for _, t in answers), 2),
        "max": round(max(t for _, t in answers), 2),
    }
    bad = [(g, code) for g, (code, _) in zip(games, answers, strict=True) if code]
    expect(not bad, f"starts failed: {bad}")
    say(f"{len(games)} games started at once in {report['start_wall_s']} s")
    records = await run.records(set(games))
    expect(all(r["status"] == "running" for r in records.values()), "every record running")

    # 2. spread ----------------------------------------------------------------------
    per_node = run.show_node_ps("docker node ps (running tasks of this stack) after the starts:")
    report["games_per_node"] = {run.hostnames[n]: len(t) for n, t in per_node.items()}
    expect(all(per_node.values()), f"games on every node: {report['games_per_node']}")
    placed = Counter(r["placement_node"] for r in records.values())
    expect(
        placed == Counter({n: len(t) for n, t in per_node.items() if t}),
        f"placement_node recorded as Swarm placed: {placed}",
    )
    report["idle"] = run.idle_usage()
    say(f"idle engines: {report['idle']}")

    # 3. a death on a worker ----------------------------------------------------------
    victim_node = workers[0].node_id
    victim = sorted(per_node[victim_node])[0].removeprefix("galaxy-game-")
    crashed_at = time.time()
    (Path(run.settings.game_state_root) / victim / "exit_code").write_text("3")

    async def exited() -> list[dict[str, Any]]:
        return await run.events("container_exited", {victim})

    (event,) = await wait_for(exited, timeout=30, interval=0.1)
    expect(event["details"] == {"exit_code": 3, "oom": False}, f"remote death: {event}")
    report["remote_death_reported_s"] = round(int(event["occurred_at_ms"]) / 1000 - crashed_at, 2)
    say(
        f"{victim} exited 3 on {run.hostnames[victim_node]}: container_exited after "
        f"{report['remote_death_reported_s']} s (task-transition path)"
    )

    # 4. drain a worker ---------------------------------------------------------------
    drained = workers[-1]
    on_drained = {name.removeprefix("galaxy-game-") for name in per_node[drained.node_id]}
    drained_at = time.time()
    manager.docker("node", "update", "--availability", "drain", drained.node_id)
    say(f"drained {run.hostnames[drained.node_id]} holding {sorted(on_drained)}")

    async def all_reported() -> list[dict[str, Any]] | None:
        found = await run.events("inspect_unhealthy", on_drained)
        unavailable = [e for e in found if e["details"]["state"] == "node_unavailable"]
        return unavailable if {e["game_id"] for e in unavailable} == on_drained else None

    reported = await wait_for(all_reported, timeout=60, interval=0.2)
    delays = [int(e["occurred_at_ms"]) / 1000 - drained_at for e in reported]
    report["drain_reported_s"] = {
        "first": round(min(delays), 2),
        "last": round(max(delays), 2),
        "games": len(on_drained),
    }
    say(f"inspect_unhealthy{{state: node_unavailable}} for all: {report['drain_reported_s']}")

    async def all_stopped() -> dict[str, dict[str, Any]] | None:
        now = await run.records(on_drained)
        return now if all(r["status"] == "stopped" for r in now.values()) else None

    stopped = await wait_for(all_stopped, timeout=60, interval=0.5)
    report["drain_recorded_stopped_s"] = round(time.time() - drained_at, 2)
    expect(
        all(r["placement_node"] == drained.node_id for r in stopped.values()),
        "drained games keep their node",
    )
    say(f"records of the drained node's games after {report['drain_recorded_stopped_s']} s:")
    for game, record in sorted(stopped.items()):
        say(f"  {game}: status={record['status']} placement_node={record['placement_node']}")
    expect(
        not any(g in t for t in run.node_ps().values() for g in on_drained),
        "nothing rescheduled away from its state",
    )

    # Restart while the node is drained: refused at once, nothing moved.
    game = sorted(on_drained)[0]
    code, took = await outcome(lifecycle.restart(game, ADMIN))
    report["restart_while_drained"] = {"error_code": code, "seconds": round(took, 2)}
    expect(code == "container_start_failed", f"restart while drained: {code!r}")
    say(f"restart of {game} while drained: {report['restart_while_drained']}")

    # 5. the node is back: the game restarts where its state is ------------------------
    manager.docker("node", "update", "--availability", "active", drained.node_id)
    code, took = await outcome(lifecycle.restart(game, ADMIN))
    expect(code == "", f"restart after the node is back: {code}")
    per_node = run.show_node_ps("docker node ps after the node is back and one game restarted:")
    expect(
        f"galaxy-game-{game}" in per_node[drained.node_id],
        f"{game} runs on its original node again",
    )
    boot = (Path(run.settings.game_state_root) / game / "boot.log").read_text().splitlines()
    report["restarted_on_original_node"] = {"game": game, "boot_log_lines": len(boot)}
    say(f"{game} runs on {run.hostnames[drained.node_id]} again (boot.log: {len(boot)} lines)")


async def main(args: argparse.Namespace) -> int:
    if not (pg := os.environ.get("RTM_TEST_POSTGRES_DSN")) or not (
        redis_addr := os.environ.get("RTM_TEST_REDIS_ADDR")
    ):
        print("source .rtm-dev/test.env first (RTM_TEST_POSTGRES_DSN, RTM_TEST_REDIS_ADDR)")
        return 2
    for tag in sweep():
        say(f"swept a cluster left by a dead run: {tag}")
    stack = f"multinode-{uuid.uuid4().hex[:8]}"
    network = f"rtm-{stack}"
    state_root = Path(tempfile.mkdtemp(prefix="rtm-multinode-"))
    games = [f"mn{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(args.games)]
    processes: list[RtmProcess] = []
    t0 = time.monotonic()
    cluster = Cluster.start(args.nodes)
    try:
        up_s = time.monotonic() - t0
        say(f"swarm of {args.nodes} dockerds up in {up_s:.1f} s (tag {cluster.tag})")
        cluster.load_images([ENGINE])
        cluster.create_overlay(network)
        for node in cluster.nodes:
            cluster.manager.docker(
                "node", "update", "--label-add", f"zone=z{node.index}", node.node_id
            )
        async with fresh_database(pg, "rtm_multinode_") as dsn:
            streams = uuid.uuid4().hex[:8]
            settings = load_settings(
                postgres_primary_dsn=dsn,
                redis_master_addr=redis_addr,
                engine_backend="swarm",
                docker_host=cluster.manager.host,
                docker_network=network,
                stack=stack,
                swarm_placement_spread="node.labels.zone",
                swarm_task_poll_interval="0.5s",
                game_state_root=state_root,
                game_state_owner_uid=os.getuid(),
                game_state_owner_gid=os.getgid(),
                image_pull_policy="never",
                container_stop_timeout_seconds=5,
                inspect_interval="1s",
                reconcile_interval="2s",
                probe_interval="1h",  # the host cannot reach an overlay network
                leader_lease_ttl_seconds=5,
                lobby_internal_base_url="http://127.0.0.1:9",
                lobby_internal_timeout="1s",
                redis_start_jobs_stream=f"{streams}:runtime:start_jobs",
                redis_stop_jobs_stream=f"{streams}:runtime:stop_jobs",
                redis_job_results_stream=f"{streams}:runtime:job_results",
                redis_health_events_stream=f"{streams}:runtime:health_events",
                notification_intents_stream=f"{streams}:notification:intents",
            )
            for command in ("rtm-watcher", "rtm-reconciler"):
                extra = {"ops_http_addr": f"127.0.0.1:{free_port()}"}
                processes.append(await RtmProcess(command, settings_env(settings, **extra)).start())
            for proc in processes:
                await proc.wait_for_message("docker network found", timeout=60)
            await processes[0].wait_for_message(
                "worker started", worker="inspect_worker", timeout=60
            )
            await processes[1].wait_for_message("reconciler initial pass completed", timeout=60)
            say("rtm-watcher and rtm-reconciler booted against the swarm manager")
            redis = Redis.from_url(f"redis://{redis_addr}", decode_responses=True)
            run = Run(cluster, settings, redis, dsn)
            infra = connect(settings, Metrics(), "multinode")
            core = Rig(infra, CoreAdapters.over(infra))
            try:
                await scenario(run, core, games)
            finally:
                await core.aclose()
                await redis.delete(*[k async for k in redis.scan_iter(f"{streams}:*")])
                await redis.aclose()
                for proc in processes:
                    if proc.proc is not None and proc.proc.returncode is None:
                        await proc.signal(signal.SIGTERM, timeout=40)
            run.report["total_s"] = round(time.monotonic() - t0, 1)
            say("report: " + json.dumps(run.report))
            if args.report:
                Path(args.report).write_text(json.dumps(run.report, indent=2) + "\n")
    except Check as failed:
        say(f"FAILED: {failed}")
        for proc in processes:
            say(f"--- {proc.name}:\n{proc.output}")
        return 1
    finally:
        for proc in processes:
            await proc.close()
        cluster.teardown()
        shutil.rmtree(state_root, ignore_errors=True)
        say("torn down: cluster, processes, database, state dirs")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--report", help="also write the JSON report here")
    sys.exit(asyncio.run(main(parser.parse_args())))
