"""The HTTP surface every process has: `/healthz`, `/readyz`, and a uvicorn
runner that drains in-flight requests on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from rtm_core.domain.errors import ServiceUnavailable
from rtm_core.runtime.bootstrap import Infrastructure
from rtm_core.runtime.readiness import first_failure
from rtm_core.settings import split_host_port

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process supervisor owns SIGTERM/SIGINT and sets `stop`.
        yield


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


#: What `/readyz` asks: None when ready, else a message naming what is not.
Readiness = Callable[[], Awaitable[str | None]]


def health_router(infra: Infrastructure) -> APIRouter:
    return probes_router(lambda: first_failure(infra))


def probes_router(ready: Readiness) -> APIRouter:
    """`/healthz` and `/readyz` over any readiness check, so an app can declare
    them before it is bound to a process's infrastructure (rtm-api)."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=True, tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["health"],
        responses={503: {"description": "A dependency or loop is not ready"}},
    )
    async def readyz() -> JSONResponse:
        failure = await ready()
        if failure is not None:
            return JSONResponse(error_body(ServiceUnavailable.code, failure), status_code=503)
        return JSONResponse({"status": "ready"})

    return router


def ops_app(infra: Infrastructure) -> FastAPI:
    app = FastAPI(title=f"{infra.process} ops", docs_url=None, redoc_url=None)
    app.include_router(health_router(infra))
    return app


async def serve(
    app: FastAPI,
    addr: str,
    stop: asyncio.Event,
    *,
    drain_seconds: float,
    listening: asyncio.Event | None = None,
) -> None:
    """Serve until `stop`, then stop accepting and drain for up to `drain_seconds`.

    `listening` is set once the socket accepts connections.
    """
    host, port = split_host_port(addr)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(drain_seconds),
        lifespan="off",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # surfaces the bind error
            raise RuntimeError(f"http listener on {addr} exited during startup")
        await asyncio.sleep(0.01)
    log.info("internal http listening", extra={"addr": addr})
    if listening is not None:
        listening.set()
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await task
