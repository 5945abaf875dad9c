"""RTM's instruments: the tracer, the metrics of SPEC §9, and the log context
of an operation. Only the OpenTelemetry API is used here; the SDK and its
exporters are installed by `rtm_core.runtime.telemetry` at boot."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rtm_core.domain.vocabulary import HealthEventType

log = logging.getLogger(__name__)

tracer = trace.get_tracer("rtmanager")

_game_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("game_id", default=None)
_op_kind: contextvars.ContextVar[str | None] = contextvars.ContextVar("op_kind", default=None)


@contextmanager
def operation_context(game_id: str, op_kind: str) -> Iterator[None]:
    g, o = _game_id.set(game_id), _op_kind.set(op_kind)
    try:
        yield
    finally:
        _game_id.reset(g)
        _op_kind.reset(o)


def current_operation() -> tuple[str | None, str | None]:
    """(game_id, op_kind) of the operation this task runs in, if any."""
    return _game_id.get(), _op_kind.get()


#: Trace context across the streams (issue 13): W3C `traceparent` in a field of
#: the entry, as HTTP carries it in a header.
_W3C = TraceContextTextMapPropagator()


def remote_parent(traceparent: str) -> Context | None:
    """The context a job entry's `traceparent` names, to parent the job's span;
    None when there is none or it is not valid W3C (ignored, as the spec says)."""
    if not traceparent:
        return None
    context = _W3C.extract({"traceparent": traceparent})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def current_traceparent() -> str:
    """The current span's `traceparent`, for an entry RTM writes; empty when no
    span records (no tracer provider installed)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent", "")


#: Bucket bounds, in seconds, of the latency histograms. The SDK's default
#: bounds (0, 5, 10, 25 … 10000) are meant for milliseconds: with seconds
#: every Docker call and probe would land in the first bucket and
#: `histogram_quantile` would report ~5 s for everything.
#: Docker: milliseconds for create/inspect, up to the stop timeout and pulls.
DOCKER_OP_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    *(10.0, 30.0, 60.0, 120.0, 300.0),
)
JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class GaugeValues:
    """Latest values of an observable gauge, set from async code, read at scrape time."""

    def __init__(self) -> None:
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()
        self._refresher: Callable[[], None] | None = None

    def refresh_with(self, refresher: Callable[[], None]) -> None:
        """Have `refresher` recompute the values at every collection (e.g. ages)."""
        self._refresher = refresher

    def set(self, value: float, **attributes: str) -> None:
        with self._lock:
            self._values[tuple(sorted(attributes.items()))] = value

    def replace(self, values: Iterable[tuple[float, dict[str, str]]]) -> None:
        """Exactly these series from now on (a pass that sees every one of them)."""
        fresh = {tuple(sorted(attrs.items())): value for value, attrs in values}
        with self._lock:
            self._values = fresh

    def clear(self) -> None:
        with self._lock:
            self._values = {}

    def discard(self, **attributes: str) -> None:
        with self._lock:
            self._values.pop(tuple(sorted(attributes.items())), None)

    def get(self, **attributes: str) -> float | None:
        with self._lock:
            return self._values.get(tuple(sorted(attributes.items())))

    def callback(self, _options: CallbackOptions) -> Iterable[Observation]:
        if self._refresher is not None:
            self._refresher()
        with self._lock:
            items = list(self._values.items())
        return [Observation(v, dict(k)) for k, v in items]


class Metrics:
    """The instruments of SPEC §9 plus what operators need to see the streams.

    Durations and ages carry `unit="s"`: the Prometheus exporter appends the
    unit, so `rtmanager.docker_op_latency` is served as
    `rtmanager_docker_op_latency_seconds_*` (docs/architecture.md lists them).
    """

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        m = meter or metrics.get_meter("rtmanager")
        self.records_by_status = GaugeValues()
        self.stream_pending = GaugeValues()
        self.stream_lag = GaugeValues()
        self.leader = GaugeValues()
        self.loop_age = GaugeValues()
        self.games_in_backoff = GaugeValues()
        self.games_quarantined = GaugeValues()
        self.engine_cpu_percent = GaugeValues()
        self.engine_memory_bytes = GaugeValues()
        m.create_observable_gauge(
            "rtmanager.runtime_records_by_status",
            [self.records_by_status.callback],
            description="Runtime records per status",
        )
        m.create_observable_gauge(
            "rtmanager.stream_pending",
            [self.stream_pending.callback],
            description="Entries delivered to the consumer group but not yet acknowledged",
        )
        m.create_observable_gauge(
            "rtmanager.stream_lag",
            [self.stream_lag.callback],
            description="Entries in the stream not yet delivered to the consumer group",
        )
        m.create_observable_gauge(
            "rtmanager.leader",
            [self.leader.callback],
            description="1 when this replica holds the leader lease of its role",
        )
        m.create_observable_gauge(
            "rtmanager.loop_age",
            [self.loop_age.callback],
            unit="s",
            description="Seconds since the loop last completed an iteration",
        )
        # Issue 12 (RTMANAGER_AUTO_RESTART=on): set by the auto-restart loop of the
        # rtm-reconciler leader only; nothing is exported while the feature is off.
        m.create_observable_gauge(
            "rtmanager.games_in_backoff",
            [self.games_in_backoff.callback],
            description="Games whose engine crashed and waits for its automatic restart",
        )
        m.create_observable_gauge(
            "rtmanager.games_quarantined",
            [self.games_quarantined.callback],
            description="Games quarantined by the crash-loop policy (no automatic restarts)",
        )
        # Issue 13 (RTMANAGER_ENGINE_USAGE=on): set by the watcher leader's usage
        # sampler, per `game_id` (or one fleet total each, per-game label off).
        # No unit: the names already say it (`_percent`, `_bytes`), and the
        # exporter would append one again.
        m.create_observable_gauge(
            "rtmanager.engine_cpu_percent",
            [self.engine_cpu_percent.callback],
            description="CPU an engine used between its last two samples, percent of one CPU",
        )
        m.create_observable_gauge(
            "rtmanager.engine_memory_bytes",
            [self.engine_memory_bytes.callback],
            description="Memory an engine uses without reclaimable page cache, bytes",
        )
        self.docker_op_latency = m.create_histogram(
            "rtmanager.docker_op_latency",
            unit="s",
            description="Docker API call latency in seconds",
            explicit_bucket_boundaries_advisory=DOCKER_OP_BUCKETS,
        )
        self.job_duration = m.create_histogram(
            "rtmanager.job_duration",
            unit="s",
            description="Stream job duration in seconds",
            explicit_bucket_boundaries_advisory=JOB_BUCKETS,
        )
        self.probe_latency = m.create_histogram(
            "rtmanager.probe_latency",
            unit="s",
            description="Engine /healthz probe latency in seconds",
            explicit_bucket_boundaries_advisory=PROBE_BUCKETS,
        )
        self.reconcile_drift = m.create_counter(
            "rtmanager.reconcile_drift", description="Drifts the reconciler repaired"
        )
        self.jobs_processed = m.create_counter(
            "rtmanager.jobs_processed", description="Stream jobs processed, by outcome"
        )
        self.health_events = m.create_counter(
            "rtmanager.health_events", description="Health events published"
        )
        self.lease_conflicts = m.create_counter(
            "rtmanager.lease_conflicts", description="Per-game lease acquisitions refused"
        )
        self.operations = m.create_counter(
            "rtmanager.operations", description="Lifecycle operations, by kind and outcome"
        )
        self.loop_iterations = m.create_counter(
            "rtmanager.loop_iterations", description="Completed background loop iterations"
        )
        self.jobs_dead_lettered = m.create_counter(
            "rtmanager.jobs_dead_lettered",
            description="Stream jobs given up after too many deliveries (dead-lettered)",
        )
        self.auto_restarts = m.create_counter(
            "rtmanager.auto_restarts",
            description="Automatic restarts of crashed engines, by what ended the engine",
        )

        self.start_counters_at_zero()

    def start_counters_at_zero(self) -> None:
        """Export every known series from the first scrape, so `increase()` and
        ratios see the first event instead of a series appearing out of nowhere.

        Instruments made from the global meter before `setup_telemetry` installs
        the provider drop what they record until then: a process calls this
        again once telemetry is set up (`bootstrap.boot`). Adding 0 twice is harmless.
        """
        for stream in ("start_jobs", "stop_jobs"):
            for outcome in ("success", "failure"):
                self.jobs_processed.add(0, {"stream": stream, "outcome": outcome})
            self.jobs_dead_lettered.add(0, {"stream": stream})
        for kind in ("adopt", "dispose", "observed_exited"):
            self.reconcile_drift.add(0, {"kind": kind})
        for event_type in HealthEventType:
            self.health_events.add(0, {"event_type": event_type.value})
        self.lease_conflicts.add(0)

    def record_docker_latency(self, op: str, seconds: float) -> None:
        self.docker_op_latency.record(seconds, {"op": op})

    def count_lease_conflict(self) -> None:
        self.lease_conflicts.add(1)
