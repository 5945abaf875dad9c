"""Production connections: the libpq DSN parameters the PostgreSQL adapter
honours, and a Redis URL (ACL user, db) beside the SPEC's host:port."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable

import pytest
from redis.exceptions import AuthenticationError

from rtm_core.adapters.postgres import database as db
from rtm_core.adapters.redis.client import redis_client
from rtm_core.settings import Settings, SettingsError, load_settings


def test_dsn_parameters_are_honoured() -> None:
    url, args = db.asyncpg_url(
        "postgres://u:p@h:5432/galaxy?search_path=rtmanager&sslmode=require"
        "&connect_timeout=7&application_name=rtm-jobs"
    )
    assert url == "postgresql+asyncpg://u:p@h:5432/galaxy"
    assert args["server_settings"] == {"application_name": "rtm-jobs", "search_path": "rtmanager"}
    assert args["timeout"] == 7.0
    assert args["ssl"] == "require"


def test_verify_full_checks_the_server_certificate_and_host() -> None:
    ca = ssl.get_default_verify_paths().openssl_cafile
    _, args = db.asyncpg_url(f"postgres://u:p@h/db?sslmode=verify-full&sslrootcert={ca}")
    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_unknown_dsn_parameter_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="target_session_attrs"):
        db.asyncpg_url("postgres://u:p@h/db?target_session_attrs=read-write")
    with pytest.raises(ValueError, match="sslmode"):
        db.asyncpg_url("postgres://u:p@h/db?sslmode=sometimes")


def test_one_redis_target_is_required() -> None:
    with pytest.raises(SettingsError, match="RTMANAGER_REDIS_MASTER_ADDR is required"):
        load_settings(postgres_primary_dsn="postgres://u:p@h/db", redis_master_addr=None)
    with pytest.raises(SettingsError, match="RTMANAGER_REDIS_URL must start with"):
        load_settings(postgres_primary_dsn="postgres://u:p@h/db", redis_url="http://h:6379")


async def test_a_redis_url_with_an_acl_user_and_db(
    make_settings: Callable[..., Settings], redis_addr: str
) -> None:
    user, password = f"rtm-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = redis_client(make_settings())
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    try:
        client = redis_client(make_settings(redis_url=f"redis://{user}:{password}@{redis_addr}/3"))
        assert await client.ping()
        await client.set("rtm-url-probe", "1", ex=5)
        info = await client.client_info()
        assert info["user"] == user and int(info["db"]) == 3
        await client.aclose()
        wrong = redis_client(make_settings(redis_url=f"redis://{user}:nope@{redis_addr}/3"))
        with pytest.raises(AuthenticationError):
            await wrong.ping()
        await wrong.aclose()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
