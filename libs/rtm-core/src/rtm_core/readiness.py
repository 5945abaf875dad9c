"""`/readyz`: fresh pings of every dependency, then loop liveness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rtm_core import db
from rtm_core.bootstrap import Core

#: One slow dependency must not hang a kubelet probe.
CHECK_TIMEOUT_SECONDS = 2.0


async def first_failure(core: Core) -> str | None:
    """None when ready, else a message naming the first failing dependency."""
    checks: tuple[tuple[str, Callable[[], Awaitable[Any]]], ...] = (
        ("postgres", lambda: db.ping(core.engine)),
        ("redis", lambda: core.redis.ping()),
        ("docker", core.docker.ping),
        ("docker network", core.docker.network_exists),
    )
    for name, check in checks:
        try:
            ok = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            return f"{name} unavailable: {exc or type(exc).__name__}"
        if ok is False:
            return f"docker network {core.settings.docker_network} not found"
    if stale := core.loops.stale():
        return f"loop {stale[0]} has not completed an iteration in time"
    return None
