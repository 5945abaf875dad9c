"""`rtm-watcher`: the events listener, inspect worker and probe worker (and, with
RTMANAGER_ENGINE_USAGE=on, the usage sampler) behind the leader lease of role
`watcher`, with `/healthz` and `/readyz` on the ops port."""

from __future__ import annotations

import asyncio

from rtm_core.runtime.bootstrap import CoreAdapters, boot
from rtm_core.runtime.ops_http import ops_app
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings
from rtm_watcher.bootstrap import bootstrap
from rtm_watcher.events_listener import EventsListener
from rtm_watcher.inspect_worker import InspectWorker
from rtm_watcher.probe_worker import ProbeWorker
from rtm_watcher.usage_sampler import UsageSampler

PROCESS = "rtm-watcher"
LEADER_ROLE = "watcher"


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    infra = await boot(settings, PROCESS)
    deps = bootstrap(infra, CoreAdapters.over(infra))
    loops: list[EventsListener | InspectWorker | ProbeWorker | UsageSampler] = [
        EventsListener(deps),
        InspectWorker(deps),
        ProbeWorker(deps),
    ]
    if settings.engine_usage:
        loops.append(UsageSampler(deps))
    await run_service(
        infra,
        stop,
        app=ops_app(infra),
        addr=settings.ops_http_addr,
        workers=[loop.run for loop in loops],
        leader_role=LEADER_ROLE,
    )


def main() -> None:
    run_process(PROCESS, _main)
