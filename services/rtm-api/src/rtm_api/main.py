"""`rtm-api`: boot (SPEC §2), then serve the internal REST on `RTMANAGER_INTERNAL_HTTP_ADDR`."""

from __future__ import annotations

import asyncio

from rtm_api.app import create_app
from rtm_api.bootstrap import bootstrap
from rtm_core.runtime.bootstrap import CoreAdapters, boot
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings

PROCESS = "rtm-api"


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    infra = await boot(settings, PROCESS)
    deps = bootstrap(infra, CoreAdapters.over(infra))

    async def end_follows() -> None:
        """Follow streams end when shutdown begins, so they never hold up the drain."""
        await stop.wait()
        deps.followers.close()

    closer = asyncio.create_task(end_follows())
    try:
        await run_service(infra, stop, app=create_app(deps), addr=settings.internal_http_addr)
    finally:
        closer.cancel()


def main() -> None:
    run_process(PROCESS, _main)
