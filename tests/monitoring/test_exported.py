"""What RTM's Prometheus exporter really serves, against the docs, the dashboard and the rules.

A fresh process builds `rtm_core.observability.Metrics` behind the real
`PrometheusMetricReader`, gives every instrument one sample (the leader
gauge through the real `LeaderElector`, so its label names are the ones the
services export) and prints prometheus_client's exposition. No stack, no
Prometheus server: tests/monitoring/test_promtool.py scrapes the same
exporter with a real Prometheus.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from monitoring.dashboard import (
    architecture_metric_names,
    dashboard_metric_names,
    promql_metric_names,
)
from monitoring.promrules import all_rules
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# Every instrument of `Metrics`, whatever its kind, gets one sample: a new
# instrument is checked without touching this script.
EXPOSITION = """
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Counter, Histogram, UpDownCounter
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import REGISTRY, generate_latest
from rtm_core.observability import GaugeValues, Metrics
from rtm_core.runtime.leader import LeaderElector

metrics = Metrics(MeterProvider(metric_readers=[PrometheusMetricReader()]).get_meter("rtmanager"))
for name, instrument in vars(metrics).items():
    if name == "leader":
        continue
    if isinstance(instrument, GaugeValues):
        instrument.set(1.0, probe="x")
    elif isinstance(instrument, Histogram):
        instrument.record(0.1, {"probe": "x"})
    elif isinstance(instrument, (Counter, UpDownCounter)):
        instrument.add(1, {"probe": "x"})
    elif hasattr(instrument, "set"):  # a synchronous gauge
        instrument.set(1.0, {"probe": "x"})
LeaderElector(None, role="watcher", stack="t", ttl_seconds=10, metrics=metrics)
print(generate_latest(REGISTRY).decode())
"""

# Prometheus' own labels: an exporter attribute of these names arrives as
# `exported_<name>` (honor_labels: false) and breaks every join on them.
TARGET_LABELS = {"job", "instance"}


@pytest.fixture(scope="module")
def exposition() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", EXPOSITION],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def families(exposition: str) -> dict[str, tuple[str, str]]:
    """RTM's families: name -> (type, help)."""
    return {
        f.name: (f.type, f.documentation)
        for f in text_string_to_metric_families(exposition)
        if f.name.startswith("rtmanager_")
    }


@pytest.fixture(scope="module")
def samples(exposition: str) -> list[Sample]:
    return [
        s
        for f in text_string_to_metric_families(exposition)
        for s in f.samples
        if s.name.startswith("rtmanager_")
    ]


@pytest.fixture(scope="module")
def exported(samples: list[Sample]) -> set[str]:
    return {s.name for s in samples}


def test_architecture_lists_exactly_what_is_exported(exported: set[str]) -> None:
    documented = {n for n in architecture_metric_names() if n.startswith("rtmanager_")}
    assert documented - exported == set(), "documented in docs/architecture.md, not exported"
    assert exported - documented == set(), "exported, missing from docs/architecture.md"


def test_durations_end_in_seconds(families: dict[str, tuple[str, str]]) -> None:
    histograms = {name for name, (kind, _) in families.items() if kind == "histogram"}
    assert {
        "rtmanager_docker_op_latency_seconds",
        "rtmanager_job_duration_seconds",
        "rtmanager_probe_latency_seconds",
    } <= histograms
    for name, (kind, help_text) in families.items():
        if kind == "histogram" or "second" in help_text.lower():
            assert name.endswith("_seconds"), f"{name} ({kind}): {help_text!r}"
    assert "rtmanager_loop_age_seconds" in families


def test_no_attribute_collides_with_a_target_label(samples: list[Sample]) -> None:
    for sample in samples:
        assert not TARGET_LABELS & set(sample.labels), sample
    (leader,) = [s for s in samples if s.name == "rtmanager_leader"]
    assert set(leader.labels) >= {"role", "replica"}


def test_dashboard_queries_only_exported_metrics(exported: set[str]) -> None:
    used = {n for n in dashboard_metric_names() if n.startswith("rtmanager_")}
    assert used, "the dashboard queries no rtmanager_ metric?"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_rules_read_only_exported_metrics(exported: set[str]) -> None:
    recorded = {r.name for r in all_rules() if r.kind == "record"}
    read = {
        (rule.name, metric)
        for rule in all_rules()
        for metric in promql_metric_names(rule.expr)
        if metric.startswith("rtmanager_") and metric not in recorded
    }
    assert read
    assert {(r, m) for r, m in read if m not in exported} == set()
