"""`rtm-api`: boot (SPEC §2), then serve the internal REST on `RTMANAGER_INTERNAL_HTTP_ADDR`."""

from __future__ import annotations

import asyncio

from rtm_api.app import create_app
from rtm_core.runtime.bootstrap import boot
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings

PROCESS = "rtm-api"


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    core = await boot(settings, PROCESS)
    await run_service(core, stop, app=create_app(core), addr=settings.internal_http_addr)


def main() -> None:
    run_process(PROCESS, _main)
