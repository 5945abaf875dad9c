"""What rtmctl prints: tables for people, JSON and YAML for scripts.

`-o json` is the REST answer itself (a record, or `{"items": [...]}`),
indented, with keys in the API's order: scripts can rely on every field the
API documents. Tables are for people and may change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import yaml
from rich import box
from rich.table import Table

Row = dict[str, Any]


class Output(StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


def as_data(data: Any, output: Output) -> str:
    if output is Output.JSON:
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")


def age(value: str | None, now: datetime | None = None) -> str:
    """`2026-12-02T14:00:00Z` → `5m`, as kubectl shows ages."""
    if not value:
        return "-"
    when = datetime.fromisoformat(value)
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "Ki", "Mi", "Gi"):
        if amount < 1024 or unit == "Gi":
            return f"{amount:.0f}{unit}" if unit == "B" else f"{amount:.1f}{unit}"
        amount /= 1024
    return f"{amount:.1f}Gi"  # pragma: no cover


def short(container_id: str | None) -> str:
    return container_id[:12] if container_id else "-"


def usage(record: Row) -> Row:
    return record.get("usage") or {}


def cpu(record: Row) -> str:
    value = usage(record).get("cpu_percent")
    return "-" if value is None else f"{value:.1f}%"


Column = tuple[str, Callable[[Row], str]]

BASE_COLUMNS: list[Column] = [
    ("GAME", lambda r: r["game_id"]),
    ("STATUS", lambda r: r["status"]),
    ("IMAGE", lambda r: r.get("current_image_ref") or "-"),
    ("CONTAINER", lambda r: short(r.get("current_container_id"))),
    ("AGE", lambda r: age(r.get("created_at"))),
]
WIDE_COLUMNS: list[Column] = [
    *BASE_COLUMNS,
    ("ENDPOINT", lambda r: r.get("engine_endpoint") or "-"),
    ("CPU", cpu),
    ("MEMORY", lambda r: size(usage(r).get("memory_bytes"))),
    ("RESTARTS", lambda r: str(usage(r).get("restart_count", "-"))),
]
TOP_COLUMNS: list[Column] = [
    ("GAME", lambda r: r["game_id"]),
    ("IMAGE", lambda r: r.get("current_image_ref") or "-"),
    ("CPU", cpu),
    ("MEMORY", lambda r: size(usage(r).get("memory_bytes"))),
    ("LIMIT", lambda r: size(usage(r).get("memory_limit_bytes"))),
    ("RESTARTS", lambda r: str(usage(r).get("restart_count", "-"))),
    ("SAMPLED", lambda r: age(usage(r).get("sampled_at"))),
]
HISTORY_COLUMNS: list[Column] = [
    ("ID", lambda r: str(r["id"])),
    ("OP", lambda r: r["op_kind"]),
    ("SOURCE", lambda r: r["op_source"]),
    ("OUTCOME", lambda r: r["outcome"]),
    ("ERROR", lambda r: r.get("error_code") or "-"),
    ("IMAGE", lambda r: r.get("image_ref") or "-"),
    ("STARTED", lambda r: r["started_at"]),
]
EVENT_COLUMNS: list[Column] = [
    ("TIME", lambda r: r["occurred_at"]),
    ("GAME", lambda r: r["game_id"]),
    ("EVENT", lambda r: r["event_type"]),
    ("CONTAINER", lambda r: short(r.get("container_id"))),
    ("DETAILS", lambda r: json.dumps(r.get("details") or {}, separators=(",", ":"))),
]


def table(rows: Sequence[Row], columns: Sequence[Column]) -> Table:
    """kubectl-like: a bold header, no borders, one row per item."""
    grid = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    for name, _ in columns:
        grid.add_column(name, no_wrap=True, min_width=len(name))
    for row in rows:
        grid.add_row(*(cell(row) for _, cell in columns))
    return grid


def describe(record: Row) -> Table:
    """One record as `field  value` lines (`get`, and after an operation)."""
    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in record.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        grid.add_row(key, "-" if value is None else str(value))
    return grid


def event_line(event: Row) -> str:
    details = json.dumps(event.get("details") or {}, separators=(",", ":"))
    return (
        f"{event['occurred_at']}  {event['game_id']}  {event['event_type']}  "
        f"{short(event.get('container_id'))}  {details}"
    )
