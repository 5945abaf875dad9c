"""promtool and a real Prometheus server on RTM's monitoring config.

`deploy/monitoring/check.sh` installs Debian's `prometheus` package when
promtool is missing (so this runs on a fresh CI machine), then runs
`promtool check config`, `promtool check rules` and `promtool test rules`.
The server test starts the packaged Prometheus on the same config and asks
it which rules it loaded.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from monitoring.dashboard import dashboard_metric_names, promql_metric_names
from monitoring.promrules import PROM_DIR, REPO, all_rules

CHECK = REPO / "deploy" / "monitoring" / "check.sh"
# apt-get update + install on a cold machine; promtool itself takes seconds.
CHECK_TIMEOUT = 900


@pytest.fixture(scope="module")
def check_run() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )


def test_check_script_passes(check_run: subprocess.CompletedProcess[str]) -> None:
    assert check_run.returncode == 0, (
        f"deploy/monitoring/check.sh exited {check_run.returncode}\n"
        f"--- stdout\n{check_run.stdout}\n--- stderr\n{check_run.stderr}"
    )
    out = check_run.stdout + check_run.stderr
    assert "SUCCESS" in out
    assert "promtool test rules" in out


def test_check_script_fails_on_a_broken_rule_test(tmp_path: Path) -> None:
    """The script must not swallow promtool's failures."""
    work = tmp_path / "monitoring"
    shutil.copytree(CHECK.parent, work, ignore=shutil.ignore_patterns("grafana"))
    broken = work / "prometheus" / "tests" / "zz-broken_test.yml"
    broken.write_text(
        "rule_files: [../rules/rtm-alerts.yml]\n"
        "evaluation_interval: 1m\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series: []\n"
        "    alert_rule_test:\n"
        "      - eval_time: 5m\n"
        "        alertname: RtmServiceDown\n"
        "        exp_alerts: []\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [str(work / "check.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


@contextmanager
def _prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """A real Prometheus server on `config`; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "the Debian prometheus package should have installed /usr/bin/prometheus"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(lambda: _ready(f"{base}/-/ready", proc, log_path), "Prometheus ready")
            yield base
        finally:
            _stop(proc)


def _ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> bool:
    assert proc.poll() is None, log_path.read_text()
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _query(base: str, expr: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    return _get_json(url)["data"]["result"]  # type: ignore[no-any-return]


def test_prometheus_server_loads_config_and_rules(
    check_run: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert check_run.returncode == 0, "check.sh failed; see test_check_script_passes"
    with _prometheus(PROM_DIR / "prometheus.yml", tmp_path) as base:
        groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
        loaded = {(r["type"], r["name"]) for g in groups for r in g["rules"]}
        expected = {("alerting" if r.kind == "alert" else "recording", r.name) for r in all_rules()}
        assert loaded == expected
        assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups

        config = _get_json(f"{base}/api/v1/status/config")["data"]["yaml"]
        for job in ("rtm-api", "rtm-jobs", "rtm-watcher", "rtm-reconciler"):
            assert f"job_name: {job}" in config


# RTM's own instruments behind the OpenTelemetry Prometheus exporter, as a
# watcher leader whose probe worker has not iterated for 500 s. The leader
# gauge is set by the real LeaderElector (its label names are under test);
# every other instrument the dashboard or the rules read gets one sample.
EXPORTER = """
import sys, time
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server
from rtm_core.observability import Metrics
from rtm_core.runtime.leader import LeaderElector

metrics = Metrics(MeterProvider(metric_readers=[PrometheusMetricReader()]).get_meter("rtmanager"))
elector = LeaderElector(None, role="watcher", stack="t", ttl_seconds=10, metrics=metrics)
elector._set_gauge(True)
metrics.loop_age.set(500.0, worker="probe_worker")
metrics.loop_age.set(1.0, worker="events_listener")
metrics.loop_age.set(5.0, worker="inspect_worker")
metrics.health_events.add(1, {"event_type": "container_oom"})
metrics.records_by_status.set(1.0, status="running")
metrics.stream_pending.set(0.0, stream="runtime:start_jobs", group="rtmanager")
metrics.stream_lag.set(0.0, stream="runtime:start_jobs", group="rtmanager")
metrics.record_docker_latency("create", 0.007)
metrics.job_duration.record(0.3, {"kind": "start", "outcome": "success"})
metrics.probe_latency.record(0.002, {"outcome": "ok"})
metrics.operations.add(1, {"op_kind": "start", "outcome": "success", "error_code": ""})
metrics.loop_iterations.add(1, {"worker": "probe_worker"})
metrics.engine_cpu_percent.replace([(1.5, {"game_id": "g1"})])
metrics.engine_memory_bytes.replace([(1048576.0, {"game_id": "g1"})])
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
print("serving", elector.instance, flush=True)
time.sleep(600)
"""


def test_rules_on_real_exporter_output(
    check_run: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """Scrape RTM's real instruments: label names as exported, joins as written."""
    assert check_run.returncode == 0, "check.sh failed; see test_check_script_passes"
    port = _free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert exporter.stdout is not None
        serving, replica = exporter.stdout.readline().decode().split()
        assert serving == "serving"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{PROM_DIR / 'rules'}/*.yml']\n"
            "scrape_configs:\n"
            "  - job_name: rtm-watcher\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            encoding="utf-8",
        )
        with _prometheus(config, tmp_path) as base:
            target = f"127.0.0.1:{port}"
            _wait_for(
                lambda: _query(base, "instance_worker:rtmanager_loop_age_seconds:active"), "rules"
            )
            # `instance` is the target's; the process is told apart by `replica`.
            (leader,) = _query(base, "rtmanager_leader")
            assert leader["metric"]["instance"] == target
            assert leader["metric"]["replica"] == replica
            # No RTM attribute collides with a target label (`exported_*`).
            stored = _query(base, '{__name__=~"rtmanager_.+"}')
            assert not {k for r in stored for k in r["metric"] if k.startswith("exported_")}
            # Every RTM metric the dashboard and the rules read, as Prometheus
            # stored it after scraping the real exporter (OpenMetrics, units).
            names = {r["metric"]["__name__"] for r in stored}
            wanted = {
                n
                for n in dashboard_metric_names()
                | {m for rule in all_rules() for m in promql_metric_names(rule.expr)}
                if n.startswith("rtmanager_") and ":" not in n
            }
            assert wanted <= names, sorted(wanted - names)
            assert "rtmanager_docker_op_latency_seconds_bucket" in names
            active = {
                r["metric"]["worker"]
                for r in _query(base, "instance_worker:rtmanager_loop_age_seconds:active")
            }
            assert active == {"probe_worker", "events_listener", "inspect_worker"}
            _wait_for(lambda: _query(base, 'ALERTS{alertname="RtmLoopWedged"}'), "RtmLoopWedged")
            (wedged,) = _query(base, 'ALERTS{alertname="RtmLoopWedged"}')
            assert wedged["metric"]["worker"] == "probe_worker"
            assert wedged["metric"]["instance"] == target
            assert wedged["metric"]["alertstate"] == "pending"  # for: 1m
            # A freshly started Prometheus does not count the OOM counter's
            # whole history as new.
            assert not _query(base, 'ALERTS{alertname="RtmEngineOOMKilled"}')
            no_leader = 'ALERTS{alertname="RtmReconcilerNoLeader"}'
            _wait_for(lambda: _query(base, no_leader), "RtmReconcilerNoLeader")
            (no_reconciler,) = _query(base, no_leader)
            assert no_reconciler["metric"]["role"] == "reconciler"
    finally:
        _stop(exporter)
        if exporter.stdout is not None:
            exporter.stdout.close()
