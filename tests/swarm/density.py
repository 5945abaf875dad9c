"""How many engines one host holds: N idle busybox test engines on a dockerd of
their own (tests/swarm/nodes.py, never the machine's daemon), started through
RTM's engine adapter of either backend, then measured at rest.

    PYTHONPATH=tests .venv/bin/python tests/swarm/density.py --engines 100 --backend docker
    PYTHONPATH=tests .venv/bin/python tests/swarm/density.py --engines 60 --backend swarm

Per engine: the engine's cgroup memory (usage, and the RSS inside it), its
containerd shim's RSS, the daemons' (dockerd + containerd) RSS growth, and
CPU at rest over --idle seconds (the engine's cgroup, and shim + daemons).
Also the wall time of the starts, in batches of --batch at once. Prints one
JSON object. Everything is torn down at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiodocker
from swarm.nodes import Cluster

from rtm_core.adapters.docker_engine import DockerEngine
from rtm_core.adapters.swarm_engine import SwarmEngine
from rtm_core.domain.engine import EngineSpec

ENGINE = "galaxy/test-engine:1.0.0"
CLK = os.sysconf("SC_CLK_TCK")


def spec(i: int, network: str, root: Path) -> EngineSpec:
    state = root / f"d{i}"
    state.mkdir(parents=True, exist_ok=True)
    return EngineSpec(
        game_id=f"d{i}",
        name=f"galaxy-game-d{i}",
        image_ref=ENGINE,
        network=network,
        stack="density",
        state_host_path=str(state),
        state_mount_path="/var/lib/galaxy-game",
        state_env_name="GAME_STATE_PATH",
        nano_cpus=1_000_000_000,
        memory=512 * 1024**2,
        pids_limit=512,
        cpu_quota_label="1",
        memory_label="512m",
        stop_timeout=5,
    )


def processes(marker: bytes, names: tuple[bytes, ...]) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes()
                if marker in cmd and cmd.split(b"\0")[0].rsplit(b"/", 1)[-1] in names:
                    found.append(int(proc.name))
    return found


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK


def cgroups(cluster: Cluster, controller: str) -> list[Path]:
    root = Path("/sys/fs/cgroup") / controller / cluster.manager.cgroup_parent.lstrip("/")
    return [p for p in root.iterdir() if p.is_dir()]


def memory_stat(cg: Path) -> dict[str, int]:
    return {
        k: int(v)
        for k, v in (line.split() for line in (cg / "memory.stat").read_text().splitlines())
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster.start(1, swarm=args.backend == "swarm")
    root = Path(tempfile.mkdtemp(prefix="rtm-density-"))
    report: dict[str, Any] = {"backend": args.backend, "engines": args.engines}
    try:
        cluster.load_images([ENGINE])
        network = "density"
        if args.backend == "swarm":
            cluster.create_overlay(network)
            engine: Any = SwarmEngine(
                DockerEngine(
                    aiodocker.Docker(url=cluster.manager.host), stack="density", network=network
                )
            )
        else:
            cluster.manager.docker("network", "create", network)
            engine = DockerEngine(
                aiodocker.Docker(url=cluster.manager.host), stack="density", network=network
            )
        marker = f"/run/rsw/{cluster.tag}/".encode()
        daemons = processes(marker, (b"dockerd", b"containerd"))
        daemon_rss_before = rss(daemons)
        began = time.monotonic()
        for at in range(0, args.engines, args.batch):
            batch = range(at, min(at + args.batch, args.engines))
            await asyncio.gather(*(engine.create_and_start(spec(i, network, root)) for i in batch))
        report["start_wall_s"] = round(time.monotonic() - began, 1)
        report["start_per_engine_s"] = round(report["start_wall_s"] / args.engines, 3)
        await asyncio.sleep(args.settle)

        shims = processes(marker, (b"containerd-shim-runc-v2",))
        daemons = processes(marker, (b"dockerd", b"containerd"))
        engine_cpu = {
            cg.name: int((cg / "cpuacct.usage").read_text()) for cg in cgroups(cluster, "cpuacct")
        }
        other_cpu = cpu_seconds(shims + daemons)
        time.sleep(args.idle)
        engine_cpu_after = {
            cg.name: int((cg / "cpuacct.usage").read_text()) for cg in cgroups(cluster, "cpuacct")
        }
        other_cpu_after = cpu_seconds(shims + daemons)
        mems = [memory_stat(cg) for cg in cgroups(cluster, "memory")]
        n = len(mems)
        engine_cpu_s = (
            sum(engine_cpu_after[c] - engine_cpu.get(c, 0) for c in engine_cpu_after) / 1e9
        )
        mib = 2**20
        report.update(
            {
                "running": n,
                "engine_cgroup_usage_mib": round(
                    statistics.fmean(
                        int((cg / "memory.usage_in_bytes").read_text())
                        for cg in cgroups(cluster, "memory")
                    )
                    / mib,
                    2,
                ),
                "engine_rss_mib": round(statistics.fmean(m["total_rss"] for m in mems) / mib, 2),
                "shim_rss_mib": round(rss(shims) / max(len(shims), 1) / mib, 2),
                "daemons_rss_growth_mib_per_engine": round(
                    (rss(daemons) - daemon_rss_before) / n / mib, 2
                ),
                "idle_cpu_percent_per_engine": round(100 * engine_cpu_s / args.idle / n, 3),
                "idle_cpu_percent_shims_and_daemons_per_engine": round(
                    100 * (other_cpu_after - other_cpu) / args.idle / n, 3
                ),
                "load_average": os.getloadavg()[0],
            }
        )
        with contextlib.suppress(Exception):
            await engine.close()
    finally:
        cluster.teardown()
        shutil.rmtree(root, ignore_errors=True)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", type=int, default=50)
    parser.add_argument("--backend", choices=("docker", "swarm"), default="docker")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=10.0)
    print(json.dumps(asyncio.run(measure(parser.parse_args()))))
    sys.exit(0)
