"""Structured JSON logs; every line inside an operation carries its game_id and
op_kind (`rtm_core.observability.operation_context`)."""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from rtm_core.observability import current_operation


class _ContextFilter(logging.Filter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process
        gid, kind = current_operation()
        if getattr(record, "game_id", None) is None and gid is not None:
            record.game_id = gid
        if getattr(record, "op_kind", None) is None and kind is not None:
            record.op_kind = kind
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def setup_logging(process: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    handler.addFilter(_ContextFilter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": "WARNING"}.get(level, level.upper()))
    for noisy in ("uvicorn.access", "httpx", "httpcore", "aiodocker"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
