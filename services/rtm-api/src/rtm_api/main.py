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
    await run_service(infra, stop, app=create_app(deps), addr=settings.internal_http_addr)


def main() -> None:
    run_process(PROCESS, _main)
