"""OpenTelemetry SDK setup through opentelemetry-distro.

`OTEL_*` variables are honoured as the distro reads them; RTM only changes
the distro's defaults to `none` (a dev box has no collector) and makes
`otlp` mean OTLP over HTTP, the exporter it ships.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("rtm_core.telemetry")

_setup_lock = threading.Lock()
_setup_done = False


def setup_telemetry(process: str) -> None:
    """Install the global tracer and meter providers once per process."""
    global _setup_done
    with _setup_lock:
        if _setup_done:
            return
        os.environ.setdefault("OTEL_SERVICE_NAME", "galaxy-rtmanager")
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        attrs = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
        if "rtm.process=" not in attrs:
            os.environ["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
                a for a in (attrs, f"rtm.process={process}") if a
            )
        from opentelemetry.distro import OpenTelemetryConfigurator

        OpenTelemetryConfigurator().configure()  # type: ignore[no-untyped-call]
        if os.environ["OTEL_TRACES_EXPORTER"] != "none":
            # Redis commands become child spans of the operation that issued them.
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor().instrument()
        _setup_done = True
    log.info(
        "telemetry exporter started",
        extra={
            "traces_exporter": os.environ["OTEL_TRACES_EXPORTER"],
            "metrics_exporter": os.environ["OTEL_METRICS_EXPORTER"],
            "prometheus_port": os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")
            if "prometheus" in os.environ["OTEL_METRICS_EXPORTER"]
            else None,
        },
    )
