"""`rtm-jobs`: the Lobby door. Consumes `runtime:start_jobs` and
`runtime:stop_jobs` through a consumer group shared by every replica (no
leader: all replicas are active) and answers each job on `runtime:job_results`."""

from __future__ import annotations

import asyncio

from rtm_core.runtime.bootstrap import CoreAdapters, boot
from rtm_core.runtime.ops_http import ops_app
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings
from rtm_jobs.bootstrap import bootstrap
from rtm_jobs.consumer import consumers

PROCESS = "rtm-jobs"


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    infra = await boot(settings, PROCESS)
    deps = bootstrap(infra, CoreAdapters.over(infra))
    await run_service(
        infra,
        stop,
        app=ops_app(infra),
        addr=settings.ops_http_addr,
        workers=[consumer.run for consumer in consumers(deps)],
    )


def main() -> None:
    run_process(PROCESS, _main)
