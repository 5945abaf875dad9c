"""Instruments as a scrape sees them (pure: an in-memory OpenTelemetry reader)."""

from __future__ import annotations

import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rtm_core.observability import Metrics
from rtm_core.runtime.loops import LoopRegistry


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple, float]:
    data = reader.get_metrics_data()
    out: dict[tuple, float] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted(p.attributes.items()))] = p.value
    return out


def test_loop_age_is_computed_at_collection_and_dropped_when_a_loop_stops() -> None:
    reader = InMemoryMetricReader()
    metrics = Metrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    loops = LoopRegistry(metrics)
    loops.register("probe_worker", interval=15)
    first = _points(reader, "rtmanager.loop_age")[(("worker", "probe_worker"),)]
    time.sleep(0.2)
    second = _points(reader, "rtmanager.loop_age")[(("worker", "probe_worker"),)]
    assert second >= first + 0.15  # no /readyz call in between
    loops.beat("probe_worker")
    assert _points(reader, "rtmanager.loop_age")[(("worker", "probe_worker"),)] < 0.1
    loops.unregister("probe_worker")
    assert _points(reader, "rtmanager.loop_age") == {}


def test_counters_are_exported_at_zero_before_the_first_event() -> None:
    reader = InMemoryMetricReader()
    Metrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    jobs = _points(reader, "rtmanager.jobs_processed")
    assert jobs[(("outcome", "failure"), ("stream", "start_jobs"))] == 0
    drift = _points(reader, "rtmanager.reconcile_drift")
    assert set(drift) == {(("kind", k),) for k in ("adopt", "dispose", "observed_exited")}
    assert _points(reader, "rtmanager.lease_conflicts") == {(): 0}


def test_latency_histograms_have_second_buckets() -> None:
    """Values are recorded in seconds: a 7 ms Docker call must fall in a bucket
    below 10 ms, not in the SDK's default first bucket (0, 5] meant for ms."""
    reader = InMemoryMetricReader()
    metrics = Metrics(MeterProvider(metric_readers=[reader]).get_meter("t"))
    metrics.record_docker_latency("create", 0.007)
    metrics.job_duration.record(0.3, {"kind": "start", "outcome": "success"})
    metrics.probe_latency.record(0.002, {"outcome": "ok"})
    data = reader.get_metrics_data()
    seen = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in getattr(metric.data, "data_points", []):
                    if hasattr(p, "explicit_bounds"):
                        upper = dict(zip(p.explicit_bounds, p.bucket_counts, strict=False))
                        seen[metric.name] = min(b for b, c in upper.items() if c)
    assert seen == {
        "rtmanager.docker_op_latency": 0.01,
        "rtmanager.job_duration": 0.5,
        "rtmanager.probe_latency": 0.0025,
    }
