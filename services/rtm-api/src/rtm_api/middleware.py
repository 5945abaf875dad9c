"""`X-Request-Id` echo and the last-resort 500.

The request's server span is FastAPI's own (`FastAPI(telemetry=…)`, see
`app`): it extracts `traceparent`, is named `METHOD /route/{template}`,
carries `http.route` and the status code, and is current while the handler
runs, so the lifecycle's span (`rtm.start`, …) is its child. This plain ASGI
middleware (no `BaseHTTPMiddleware` task hop) only adds the request id to
that span and to the response, and turns anything FastAPI's exception
handlers did not map into a logged 500 `internal_error` in the usual envelope.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtm_api.errors import error_response
from rtm_core.domain.errors import InternalError

log = logging.getLogger("rtm_api.http")

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_ATTRIBUTE = "http.request.header.x-request-id"
#: An echoed id is the caller's to choose, within reason.
REQUEST_ID_MAX_LENGTH = 200


class RequestMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (Headers(scope=scope).get(REQUEST_ID_HEADER) or "")[:REQUEST_ID_MAX_LENGTH]
        span = trace.get_current_span()
        if request_id:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if request_id:
                    message["headers"] = [
                        *message.get("headers", ()),
                        (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1", "replace")),
                    ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            span.record_exception(exc)
            log.exception(
                "request failed",
                extra={"method": scope["method"], "path": scope["path"], "request_id": request_id},
            )
            if started:
                raise
            await error_response(
                InternalError.http_status,
                InternalError.code,
                f"unexpected error; see the rtm-api log (request id {request_id or '-'})",
            )(scope, receive, send_with_id)
