"""Static checks of the Prometheus rules: labels, annotations, metric names, tests, docs."""

from __future__ import annotations

import re

import pytest
from monitoring.dashboard import architecture_metric_names, promql_metric_names
from monitoring.promrules import REPO, Rule, all_rules, kebab, rule_test_expectations

RULES = all_rules()
ALERTS = [r for r in RULES if r.kind == "alert"]
ALERTS_MD = REPO / "docs" / "alerts.md"

# What the alerts must cover (the brief of deploy/monitoring).
REQUIRED_SIGNALS = {
    "rtmanager_jobs_processed_total",
    "rtmanager_stream_pending",
    "rtmanager_stream_lag",
    "rtmanager_health_events_total",
    "rtmanager_reconcile_drift_total",
    "rtmanager_lease_conflicts_total",
    "rtmanager_leader",
    "rtmanager_loop_age_seconds",
    "up",
}


def _raw_names(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Exported metric names an alert or recording rule reads, through recordings."""
    recorded = {r.name: r for r in RULES if r.kind == "record"}
    names: set[str] = set()
    for rule in [r for r in RULES if r.name == name]:
        for metric in promql_metric_names(rule.expr):
            if metric in recorded and metric not in seen:
                names |= _raw_names(metric, seen | {name})
            elif metric not in recorded:
                names.add(metric)
    return names


def test_rules_were_parsed() -> None:
    assert len(ALERTS) >= 12
    assert all(r.expr.strip() for r in RULES)


def test_alert_names_are_unique() -> None:
    names = [a.name for a in ALERTS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_alert_has_severity_and_annotations(alert: Rule) -> None:
    assert alert.labels.get("severity") in {"critical", "warning"}
    for key in ("summary", "description", "runbook_url"):
        assert alert.annotations.get(key, "").strip(), f"{alert.name}: no {key}"
    assert alert.annotations["runbook_url"].endswith(f"docs/runbook.md#{kebab(alert.name)}")


def test_kebab() -> None:
    assert kebab("RtmEngineOOMKilled") == "rtm-engine-oom-killed"
    assert kebab("RtmStartJobsFailing") == "rtm-start-jobs-failing"


def test_rules_read_only_exported_metrics_or_recordings() -> None:
    exported = architecture_metric_names()
    recorded = {r.name for r in RULES if r.kind == "record"}
    unknown = {
        (rule.name, metric)
        for rule in RULES
        for metric in promql_metric_names(rule.expr)
        if metric not in exported | recorded
    }
    assert not unknown


def test_alerts_cover_every_required_signal() -> None:
    covered = set().union(*(_raw_names(a.name) for a in ALERTS))
    assert covered >= REQUIRED_SIGNALS, REQUIRED_SIGNALS - covered


def test_every_alert_has_firing_and_silent_promtool_cases() -> None:
    firing, silent = rule_test_expectations()
    names = {a.name for a in ALERTS}
    assert names - firing == set(), "alerts never expected to fire in a promtool test"
    assert names - silent == set(), "alerts never expected to stay silent in a promtool test"
    assert (firing | silent) - names == set(), "promtool tests name unknown alerts"


def test_alerts_doc_lists_every_alert_with_its_severity() -> None:
    rows = re.findall(
        r"^\| \[(\w+)\]\(runbook\.md#([\w-]+)\) \| (\w+) \|", ALERTS_MD.read_text(), re.M
    )
    documented = {name: (anchor, severity) for name, anchor, severity in rows}
    expected = {a.name: (kebab(a.name), a.labels["severity"]) for a in ALERTS}
    assert documented == expected
