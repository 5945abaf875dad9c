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
import time
import urllib.request
from pathlib import Path

import pytest
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


def test_prometheus_server_loads_config_and_rules(
    check_run: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert check_run.returncode == 0, "check.sh failed; see test_check_script_passes"
    binary = shutil.which("prometheus")
    assert binary, "the Debian prometheus package should have installed /usr/bin/prometheus"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={PROM_DIR / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready in 60 s"
            time.sleep(0.25)

        groups = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
        loaded = {(r["type"], r["name"]) for g in groups for r in g["rules"]}
        expected = {("alerting" if r.kind == "alert" else "recording", r.name) for r in all_rules()}
        assert loaded == expected
        assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups

        config = _get_json(f"{base}/api/v1/status/config")["data"]["yaml"]
        for job in ("rtm-api", "rtm-jobs", "rtm-watcher", "rtm-reconciler"):
            assert f"job_name: {job}" in config
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
