"""How every RTM process runs once booted: listener, then (leader-gated) loops.

Shutdown order on `stop`: loops stop reading and finish their current item,
the leader lease is released, the HTTP listener drains, connections close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from typing import Any

from fastapi import FastAPI

from rtm_core.adapters.postgres.repositories import Repositories
from rtm_core.domain.vocabulary import RuntimeStatus
from rtm_core.runtime.bootstrap import Infrastructure
from rtm_core.runtime.leader import LeaderElector
from rtm_core.runtime.loops import sleep_until
from rtm_core.runtime.ops_http import serve

log = logging.getLogger(__name__)

Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
BeforeWorkers = Callable[[], Awaitable[None]]

#: How often each process refreshes `rtmanager.runtime_records_by_status`.
RECORDS_GAUGE_INTERVAL = 10.0


async def run_workers(stop: asyncio.Event, workers: Sequence[Worker]) -> None:
    """Run loops until `stop`. A loop that crashes stops its siblings and re-raises,
    so the process exits non-zero and its orchestrator restarts it."""
    tasks = [asyncio.create_task(worker(stop)) for worker in workers]
    if not tasks:
        await stop.wait()
        return
    failed: BaseException | None = None
    for next_done in asyncio.as_completed(tasks):
        try:
            await next_done
        except Exception as exc:
            failed = failed or exc
            stop.set()
    if failed is not None:
        raise failed


async def refresh_records_gauge(infra: Infrastructure, stop: asyncio.Event) -> None:
    records = Repositories(infra.postgres, read_dsn=infra.settings.postgres_primary_dsn)
    while True:
        try:
            counts = await records.count_by_status()
            for status in RuntimeStatus:
                infra.metrics.records_by_status.set(
                    float(counts.get(status.value, 0)), status=status.value
                )
        except Exception:
            log.warning("could not refresh runtime_records_by_status", exc_info=True)
        if await sleep_until(stop, RECORDS_GAUGE_INTERVAL):
            return


async def run_service(
    infra: Infrastructure,
    stop: asyncio.Event,
    *,
    app: FastAPI,
    addr: str,
    workers: Sequence[Worker] = (),
    leader_role: str | None = None,
    before_workers: BeforeWorkers | None = None,
) -> None:
    """Open the listener, then run `before_workers` and `workers` — behind the
    leader lease of `leader_role` when one is given — until `stop`."""
    listener_stop = asyncio.Event()
    listening = asyncio.Event()
    listener = asyncio.create_task(
        serve(
            app,
            addr,
            listener_stop,
            drain_seconds=infra.settings.shutdown_timeout,
            listening=listening,
        )
    )
    gauge = asyncio.create_task(refresh_records_gauge(infra, stop))
    try:
        await asyncio.wait(
            {listener, asyncio.create_task(listening.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if listener.done():
            await listener  # a bind failure: surface it
            raise RuntimeError(f"http listener on {addr} stopped during startup")

        async def lead(stop_leading: asyncio.Event) -> None:
            if before_workers is not None:
                await before_workers()
            await run_workers(stop_leading, workers)

        if leader_role is None:
            await lead(stop)
        else:
            elector = LeaderElector(
                infra.redis,
                role=leader_role,
                stack=infra.settings.stack,
                ttl_seconds=infra.settings.leader_lease_ttl_seconds,
                metrics=infra.metrics,
            )
            await elector.run(stop, lead)
    finally:
        listener_stop.set()
        gauge.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await listener
        with suppress(asyncio.CancelledError):
            await gauge
        await infra.aclose()
