"""`rtm-jobs`: the Lobby door. Consumes `runtime:start_jobs` and
`runtime:stop_jobs` through a consumer group shared by every replica (no
leader: all replicas are active) and answers each job on `runtime:job_results`."""

from __future__ import annotations

import asyncio

from rtm_core.runtime.bootstrap import boot
from rtm_core.runtime.ops_http import ops_app
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings
from rtm_jobs.consumer import consumers


def main() -> None:
    run_process("rtm-jobs", _main)


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    core = await boot(settings, "rtm-jobs")
    await run_service(
        core,
        stop,
        app=ops_app(core),
        addr=settings.ops_http_addr,
        workers=[consumer.run for consumer in consumers(core)],
    )
