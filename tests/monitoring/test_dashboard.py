"""The Grafana dashboard: well-formed, the panels operators need, exported metrics only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from monitoring.dashboard import (
    DASHBOARD,
    architecture_metric_names,
    dashboard_expressions,
    dashboard_metric_names,
    promql_metric_names,
)

BOARD: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in BOARD["panels"]:
        out.append(panel)
        out.extend(panel.get("panels") or [])
    return [p for p in out if p.get("type") != "row"]


# (what the panel shows, words its title must contain, a metric it must query)
REQUIRED_PANELS = [
    ("records by status", ["records", "status"], "rtmanager_runtime_records_by_status"),
    ("job rate", ["job", "rate"], "rtmanager_jobs_processed_total"),
    ("job failure ratio", ["failure", "ratio"], "rtmanager_jobs_processed_total"),
    (
        "job duration p50/p99",
        ["job duration", "p50", "p99"],
        "rtmanager_job_duration_seconds_bucket",
    ),
    (
        "docker op latency p99",
        ["docker", "p99", "op"],
        "rtmanager_docker_op_latency_seconds_bucket",
    ),
    ("health events by type", ["health events"], "rtmanager_health_events_total"),
    ("reconcile drift", ["reconcile drift"], "rtmanager_reconcile_drift_total"),
    ("lease conflicts", ["lease conflicts"], "rtmanager_lease_conflicts_total"),
    ("stream pending", ["pending"], "rtmanager_stream_pending"),
    ("stream lag", ["lag"], "rtmanager_stream_lag"),
    ("probe latency", ["probe latency"], "rtmanager_probe_latency_seconds_bucket"),
    ("leader per role", ["leader"], "rtmanager_leader"),
    ("loop age per worker", ["loop age"], "rtmanager_loop_age_seconds"),
    ("top engines by memory", ["top engines", "memory"], "rtmanager_engine_memory_bytes"),
    ("top engines by cpu", ["top engines", "cpu"], "rtmanager_engine_cpu_percent"),
]


def test_dashboard_basics() -> None:
    assert 36 <= BOARD["schemaVersion"] <= 41
    assert BOARD["uid"] and BOARD["title"]
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panels_use_the_datasource_variable() -> None:
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panel_ids_are_unique_and_fit_the_grid() -> None:
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in BOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]


@pytest.mark.parametrize(
    ("what", "words", "metric"), REQUIRED_PANELS, ids=[r[0] for r in REQUIRED_PANELS]
)
def test_required_panel_present(what: str, words: list[str], metric: str) -> None:
    matches = [
        p
        for p in _panels()
        if all(w in p["title"].lower() for w in words)
        and any(metric in promql_metric_names(t["expr"]) for t in p["targets"])
    ]
    assert matches, f"no panel for {what}: title with {words} querying {metric}"


def test_dashboard_queries_only_exported_metrics() -> None:
    used = dashboard_metric_names(DASHBOARD)
    exported = architecture_metric_names()
    assert len(used) >= 12
    assert used <= exported, f"not exported by RTM: {sorted(used - exported)}"


def test_every_expression_reads_some_metric() -> None:
    for where, expr in dashboard_expressions(DASHBOARD):
        assert promql_metric_names(expr), f"{where}: no metric in {expr!r}"


def test_architecture_list_is_parsed() -> None:
    names = architecture_metric_names()
    assert {
        "rtmanager_runtime_records_by_status",
        "rtmanager_docker_op_latency_seconds_bucket",
        "rtmanager_docker_op_latency_seconds_sum",
        "rtmanager_docker_op_latency_seconds_count",
        "rtmanager_reconcile_drift_total",
        "rtmanager_jobs_processed_total",
        "rtmanager_health_events_total",
        "rtmanager_lease_conflicts_total",
        "rtmanager_operations_total",
        "rtmanager_job_duration_seconds_bucket",
        "rtmanager_stream_pending",
        "rtmanager_stream_lag",
        "rtmanager_probe_latency_seconds_bucket",
        "rtmanager_leader",
        "rtmanager_loop_age_seconds",
        "rtmanager_loop_iterations_total",
        "up",
        "target_info",
    } <= names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up", {"up"}),
        ('up{job=~"rtm-.*"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (le, op) "
            "(rate(rtmanager_docker_op_latency_seconds_bucket[$__rate_interval])))",
            {"rtmanager_docker_op_latency_seconds_bucket"},
        ),
        (
            'sum(rate(a_total{x="by (y)"}[5m])) by (job) / on (job) group_left (z) b offset 5m',
            {"a_total", "b"},
        ),
        ("rate(x[1h:5m] @ start())", {"x"}),
        ('{__name__="rtmanager_leader", role="watcher"}', {"rtmanager_leader"}),
        ('{__name__=~"rtmanager_.*"}', {'=~"rtmanager_.*"'}),
        ("a and b or c unless d", {"a", "b", "c", "d"}),
        ("count(x) > bool 1e3 * 0x1F", {"x"}),
        ("sum without (instance) (ns:rec:rate5m) # comment with words", {"ns:rec:rate5m"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("vector(1) + scalar(time())", set()),
        ("max by (role, instance) (rtmanager_leader) < ${threshold}", {"rtmanager_leader"}),
    ],
)
def test_promql_metric_names(expr: str, expected: set[str]) -> None:
    assert promql_metric_names(expr) == expected
