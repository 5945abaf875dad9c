"""Every issue-14 benchmark, one after the other, then `bench/RESULTS.md`.

    source .rtm-dev/test.env && .venv/bin/python bench/run_all.py [--ci] [--only read,api]

Each benchmark runs as its own process and leaves its figures in
`.rtm-dev/bench/<name>.json`; the table is written from those, so a run
that was cut short still reports what it measured (`--only` re-runs some
and keeps the others' last figures). Every row shows the target, RTM's
figure, the raw floor measured in the same run, their ratio and the load
average when it was measured: the machine is shared, and a figure means
little without the load it was taken under. `bench/notes.md` (written by
hand: what bounds each figure, the profiles) is appended.

`--ci` is the short variant (`make bench-ci`): fewer records, engines and
rounds, written to `.rtm-dev/bench/RESULTS-ci.md`, never to bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = REPO / ".rtm-dev" / "bench"

#: name -> (script, full arguments, --ci arguments)
RUNS: dict[str, tuple[str, list[str], list[str]]] = {
    "reconcile": ("bench_reconcile.py", ["--real", "0"], ["--real", "0", "--records", "200"]),
    "read": ("bench_read.py", [], ["--seconds", "3", "--records", "1000"]),
    "api": ("bench_api.py", ["--starts", "10"], ["--starts", "3"]),
    "jobs20": (
        "bench_jobs.py",
        ["--jobs", "20", "--rounds", "3"],
        ["--jobs", "20", "--rounds", "1"],
    ),
    "jobs100": (
        "bench_jobs.py",
        ["--jobs", "100", "--replicas", "3", "--rounds", "2"],
        ["--jobs", "30", "--replicas", "3", "--rounds", "1"],
    ),
    "idle": ("bench_idle.py", ["--engines", "1000"], ["--engines", "50", "--window", "20"]),
    # SPEC §10's watcher figures (kill → container_exited, one probe cycle over
    # N engines): printed, not JSON; their last lines go under the table.
    "watcher": ("bench_watcher.py", [], ["--kills", "3", "--engines", "200", "--slow", "0"]),
}
#: Benchmarks that print their figures instead of writing JSON.
PRINTED = {"watcher"}


def run(name: str, ci: bool) -> None:
    script, full, short = RUNS[name]
    out = OUT / f"{name}{'-ci' if ci else ''}.json"
    command = [sys.executable, str(BENCH / script), *(short if ci else full)]
    if name not in PRINTED:
        command += ["--json", str(out)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    began = time.perf_counter()
    if name in PRINTED:
        printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(printed, end="")
        out.with_suffix(".txt").write_text(f"load {fmt_load(load_now())}\n{printed}")
    else:
        subprocess.run(command, check=True)
    print(f"== {name} took {time.perf_counter() - began:.0f} s", flush=True)


def load(name: str, ci: bool) -> dict[str, Any] | None:
    path = OUT / f"{name}{'-ci' if ci else ''}.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_now() -> dict[str, Any]:
    return {"load1": os.getloadavg()[0]}


def fmt_load(fields: dict[str, Any] | None) -> str:
    return f"{fields['load1']:.1f}" if fields else "-"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


Row = tuple[str, str, str, str, str, str, str]


def rows(ci: bool) -> list[Row]:
    """(what, target, RTM, floor, ratio, load, verdict) per figure."""
    out: list[Row] = []

    def add(*cells: object) -> None:
        out.append(tuple(str(c) for c in cells))  # type: ignore[arg-type]

    for part in (_reconcile, _idle_pass, _read, _jobs, _api, _idle):
        part(ci, add)
    return out


Add = Callable[..., None]


def _reconcile(ci: bool, add: Add) -> None:
    if r := load("reconcile", ci):
        n = next((k.split("-")[-1] for k in r if k.startswith("vanished-")), "?")
        v, s = r.get(f"vanished-{n}"), r.get(f"in-sync-{n}")
        if v:
            add(
                f"reconcile pass repairing {n} vanished games",
                "≤ 2 s",
                f"{v['wall_s']:.2f} s (RTM CPU {v['rtm_cpu_s']:.2f} s)",
                f"{v['floor_ms']:.0f} ms (Docker list + the same writes as raw SQL)",
                f"{v['wall_s'] * 1000 / v['floor_ms']:.1f}x",
                fmt_load(v["load"]),
                verdict(v["wall_s"] <= 2.0),
            )
        if before := r.get(f"vanished-{n}-per-game"):
            add(
                "the same repair game by game (the pass before issue 14), same run",
                "-",
                f"{before['wall_s']:.2f} s (RTM CPU {before['rtm_cpu_s']:.2f} s)",
                "-",
                f"{before['wall_s'] / v['wall_s']:.1f}x the batched pass" if v else "-",
                fmt_load(before["load"]),
                "-",
            )
        for key in (f"exited-{n}", f"adopt-{n}"):
            if e := r.get(key):
                add(
                    f"reconcile pass, {key} (created containers)",
                    "(≤ 2 s, as a repair)",
                    f"{e['wall_s']:.2f} s (RTM CPU {e['rtm_cpu_s']:.2f} s)",
                    f"{e['list_ms']:.0f} ms list in the pass",
                    "-",
                    fmt_load(e["load"]),
                    verdict(e["wall_s"] <= 2.0),
                )
        if s:
            add(
                f"steady reconcile pass over {n} (created containers)",
                "≤ 0.3 s",
                f"{s['wall_s'] * 1000:.0f} ms (its list {s['list_ms']:.0f} ms)",
                f"{s['floor_ms']:.0f} ms (raw Docker list)",
                f"{s['wall_s'] * 1000 / s['floor_ms']:.2f}x",
                fmt_load(s["load"]),
                verdict(s["wall_s"] <= 0.3),
            )


def _idle_pass(ci: bool, add: Add) -> None:
    if (i := load("idle", ci)) and (p := i.get("steady_pass")):
        add(
            f"steady reconcile pass over {p['records']} running engines",
            "≤ 0.3 s",
            f"{p['wall_ms']:.0f} ms (its list {p['list_ms']:.0f} ms)",
            f"{p['floor_ms']:.0f} ms (raw Docker list)",
            f"{p['wall_ms'] / p['floor_ms']:.2f}x",
            fmt_load(p["load"]),
            verdict(p["wall_ms"] <= 300),
        )


def _read(ci: bool, add: Add) -> None:
    if r := load("read", ci):
        h, g = r["healthz"], r["get"]
        add(
            f"GET /runtimes/{{id}} at {g['rate']:g} req/s, p99",
            "≤ 10 ms and ≤ 2x healthz p99",
            f"{g['p99_ms']:.1f} ms (p50 {g['p50_ms']:.1f})",
            f"{h['p99_ms']:.1f} ms (/healthz, same server and rate; p50 {h['p50_ms']:.1f})",
            f"{g['p99_ms'] / h['p99_ms']:.2f}x",
            fmt_load(r["load"]),
            verdict(g["p99_ms"] <= 10 and g["p99_ms"] <= 2 * h["p99_ms"]),
        )
        add(
            "GET /runtimes/{id}: server CPU per request",
            "≤ 0.7 ms",
            f"{g['server_cpu_ms_per_request']:.2f} ms",
            f"{h['server_cpu_ms_per_request']:.2f} ms (/healthz)",
            f"{g['server_cpu_ms_per_request'] / h['server_cpu_ms_per_request']:.2f}x",
            fmt_load(r["load"]),
            verdict(g["server_cpu_ms_per_request"] <= 0.7),
        )
        n = r["list_all_items"]
        if r.get("list_page_ms") is not None:
            add(
                f"GET /runtimes, {n} records, one page (limit=100), median",
                "≤ 20 ms",
                f"{r['list_page_ms']:.1f} ms",
                f"{r['db_page_ms']:.1f} ms (the page's SELECT, asyncpg)",
                f"{r['list_page_ms'] / r['db_page_ms']:.1f}x",
                fmt_load(r["load"]),
                verdict(r["list_page_ms"] <= 20),
            )
        else:
            add(
                f"GET /runtimes, {n} records, one page",
                "≤ 20 ms",
                "n/a: this branch's API does not page yet (see notes)",
                f"{r['db_page_ms']:.1f} ms (SELECT … LIMIT 100, asyncpg)",
                "-",
                fmt_load(r["load"]),
                "pending pagination",
            )
        add(
            f"GET /runtimes, {n} records, unpaged, median",
            "(no target)",
            f"{r['list_all_ms']:.0f} ms",
            f"{r['db_all_ms']:.0f} ms (the same SELECT, asyncpg)",
            f"{r['list_all_ms'] / r['db_all_ms']:.1f}x",
            fmt_load(r["load"]),
            "-",
        )


def _jobs(ci: bool, add: Add) -> None:
    for name, target, limit in (("jobs20", "≤ 1.10x", 1.10), ("jobs100", "≤ 1.15x", 1.15)):
        if r := load(name, ci):
            add(
                f"{r['jobs']} start jobs at once, {r['replicas']} rtm-jobs → {r['jobs']} results",
                target,
                f"{r['rtm_s']:.2f} s",
                f"{r['raw_s']:.2f} s ({r['jobs']} concurrent raw create+start, Docker API)",
                f"{r['ratio']:.2f}x",
                fmt_load(r["load"]),
                verdict(r["ratio"] <= limit),
            )


def _api(ci: bool, add: Add) -> None:
    if r := load("api", ci):
        add(
            "REST start → 200",
            "≤ 1.05x",
            f"{r['rest_ms']:.0f} ms (median of {r['rounds']})",
            f"{r['raw_ms']:.0f} ms (raw create+start, Docker API)",
            f"{r['ratio']:.2f}x (per-round median {r['paired_ratio']:.2f}x)",
            fmt_load(r["load"]),
            verdict(r["ratio"] <= 1.05),
        )


def _idle(ci: bool, add: Add) -> None:
    if r := load("idle", ci):
        svc = ", ".join(
            f"{n.removeprefix('rtm-')} {s['cpu_share']:.1%}/{s['rss_mb']:.0f} MB"
            for n, s in r["services"].items()
        )
        add(
            f"{r['engines']} idle engines: RTM CPU and memory (4 services)",
            "report",
            f"{r['rtm_cpu_share']:.1%} of a core, {r['rtm_rss_mb']:.0f} MB RSS ({svc})",
            f"engines {r['engines_cpu_share']:.1%}, dockerd {r['dockerd_cpu_share'] or 0:.1%}",
            "-",
            fmt_load(r["load"]),
            "reported",
        )
        cycles, expected = r["watcher_cycles"], r["watcher_cycles_expected"]
        kept = all(cycles[w] >= expected[w] for w in cycles)
        add(
            f"{r['engines']} idle engines: watcher probe + inspect cycles",
            "within their intervals, ≤ 10 % of a core",
            f"{r['watcher_cpu_share']:.1%} of a core; cycles {cycles['probe_worker']:g} probe, "
            f"{cycles['inspect_worker']:g} inspect in {r['window_s']:g} s",
            f"≥ {expected['probe_worker']} probe, {expected['inspect_worker']} inspect "
            "(each cycle within its 15 s / 30 s interval)",
            "-",
            fmt_load(r["load"]),
            verdict(kept and r["watcher_cpu_share"] <= 0.10),
        )


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        int(line.split()[1]) // 1024 // 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return f"{os.cpu_count()} cores ({model}), {mem} GB RAM, {platform.platform()}"


def write(ci: bool, started_load: tuple[float, float, float], only: list[str] | None) -> Path:
    target = OUT / "RESULTS-ci.md" if ci else BENCH / "RESULTS.md"
    lines = [
        "# RTM benchmarks (issue 14)" + (" — CI variant" if ci else ""),
        "",
        f"Written by `make bench{'-ci' if ci else ''}` (`bench/run_all.py`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Machine: {machine()}. Shared with other engineers' test runs: load average "
        f"(1/5/15 min) {started_load[0]:.1f}/{started_load[1]:.1f}/{started_load[2]:.1f} when "
        "this table was written; each row shows the 1-minute load when its figure was taken.",
        ""
        if only is None
        else f"\nThis run re-ran {', '.join(only)}; the other rows keep the figures of the "
        "previous full run (their load column is theirs).\n",
        "| what | target | RTM | raw floor, same run | ratio | load | verdict |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows(ci)),
        "",
    ]
    for name in sorted(PRINTED):
        printed = OUT / f"{name}{'-ci' if ci else ''}.txt"
        if printed.exists():
            lines += [
                f"SPEC §10 `bench_{name}.py` (same run; its own targets):",
                "",
                "```",
                *[line for line in printed.read_text().splitlines() if line.strip()],
                "```",
                "",
            ]
    notes = BENCH / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    target.write_text("\n".join(lines))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ci", action="store_true", help="the short variant")
    parser.add_argument("--only", help="comma-separated benchmarks to run: " + ",".join(RUNS))
    parser.add_argument("--report-only", action="store_true", help="write the table only")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started_load = os.getloadavg()
    names = args.only.split(",") if args.only else list(RUNS)
    failed = []
    if not args.report_only:
        for name in names:
            try:
                run(name, args.ci)
            except subprocess.CalledProcessError as exc:
                failed.append(name)
                print(f"== {name} failed ({exc.returncode}); the table keeps its last figures")
    only = args.only.split(",") if args.only else None
    print(f"wrote {write(args.ci, started_load, only)}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
