"""A Redis outage as RTM's `service_unavailable` (SPEC §6: 503).

Refused, reset or timed-out connections, and a server still loading its
data, are redis-py's `ConnectionError` and `TimeoutError`: an outage, not a
bug, so the Redis adapters raise `ServiceUnavailable("redis unavailable: …")`
for them; REST answers 503 and stream jobs retry. Anything Redis itself
answers (a script error, WRONGTYPE) passes unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rtm_core.domain.errors import ServiceUnavailable

P = ParamSpec("P")
R = TypeVar("R")

#: What redis-py raises when there is no Redis to talk to.
OUTAGES = (RedisConnectionError, RedisTimeoutError)


def redis_unavailable(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except OUTAGES as exc:
            reason = str(exc) or type(exc).__name__
            raise ServiceUnavailable(f"redis unavailable: {reason}") from exc

    return wrapper
