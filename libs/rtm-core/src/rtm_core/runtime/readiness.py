"""`/readyz`: fresh pings of every dependency, then loop liveness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rtm_core.adapters.postgres import database as db
from rtm_core.runtime.bootstrap import Infrastructure
from rtm_core.settings import EngineBackend

#: One slow dependency must not hang a kubelet probe.
CHECK_TIMEOUT_SECONDS = 2.0


async def first_failure(infra: Infrastructure) -> str | None:
    """None when ready, else a message naming the first failing dependency."""
    checks: tuple[tuple[str, Callable[[], Awaitable[Any]]], ...] = (
        ("postgres", lambda: db.ping(infra.postgres)),
        ("redis", lambda: infra.redis.ping()),
        ("docker", infra.docker.ping),
        ("docker network", infra.docker.network_exists),
    )
    for name, check in checks:
        try:
            ok = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:
            return f"{name} unavailable: {exc or type(exc).__name__}"
        if ok is False:
            return f"docker network {infra.settings.docker_network} not found{_network_kind(infra)}"
    if stale := infra.loops.stale():
        return f"loop {stale[0]} has not completed an iteration in time"
    return None


def _network_kind(infra: Infrastructure) -> str:
    if infra.settings.engine_backend is EngineBackend.SWARM:
        return " or not an attachable overlay network"
    return ""
