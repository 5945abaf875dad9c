"""Live metrics: every RTM container's Prometheus exporter (`:9464` on the
stack's private network) after a start, against SPEC §9 and the Grafana
dashboard; then Prometheus itself (profile `monitoring`) scraping all four."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from harness import wait_for
from integration.compose import RTM_SERVICES, ComposeStack
from monitoring.dashboard import dashboard_metric_names
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

#: SPEC §9, as Prometheus names: present on every process (counters start at 0).
SPEC_EVERYWHERE = (
    "rtmanager_runtime_records_by_status",
    "rtmanager_reconcile_drift_total",
    "rtmanager_jobs_processed_total",
    "rtmanager_health_events_total",
    "rtmanager_lease_conflicts_total",
)
PROMETHEUS = "http://127.0.0.1:9090"

Samples = list[tuple[str, dict[str, str], float]]


async def _samples(compose: ComposeStack, service: str) -> Samples:
    text = await compose.metrics(service)
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    for sample_name, sample_labels, value in samples:
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
            return value
    return None


async def test_each_service_exports_the_spec_metrics_after_a_start(compose: ComposeStack) -> None:
    game = compose.new_game("metrics")
    await compose.start_job(game)
    (result,) = await compose.wait_results(game, 1)
    assert result["outcome"] == "success", result
    # rtm-api's own Docker calls: /readyz pings the daemon on every request.
    assert (await compose.api.get("/readyz")).status_code == 200

    # Every process refreshes the records gauge from PostgreSQL every 10 s.
    async def all_count_it() -> dict[str, Samples] | None:
        per_service = {svc: await _samples(compose, svc) for svc in RTM_SERVICES}
        running = {
            svc: _value(s, "rtmanager_runtime_records_by_status", status="running")
            for svc, s in per_service.items()
        }
        return per_service if all((v or 0) >= 1 for v in running.values()) else None

    per_service: dict[str, Samples] = await wait_for(all_count_it, timeout=40, interval=1)

    for service, samples in per_service.items():
        names = {name for name, _, _ in samples}
        missing = [n for n in SPEC_EVERYWHERE if n not in names]
        assert not missing, f"{service} lacks {missing}"
        latency = [v for n, _, v in samples if n == "rtmanager_docker_op_latency_seconds_count"]
        assert sum(latency) >= 1, f"{service}: no rtmanager_docker_op_latency_seconds samples"

    jobs = per_service["rtm-jobs"]
    processed = _value(
        jobs, "rtmanager_jobs_processed_total", stream="start_jobs", outcome="success"
    )
    assert processed is not None and processed >= 1
    # Seconds, with buckets that fit: a container create takes well under a second.
    creates = _value(jobs, "rtmanager_docker_op_latency_seconds_count", op="create") or 0
    fast = _value(jobs, "rtmanager_docker_op_latency_seconds_bucket", op="create", le="1.0") or 0
    assert creates >= 1 and fast >= 1
    started = _value(jobs, "rtmanager_health_events_total", event_type="container_started")
    assert started is not None and started >= 1


#: The usage sampler's gauges (RTMANAGER_ENGINE_USAGE=on only).
USAGE_METRICS = {"rtmanager_engine_cpu_percent", "rtmanager_engine_memory_bytes"}


async def test_every_metric_the_dashboard_queries_is_exported(compose: ComposeStack) -> None:
    """`up` is Prometheus' own (checked against Prometheus below); every other name
    must be served by at least one live process. Histograms appear with their
    first sample, so this waits for a probe of a running engine (15 s interval)."""
    wanted = {n for n in dashboard_metric_names() if n.startswith("rtmanager_")}
    assert wanted, "the dashboard queries no rtmanager_ metric?"
    if os.environ.get("RTMANAGER_ENGINE_USAGE", "off") != "on":
        # Opt-in (issue 13): the stack runs without the usage sampler, so its panels
        # stay empty here; tests/watcher scrapes these from a real rtm-watcher.
        assert USAGE_METRICS <= wanted, "the dashboard lost its usage panels?"
        wanted -= USAGE_METRICS
    game = compose.new_game("dashboard")
    await compose.start_rest(game)

    async def missing() -> set[str]:
        served: set[str] = set()
        for service in RTM_SERVICES:
            served |= {name for name, _, _ in await _samples(compose, service)}
        return wanted - served

    last: set[str] = set()

    async def none_missing() -> bool:
        nonlocal last
        last = await missing()
        return not last

    try:
        await wait_for(none_missing, timeout=60, interval=2)
    except AssertionError:
        raise AssertionError(f"dashboard metrics no live service exports: {sorted(last)}") from None


async def _prometheus(path: str, **params: str) -> Any:
    async with httpx.AsyncClient(base_url=PROMETHEUS, timeout=10) as client:
        response = await client.get(path, params=params)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


async def test_prometheus_scrapes_all_four_services_with_the_rules_loaded(
    compose: ComposeStack,
) -> None:
    running = await compose.containers("prometheus")
    assert running, (
        "Prometheus (compose profile `monitoring`) is not running: `make integration` "
        "starts it, or `make monitoring-up`"
    )

    async def targets_up() -> dict[str, list[str]] | None:
        targets = (await _prometheus("/api/v1/targets", state="active"))["activeTargets"]
        health: dict[str, list[str]] = {}
        for target in targets:
            health.setdefault(target["labels"]["job"], []).append(target["health"])
        rtm = {job: health.get(job, []) for job in RTM_SERVICES}
        return rtm if all(h and set(h) == {"up"} for h in rtm.values()) else None

    try:
        await wait_for(targets_up, timeout=60, interval=2)
    except AssertionError:
        targets = (await _prometheus("/api/v1/targets", state="active"))["activeTargets"]
        raise AssertionError(
            "not all RTM targets up: "
            + str([(t["labels"]["job"], t["health"], t["lastError"]) for t in targets])
        ) from None

    groups = (await _prometheus("/api/v1/rules"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    alerts = {r["name"] for r in rules if r["type"] == "alerting"}
    assert {"RtmServiceDown", "RtmTargetDown", "RtmWatcherNoLeader"} <= alerts
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
    assert not unhealthy, unhealthy

    # The series the dashboard starts from, as Prometheus stored them.
    up = (await _prometheus("/api/v1/query", query='up{job=~"rtm-.*"}'))["result"]
    assert {s["metric"]["job"] for s in up} == set(RTM_SERVICES)

    # One leader per role. Right after a container was replaced (a new
    # `make up` config, a restart) the old replica's last sample stays fresh
    # until its target's next failed scrape or DNS refresh (<= 15 s here), so
    # this waits, as RtmMultipleLeaders' `for: 2m` does.
    async def one_leader_each() -> bool:
        query = "sum by (role) (rtmanager_leader)"
        leaders = (await _prometheus("/api/v1/query", query=query))["result"]
        sums = {s["metric"]["role"]: float(s["value"][1]) for s in leaders}
        return sums == {"watcher": 1.0, "reconciler": 1.0}

    await wait_for(one_leader_each, timeout=60, interval=2)
