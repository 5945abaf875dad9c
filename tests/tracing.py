"""Spans in process, as an exporter would receive them.

Every RTM process installs an SDK tracer provider at boot (`setup_telemetry`),
so its spans record and carry valid trace ids even with no exporter; the test
session does the same once (`tests/conftest.py`), so in-process tests see what
a process does. Finished spans are kept only while a test captures them
(`finished_spans` fixture), not for the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider


class SpanCapture(SpanProcessor):
    """Hands finished spans to the capture under way, if any."""

    def __init__(self) -> None:
        self._into: list[ReadableSpan] | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._into is not None:
            self._into.append(span)

    def shutdown(self) -> None:
        self._into = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    @contextmanager
    def capturing(self) -> Iterator[list[ReadableSpan]]:
        spans: list[ReadableSpan] = []
        self._into = spans
        try:
            yield spans
        finally:
            self._into = None


def install() -> SpanCapture:
    """The session's global tracer provider (once; as `setup_telemetry` would)."""
    capture = SpanCapture()
    provider = TracerProvider()
    provider.add_span_processor(capture)
    trace.set_tracer_provider(provider)
    return capture
