"""The rtm-api ASGI app: runtimes REST, `/healthz`, `/readyz`, and its OpenAPI document."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import TracerProvider

from rtm_api.bootstrap import ApiDeps
from rtm_api.deps import bind, bound
from rtm_api.errors import install_error_handlers
from rtm_api.middleware import RequestMiddleware
from rtm_api.observe import observe_router
from rtm_api.routes import runtimes_router
from rtm_core.runtime.ops_http import probes_router

OPENAPI_URL = "/openapi.json"
_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


class RtmApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, made to say what the server does.

        FastAPI declares a 422 on every route with parameters; RTM never sends
        one (validation failures are 400 `invalid_request`). Error responses
        declared without a body (`/readyz`'s 503) get the envelope schema.
        """
        if self.openapi_schema is None:
            schema = super().openapi()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for status, response in responses.items():
                        if int(status) >= 400 and "content" not in response:
                            response["content"] = {"application/json": {"schema": _ENVELOPE_REF}}
            components = schema.get("components", {}).get("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        assert self.openapi_schema is not None
        return self.openapi_schema


def create_app(deps: ApiDeps, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """The app serving with `deps` (see `declare_app`)."""
    app = declare_app(tracer_provider=tracer_provider)
    bind(app, deps)
    return app


def declare_app(*, tracer_provider: TracerProvider | None = None) -> RtmApi:
    """Every route, bound to no dependencies yet: what the OpenAPI document
    describes. Routes read the `ApiDeps` bound by `create_app` per request.

    Telemetry is FastAPI's native OpenTelemetry support, on the global
    providers `rtm_core.runtime.telemetry` installs (or `tracer_provider`): one server
    span and `http.server.request.duration` per request. Its per-step spans
    (dependencies, endpoint, serialisation) stay off to keep a read cheap, and
    its OTel log records too: RTM logs through the root logger.
    """
    telemetry: TelemetryConfig = {"operation_spans": False, "logs": False}
    if tracer_provider is not None:
        telemetry["tracer_provider"] = tracer_provider
    app = RtmApi(
        title="RTM internal API",
        summary="Galaxy Runtime Manager: start, stop, restart, patch, clean up and read "
        "game engine runtimes",
        version=version("rtm-api"),
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        telemetry=telemetry,
    )
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware)
    app.include_router(probes_router(lambda: bound(app).ready()))
    app.include_router(runtimes_router())
    app.include_router(observe_router())
    return app
