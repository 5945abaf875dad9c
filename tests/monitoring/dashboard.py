"""Metric names used by the Grafana dashboard and the Prometheus rules.

Reusable helpers (stdlib only):

- `promql_metric_names(expr)`: the metric names one PromQL expression reads;
- `dashboard_metric_names(path)`: every metric name queried anywhere in a
  Grafana dashboard JSON (panel targets, nested row panels, template
  variables, annotations);
- `architecture_metric_names(path)`: the Prometheus names that
  docs/architecture.md says RTM exports (histograms expanded to
  `_bucket/_sum/_count`), plus `up` and `target_info`.

tests/monitoring/test_dashboard.py checks the dashboard against the
architecture list; the same helpers can check it against a live /metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "monitoring" / "grafana" / "rtm-dashboard.json"
ARCHITECTURE = REPO / "docs" / "architecture.md"

# Words that look like identifiers in PromQL but are not metric names.
# Functions and aggregations are recognised by the `(` that follows them.
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
    }
)

# Grafana variables: $__rate_interval, $var, ${var}, ${var:format}, [[var]].
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_NAME_MATCHER = re.compile(r"""__name__\s*(=~|!=|!~|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_COMMENT = re.compile(r"#[^\n]*")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# A whole identifier (not the tail of a number such as 5m or 1e3) that is
# not followed by `(`.
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (`foo`, `foo{...}`, `{__name__="foo"}`).

    A `__name__` matcher that is not a plain equality is returned verbatim
    (e.g. `=~"rtmanager_.*"`), so a name check fails on it instead of
    silently accepting it.
    """
    text = _GRAFANA_VAR.sub("1", expr)
    names: set[str] = set()
    for op, quoted in _NAME_MATCHER.findall(text):
        value = quoted[1:-1]
        names.add(value if op == "=" else f"{op}{quoted}")
    text = _STRING.sub('""', text)
    text = _COMMENT.sub("", text)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names.update(n for n in _IDENTIFIER.findall(text) if n not in _KEYWORDS)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_expressions(path: Path | str = DASHBOARD) -> list[tuple[str, str]]:
    """(where, expr) for every PromQL expression in a dashboard."""
    board = json.loads(Path(path).read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for panel in _panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                found.append(
                    (f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"])
                )
    for var in (board.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            found.append((f"variable {var.get('name')!r}", _variable_query_expr(query)))
    for annotation in (board.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            found.append((f"annotation {annotation.get('name')!r}", annotation["expr"]))
    return found


def _variable_query_expr(query: str) -> str:
    # label_values(metric, label) / query_result(expr) / metrics(regex) wrap PromQL.
    match = re.fullmatch(r"\s*(label_values|query_result)\((.*)\)\s*", query, re.S)
    if not match:
        return query
    inner = match.group(2)
    if match.group(1) == "label_values":
        inner = inner.rsplit(",", 1)[0] if "," in inner else ""
    return inner


def dashboard_metric_names(path: Path | str = DASHBOARD) -> set[str]:
    """Every metric name a Grafana dashboard JSON queries."""
    names: set[str] = set()
    for _, expr in dashboard_expressions(path):
        names |= promql_metric_names(expr)
    return names


_ARCH_NAME = re.compile(r"\(`(rtmanager_[^`]+)`\)")


def architecture_metric_names(path: Path | str = ARCHITECTURE) -> set[str]:
    """The Prometheus metric names docs/architecture.md lists as exported."""
    text = Path(path).read_text(encoding="utf-8")
    names: set[str] = set()
    for token in _ARCH_NAME.findall(text):
        if "/" in token:  # rtmanager_x_bucket/_sum/_count or rtmanager_x_bucket/…
            base = token.split("/", 1)[0].removesuffix("_bucket")
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(token)
    for extra in ("up", "target_info"):
        if f"`{extra}`" in text:
            names.add(extra)
    return names
