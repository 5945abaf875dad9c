"""The REST edge of RTM's error tree: one table from errors to responses.

Every error leaves as `{"error":{"code":"…","message":"…"}}`:

- an `RtmError` (what the lifecycle raises) with its own `http_status` and `code`;
- FastAPI's request validation (malformed JSON, missing field, wrong type,
  bad query value) as 400 `invalid_request`;
- Starlette's own errors (unknown route, wrong method) by status, below;
- anything else as the one `InternalError` (500 `internal_error`), logged
  (see `middleware`).

`error_responses` declares the same shapes per route in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rtm_api.schemas import ErrorEnvelope
from rtm_core.domain.errors import (
    InternalError,
    InvalidRequest,
    NotFound,
    RtmError,
    ServiceUnavailable,
    Unauthorized,
)
from rtm_core.runtime.ops_http import error_body

#: Codes for errors Starlette raises before any RTM code runs.
FRAMEWORK_CODES: Mapping[int, str] = {
    400: InvalidRequest.code,
    401: Unauthorized.code,
    404: NotFound.code,
    405: "method_not_allowed",
}

#: Extra headers a status carries (RFC 6750 §3 for 401).
STATUS_HEADERS: Mapping[int, Mapping[str, str]] = {401: {"WWW-Authenticate": "Bearer"}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    merged = {**STATUS_HEADERS.get(status, {}), **(headers or {})}
    return JSONResponse(error_body(code, message), status_code=status, headers=merged)


def rtm_error_response(exc: RtmError) -> JSONResponse:
    return error_response(exc.http_status, exc.code, exc.message)


def validation_message(exc: RequestValidationError) -> str:
    """`body.image_ref: Field required`; `request body is not valid JSON: …`."""
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return f"request body is not valid JSON: {detail}".rstrip(": ")
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


async def _on_rtm_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RtmError)
    return rtm_error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(InvalidRequest.http_status, InvalidRequest.code, validation_message(exc))


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = FRAMEWORK_CODES.get(exc.status_code, InternalError.code)
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RtmError, _on_rtm_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)


def error_responses(*errors: type[RtmError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these errors, grouped by status, plus 400/401/500/503.

    Every route can answer 400 (its input's shape), 401 (the token), 500 and
    503 (PostgreSQL or Redis unreachable: the adapters raise `ServiceUnavailable`).
    """
    by_status: dict[int, list[str]] = {}
    for error in _with_defaults(errors):
        codes = by_status.setdefault(error.http_status, [])
        if error.code not in codes:
            codes.append(error.code)
    return {
        status: {"model": ErrorEnvelope, "description": "`" + "` | `".join(codes) + "`"}
        for status, codes in sorted(by_status.items())
    }


def _with_defaults(errors: Iterable[type[RtmError]]) -> list[type[RtmError]]:
    return [InvalidRequest, Unauthorized, *errors, InternalError, ServiceUnavailable]
