"""The Redis client every adapter shares.

`RTMANAGER_REDIS_URL` (`redis://`, `rediss://` for TLS, `user:password@`,
`/db`, and redis-py's query options such as `ssl_ca_certs`) wins when set;
otherwise the SPEC's `RTMANAGER_REDIS_MASTER_ADDR` + `_PASSWORD` + `_DB`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from rtm_core.settings import Settings

#: Dead connections are found before a command fails on them.
HEALTH_CHECK_INTERVAL_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5


def redis_client(settings: Settings, *, decode_responses: bool = True) -> Redis:
    """A client of the configured Redis. `decode_responses=False` returns bytes, for
    readers of entries written by others that must survive any byte sequence."""
    if settings.redis_url is not None:
        return Redis.from_url(
            settings.redis_url.get_secret_value(),
            decode_responses=decode_responses,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    assert settings.redis_master_addr is not None  # Settings requires one of the two
    host, _, port = settings.redis_master_addr.rpartition(":")
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return Redis(
        host=host or "127.0.0.1",
        port=int(port),
        password=password,
        db=settings.redis_db,
        decode_responses=decode_responses,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )
