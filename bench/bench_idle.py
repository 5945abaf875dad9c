"""N idle engines on this machine (issue 14): what RTM itself costs while nothing happens.

    source .rtm-dev/test.env && .venv/bin/python bench/bench_idle.py \
        [--engines 1000] [--window 90] [--json out.json]

N real engines (`galaxy/test-engine` polling every 5 s: `IDLE_IMAGE`) are started through the core
(`Lifecycle.start`, 16 at once), then the four services run as their console
commands over the same database, network and stack: rtm-api, rtm-jobs,
rtm-watcher (probing every engine at its container IP every 15 s,
inspecting every 30 s) and rtm-reconciler (a pass every 30 s here, 300 s by
default). After one full probe and inspect cycle, each process's CPU time
(/proc) is taken over `--window` seconds, with its resident memory. Target:
the watcher's probe + inspect cycles keep to their intervals (its loop
iteration counters, scraped from its Prometheus endpoint, advance once per
interval) with ≤ 10 % of one core. The floor beside it: the CPU the N
engines themselves used in the same window (their cgroups), and dockerd's.

Every engine carries the bench's own `com.galaxy.stack` label and is removed
at the end (`benchkit`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bench_reconcile import raw_list_ms
from benchkit import IMAGE, REPO, BenchRig, bench_core, bench_port, bounded, load_fields

from rtm_core.domain.vocabulary import OpSource
from rtm_reconciler.bootstrap import bootstrap as reconciler_deps
from rtm_reconciler.reconciler import Reconciler

sys.path.insert(0, str(REPO / "tests"))
from processes import RtmProcess, settings_env

SERVICES = ("rtm-api", "rtm-jobs", "rtm-watcher", "rtm-reconciler")
WATCHER_TARGET_SHARE = 0.10
PROBE_INTERVAL_S, INSPECT_INTERVAL_S, RECONCILE_INTERVAL_S = 15.0, 30.0, 30.0


#: The test engine polling its state dir every 5 s instead of 0.2 s: at 0.2 s a
#: thousand busybox loops alone take several cores of this 2-core machine, and
#: an idle real engine does not poll five times a second.
IDLE_IMAGE = "galaxy/test-engine-idle:1.0.0"


def build_idle_image() -> None:
    dockerfile = f"FROM {IMAGE}\nENV ENGINE_POLL_INTERVAL=5\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", IDLE_IMAGE, "-"],
        input=dockerfile.encode(),
        check=True,
        capture_output=True,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def dockerd_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
            except OSError:
                continue
    return None


def engines_cpu_seconds(container_ids: list[str]) -> float:
    """CPU the engines' own cgroups used so far (cgroupfs driver, cgroup v1 or v2)."""
    total = 0.0
    for cid in container_ids:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
        v2 = Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat")
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists() and (usage := re.search(r"usage_usec (\d+)", v2.read_text())):
            total += int(usage.group(1)) / 1e6
    return total


async def loop_iterations(port: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    found: dict[str, float] = {}
    pattern = r'^rtmanager_loop_iterations_total\{[^}]*worker="([a-z_]+)"[^}]*\} (\S+)$'
    for m in re.finditer(pattern, text, re.M):
        found[m.group(1)] = float(m.group(2))
    return found


async def steady_pass(core: BenchRig, repeat: int = 5) -> dict[str, Any]:
    """The reconcile pass over these N running engines, nothing drifted (the
    steady state), beside the raw Docker list it cannot go below."""
    reconciler = Reconciler(reconciler_deps(core.infra, core.adapters), asyncio.Event())
    walls, lists = [], []
    for _ in range(repeat):
        report = await reconciler.reconcile()
        walls.append(report.duration_ms)
        lists.append(report.list_ms)
    floor = await raw_list_ms(core, repeat)
    print(
        f"steady reconcile pass over {report.records} records / {report.containers} running "
        f"engines: {statistics.median(walls):.0f} ms (its list {statistics.median(lists):.0f} ms;"
        f" raw Docker list {floor:.0f} ms)"
    )
    return {
        "wall_ms": round(statistics.median(walls), 1),
        "list_ms": round(statistics.median(lists), 1),
        "floor_ms": round(floor, 1),
        "records": report.records,
        "drifts": report.disposed + report.observed_exited + report.adopted,
        "load": load_fields(),
    }


async def bench(engines: int, window: float) -> dict[str, Any]:
    result: dict[str, Any] = {"engines": engines, "window_s": window, "load": load_fields()}
    overrides = {
        "probe_address_mode": "container_ip",
        "probe_interval": PROBE_INTERVAL_S,
        "inspect_interval": INSPECT_INTERVAL_S,
        "reconcile_interval": RECONCILE_INTERVAL_S,
    }
    async with bench_core(**overrides) as core:
        game_ids = [f"idle-{i:04d}" for i in range(engines)]
        build_idle_image()
        began = time.perf_counter()
        started = await bounded(
            16, [core.lifecycle.start(g, IDLE_IMAGE, OpSource.ADMIN_REST) for g in game_ids]
        )
        container_ids = [r.record.current_container_id for r in started if r.record]
        result["start_all_s"] = round(time.perf_counter() - began, 1)
        print(f"started {len(container_ids)} engines in {result['start_all_s']} s")
        metrics_port = bench_port()
        processes = []
        for name in SERVICES:
            extra = {"ops_http_addr": f"127.0.0.1:{bench_port()}"}
            if name == "rtm-api":
                extra = {"internal_http_addr": f"127.0.0.1:{bench_port()}"}
            env = settings_env(core.settings, **extra)
            if name == "rtm-watcher":
                env.update(
                    OTEL_METRICS_EXPORTER="prometheus",
                    OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                    OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
                )
            processes.append(RtmProcess(name, env))
        try:
            for p in processes:
                await p.start()
            for p in processes:
                await p.wait_for_message(
                    "internal http listening" if p.name == "rtm-api" else "worker started",
                    timeout=120,
                )
            # One full inspect cycle (and two probe cycles) before measuring.
            await asyncio.sleep(INSPECT_INTERVAL_S + 5)
            pids = {p.name: p.proc.pid for p in processes if p.proc is not None}
            daemon = dockerd_pid()
            before = {n: cpu_seconds(pid) for n, pid in pids.items()}
            daemon_before = cpu_seconds(daemon) if daemon else 0.0
            engines_before = engines_cpu_seconds(container_ids)
            iterations_before = await loop_iterations(metrics_port)
            t0 = time.perf_counter()
            await asyncio.sleep(window)
            elapsed = time.perf_counter() - t0
            iterations_after = await loop_iterations(metrics_port)
            cpu = {n: cpu_seconds(pid) - before[n] for n, pid in pids.items()}
            result["services"] = {
                n: {
                    "cpu_share": round(cpu[n] / elapsed, 4),
                    "rss_mb": round(rss_mb(pid), 1),
                }
                for n, pid in pids.items()
            }
            result["rtm_cpu_share"] = round(sum(cpu.values()) / elapsed, 4)
            result["rtm_rss_mb"] = round(sum(rss_mb(pid) for pid in pids.values()), 1)
            result["engines_cpu_share"] = round(
                (engines_cpu_seconds(container_ids) - engines_before) / elapsed, 4
            )
            result["dockerd_cpu_share"] = (
                round((cpu_seconds(daemon) - daemon_before) / elapsed, 4) if daemon else None
            )
            result["watcher_cycles"] = {
                w: iterations_after.get(w, 0) - iterations_before.get(w, 0)
                for w in ("probe_worker", "inspect_worker")
            }
            # A loop sleeps its interval after each cycle: a cycle that fits in
            # its interval makes at least window / (2 x interval) iterations.
            result["watcher_cycles_expected"] = {
                "probe_worker": int(elapsed / (2 * PROBE_INTERVAL_S)),
                "inspect_worker": int(elapsed / (2 * INSPECT_INTERVAL_S)),
            }
            result["watcher_cpu_share"] = result["services"]["rtm-watcher"]["cpu_share"]
            result["steady_pass"] = await steady_pass(core)
        finally:
            for p in processes:
                await p.close()
    result["load_after"] = load_fields()
    return result


def report(r: dict[str, Any]) -> None:
    print(f"{r['engines']} idle engines, {r['window_s']:g} s window:")
    for name, s in r["services"].items():
        print(f"  {name:<15} CPU {s['cpu_share']:.1%} of a core, RSS {s['rss_mb']:.0f} MB")
    print(
        f"  RTM total CPU {r['rtm_cpu_share']:.1%}, RSS {r['rtm_rss_mb']:.0f} MB; engines "
        f"{r['engines_cpu_share']:.1%}, dockerd {r['dockerd_cpu_share'] or 0:.1%}\n"
        f"  watcher cycles {r['watcher_cycles']} (at least "
        f"{r['watcher_cycles_expected']} if each fits its interval), "
        f"watcher CPU {r['watcher_cpu_share']:.1%} (target ≤ {WATCHER_TARGET_SHARE:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--window", type=float, default=90.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    result = asyncio.run(bench(args.engines, args.window))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
