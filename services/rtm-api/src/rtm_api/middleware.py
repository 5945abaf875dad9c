"""One server span per request, `X-Request-Id` echo, and the last-resort 500.

A plain ASGI middleware (no `BaseHTTPMiddleware`, whose task hop costs a
read more than the read itself). It sits outside FastAPI's exception
handlers, so anything they do not map reaches it: it is logged with its
traceback and answered as 500 `internal_error` in the usual envelope. The
lifecycle's own span (`rtm.start`, …) becomes this span's child.
"""

from __future__ import annotations

import logging

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtm_api.errors import error_response
from rtm_core.lifecycle.operation import InternalError

log = logging.getLogger("rtm_api.http")

REQUEST_ID_HEADER = "x-request-id"
#: An echoed id is the caller's to choose, within reason.
REQUEST_ID_MAX_LENGTH = 200


def _route_template(scope: Scope) -> str | None:
    route = scope.get("route")
    path = getattr(route, "path_format", None) if isinstance(route, BaseRoute) else None
    return path if isinstance(path, str) else None


class RequestMiddleware:
    def __init__(self, app: ASGIApp, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.app = app
        self.tracer = trace.get_tracer("rtmanager.http", tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = (headers.get(REQUEST_ID_HEADER) or "")[:REQUEST_ID_MAX_LENGTH]
        method = scope["method"]
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if request_id:
                    message["headers"] = [
                        *message.get("headers", ()),
                        (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1", "replace")),
                    ]
            await send(message)

        attributes: dict[str, str] = {"http.request.method": method, "url.path": scope["path"]}
        if request_id:
            attributes["http.request.header.x-request-id"] = request_id
        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                span.record_exception(exc)
                log.exception(
                    "request failed",
                    extra={"method": method, "path": scope["path"], "request_id": request_id},
                )
                if started:
                    raise
                await error_response(
                    InternalError.http_status,
                    InternalError.code,
                    f"unexpected error; see the rtm-api log (request id {request_id or '-'})",
                )(scope, receive, send_with_id)
            finally:
                route = _route_template(scope)
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
