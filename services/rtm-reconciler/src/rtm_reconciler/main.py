"""`rtm-reconciler`: boot pass, periodic reconcile and retention cleanup.

Behind the leader lease of role `reconciler`: the replica that wins it runs
the reconcile pass once, synchronously, then starts its two loops; a standby
that takes over does the same. With RTMANAGER_AUTO_RESTART=on (issue 12) a
third loop, `auto_restart`, runs beside them, and its catch-up sweep runs
just before the boot pass. Ops HTTP (`/healthz`, `/readyz`) on
`RTMANAGER_OPS_HTTP_ADDR` on every replica.
"""

from __future__ import annotations

import asyncio

from rtm_core.runtime.bootstrap import CoreAdapters, boot
from rtm_core.runtime.ops_http import ops_app
from rtm_core.runtime.process import run_process
from rtm_core.runtime.runner import run_service
from rtm_core.settings import Settings
from rtm_reconciler.auto_restart import AutoRestart
from rtm_reconciler.bootstrap import bootstrap
from rtm_reconciler.cleanup import RetentionCleanup
from rtm_reconciler.reconciler import Reconciler

PROCESS = "rtm-reconciler"
LEADER_ROLE = "reconciler"


async def _main(settings: Settings, stop: asyncio.Event) -> None:
    infra = await boot(settings, PROCESS)
    deps = bootstrap(infra, CoreAdapters.over(infra))
    reconciler = Reconciler(deps, stop)
    cleanup = RetentionCleanup(deps, stop)
    workers = [reconciler.run, cleanup.run]
    before_workers = reconciler.boot_pass
    if deps.feed is not None:
        auto_restart = AutoRestart(deps, deps.feed)
        workers.append(auto_restart.run)

        async def before() -> None:
            await auto_restart.catch_up()
            await reconciler.boot_pass()

        before_workers = before
    await run_service(
        infra,
        stop,
        app=ops_app(infra),
        addr=settings.ops_http_addr,
        workers=workers,
        leader_role=LEADER_ROLE,
        before_workers=before_workers,
    )


def main() -> None:
    run_process(PROCESS, _main)


if __name__ == "__main__":
    main()
