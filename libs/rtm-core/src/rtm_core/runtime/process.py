"""Process entry: settings, logging, signals, shutdown budget, exit codes.

Exit codes: 0 clean stop, 1 boot or runtime failure, 2 bad configuration.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

import uvloop

from rtm_core.runtime.bootstrap import BootError
from rtm_core.runtime.logs import setup_logging
from rtm_core.settings import Settings, SettingsError, load_settings

log = logging.getLogger("rtm_core.process")

Main = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


def run_process(process: str, main: Main) -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        setup_logging(process)
        log.error("invalid configuration", extra={"error": str(exc)})
        sys.exit(2)
    setup_logging(process, settings.log_level)
    try:
        # uvloop: the event loop RTM is measured on (SPEC §10), as uvicorn would pick.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(_supervise(main, settings))
    except BootError as exc:
        log.error("boot failed", extra={"error": str(exc)})
        sys.exit(1)
    except Exception:
        log.exception("process failed")
        sys.exit(1)
    sys.exit(code)


async def _supervise(main: Main, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(main(settings, stop))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopping.cancel()
        task.result()  # a main that returns by itself: re-raise its failure
        return 0
    log.info("shutdown requested", extra={"budget_s": settings.shutdown_timeout})
    try:
        await asyncio.wait_for(asyncio.shield(task), settings.shutdown_timeout)
    except TimeoutError:
        log.error("shutdown exceeded budget; cancelling")
        task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await task
        return 1
    log.info("shutdown complete")
    return 0
