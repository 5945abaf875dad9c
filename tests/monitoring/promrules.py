"""A small reader for RTM's Prometheus rule and rule-test files (stdlib only).

promtool is the authority on whether the files are valid; this reader only
pulls out what the pytest checks need (alert names, expressions, labels,
annotations, which alerts the promtool tests expect to fire) without a YAML
dependency. It understands the layout the files use: one `- alert:` or
`- record:` item per rule, scalars inline or as `|` / `>-` block scalars,
mappings as block or `{k: v}` flow style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "monitoring" / "prometheus"
RULES_DIR = PROM_DIR / "rules"
RULE_TESTS_DIR = PROM_DIR / "tests"

_ITEM = re.compile(r"^(?P<indent>\s*)- (?P<kind>alert|record): *(?P<name>\S+)\s*$")
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w]*):(?: +(?P<value>.*))?$")


@dataclass
class Rule:
    kind: str  # "alert" or "record"
    name: str
    expr: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    for_: str = ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _block(lines: list[str], start: int, parent_indent: int) -> tuple[list[str], int]:
    """Lines more indented than `parent_indent` from `start`; returns (lines, next index)."""
    out: list[str] = []
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > parent_indent):
        out.append(lines[i])
        i += 1
    while out and not out[-1].strip():
        out.pop()
    return out, i


def _scalar(value: str | None, lines: list[str], i: int, indent: int) -> tuple[str, int]:
    """Value of a key whose inline part is `value`; `i` is the next line."""
    value = (value or "").strip()
    if value and value[0] in "|>":
        body, i = _block(lines, i, indent)
        width = min((_indent(b) for b in body if b.strip()), default=0)
        stripped = [b[width:] for b in body]
        if value[0] == "|":
            return "\n".join(stripped), i
        return " ".join(s.strip() for s in stripped if s.strip()), i
    return _unquote(value), i


def _mapping(
    value: str | None, lines: list[str], i: int, indent: int
) -> tuple[dict[str, str], int]:
    value = (value or "").strip()
    if value.startswith("{"):
        pairs = [p for p in value.strip("{}").split(",") if p.strip()]
        return {k.strip(): _unquote(v) for k, v in (p.split(":", 1) for p in pairs)}, i
    body, end = _block(lines, i, indent)
    result: dict[str, str] = {}
    j = 0
    while j < len(body):
        m = _KEY.match(body[j])
        j += 1
        if not m:
            continue
        # Nested scalars are read from `body`, relative to the key's own indent.
        text, j = _scalar(m["value"], body, j, len(m["indent"]))
        result[m["key"]] = text
    return result, end


def load_rules(path: Path | str) -> list[Rule]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rules: list[Rule] = []
    i = 0
    while i < len(lines):
        m = _ITEM.match(lines[i])
        i += 1
        if not m:
            continue
        rule = Rule(kind=m["kind"], name=m["name"])
        key_indent = len(m["indent"]) + 2
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) >= key_indent):
            k = _KEY.match(lines[i])
            i += 1
            if not k or len(k["indent"]) != key_indent:
                continue
            key, value = k["key"], k["value"]
            if key == "expr":
                rule.expr, i = _scalar(value, lines, i, key_indent)
            elif key == "for":
                rule.for_ = _unquote(value or "")
            elif key == "labels":
                rule.labels, i = _mapping(value, lines, i, key_indent)
            elif key == "annotations":
                rule.annotations, i = _mapping(value, lines, i, key_indent)
        rules.append(rule)
    return rules


def all_rules() -> list[Rule]:
    return [r for p in sorted(RULES_DIR.glob("*.yml")) for r in load_rules(p)]


_TEST_CASE = re.compile(r"alertname:\s*(?P<name>\w+)\s*\n\s*exp_alerts:[ \t]*(?P<empty>\[\])?")


def rule_test_expectations(paths: list[Path] | None = None) -> tuple[set[str], set[str]]:
    """(alerts expected to fire somewhere, alerts expected silent somewhere)."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in paths or sorted(RULE_TESTS_DIR.glob("*.yml")):
        for m in _TEST_CASE.finditer(path.read_text(encoding="utf-8")):
            (silent if m["empty"] else firing).add(m["name"])
    return firing, silent


def kebab(name: str) -> str:
    """`RtmEngineOOMKilled` -> `rtm-engine-oom-killed` (the runbook anchor of an alert)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()
