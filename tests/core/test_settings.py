"""Settings parsing: the reference .env values, defaults, and errors that name the variable."""

from pathlib import Path

import pytest

from rtm_core.settings import (
    PullPolicy,
    SettingsError,
    load_settings,
    parse_duration,
    parse_size,
    split_host_port,
)

REFERENCE_ENV = {
    "RTMANAGER_INTERNAL_HTTP_ADDR": ":8096",
    "RTMANAGER_POSTGRES_PRIMARY_DSN": "postgres://u:p@127.0.0.1:5432/galaxy?search_path=rtmanager&sslmode=disable",
    "RTMANAGER_REDIS_MASTER_ADDR": "127.0.0.1:6379",
    "RTMANAGER_REDIS_PASSWORD": "local",
    "RTMANAGER_DOCKER_HOST": "unix:///var/run/docker.sock",
    "RTMANAGER_DOCKER_NETWORK": "galaxy-net",
    "RTMANAGER_GAME_STATE_ROOT": "/var/lib/galaxy/games",
    "RTMANAGER_LOBBY_INTERNAL_BASE_URL": "http://127.0.0.1:8095",
    "RTMANAGER_LOBBY_INTERNAL_TIMEOUT": "2s",
    "RTMANAGER_DEFAULT_CPU_QUOTA": "1.0",
    "RTMANAGER_DEFAULT_MEMORY": "512m",
    "RTMANAGER_DEFAULT_PIDS_LIMIT": "512",
    "RTMANAGER_CONTAINER_STOP_TIMEOUT_SECONDS": "30",
    "RTMANAGER_CONTAINER_RETENTION_DAYS": "30",
    "RTMANAGER_ENGINE_STATE_MOUNT_PATH": "/var/lib/galaxy-game",
    "RTMANAGER_ENGINE_STATE_ENV_NAME": "GAME_STATE_PATH",
    "RTMANAGER_GAME_STATE_DIR_MODE": "0750",
    "RTMANAGER_GAME_STATE_OWNER_UID": "0",
    "RTMANAGER_GAME_STATE_OWNER_GID": "0",
    "RTMANAGER_INSPECT_INTERVAL": "30s",
    "RTMANAGER_PROBE_INTERVAL": "15s",
    "RTMANAGER_PROBE_TIMEOUT": "2s",
    "RTMANAGER_PROBE_FAILURES_THRESHOLD": "3",
    "RTMANAGER_RECONCILE_INTERVAL": "5m",
    "RTMANAGER_CLEANUP_INTERVAL": "1h",
    "RTMANAGER_GAME_LEASE_TTL_SECONDS": "60",
    "RTMANAGER_LOG_LEVEL": "info",
    "RTMANAGER_SHUTDOWN_TIMEOUT": "30s",
}


def test_reference_env_parses(clean_env: pytest.MonkeyPatch) -> None:
    for key, value in REFERENCE_ENV.items():
        clean_env.setenv(key, value)
    s = load_settings()
    assert s.default_memory == 512 * 1024**2
    assert s.game_state_dir_mode == 0o750
    assert s.reconcile_interval == 300 and s.cleanup_interval == 3600
    assert s.lobby_internal_timeout == 2 and s.shutdown_timeout == 30
    assert s.game_state_root == Path("/var/lib/galaxy/games")
    assert s.redis_password is not None and s.redis_password.get_secret_value() == "local"


def test_defaults_match_the_reference(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RTMANAGER_POSTGRES_PRIMARY_DSN", "postgres://x@h/db")
    clean_env.setenv("RTMANAGER_REDIS_MASTER_ADDR", "h:6379")
    s = load_settings()
    assert (s.internal_http_addr, s.docker_network, s.docker_host) == (
        ":8096",
        "galaxy-net",
        "unix:///var/run/docker.sock",
    )
    assert s.image_pull_policy is PullPolicy.IF_NOT_PRESENT
    assert s.stack == "default" and s.image_allowed_prefixes == ()
    assert (s.probe_interval, s.probe_timeout, s.probe_failures_threshold) == (15, 2, 3)
    assert s.redis_start_jobs_stream == "runtime:start_jobs"
    assert s.notification_intents_stream == "notification:intents"
    assert s.internal_api_token is None


def test_missing_required_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RTMANAGER_REDIS_MASTER_ADDR", "h:6379")
    with pytest.raises(SettingsError, match="RTMANAGER_POSTGRES_PRIMARY_DSN is required"):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("RTMANAGER_PROBE_INTERVAL", "soon"),
        ("RTMANAGER_DEFAULT_MEMORY", "lots"),
        ("RTMANAGER_IMAGE_PULL_POLICY", "sometimes"),
        ("RTMANAGER_GAME_LEASE_TTL_SECONDS", "0"),
        ("RTMANAGER_STACK", "bad stack"),
        ("RTMANAGER_INTERNAL_API_TOKEN", "changeme"),
    ],
)
def test_unparsable_value_names_the_variable(
    clean_env: pytest.MonkeyPatch, var: str, value: str
) -> None:
    clean_env.setenv("RTMANAGER_POSTGRES_PRIMARY_DSN", "postgres://x@h/db")
    clean_env.setenv("RTMANAGER_REDIS_MASTER_ADDR", "h:6379")
    clean_env.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings()


def test_lists_and_log_opts(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RTMANAGER_POSTGRES_PRIMARY_DSN", "postgres://x@h/db")
    clean_env.setenv("RTMANAGER_REDIS_MASTER_ADDR", "h:6379")
    clean_env.setenv("RTMANAGER_IMAGE_ALLOWED_PREFIXES", "galaxy/, registry.local/ ,")
    clean_env.setenv("RTMANAGER_DOCKER_LOG_OPTS", "max-size=10m,max-file=3")
    s = load_settings()
    assert s.image_allowed_prefixes == ("galaxy/", "registry.local/")
    assert s.docker_log_opts_dict == {"max-size": "10m", "max-file": "3"}


def test_units() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    assert parse_duration(7) == 7
    assert parse_size("1g") == 1024**3
    assert parse_size("64m") == 64 * 1024**2
    assert split_host_port(":8096") == ("0.0.0.0", 8096)
    assert split_host_port("127.0.0.1:8097") == ("127.0.0.1", 8097)
    for bad in ("", "5x", "-1s", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_engine_usage_is_off_by_default_and_per_game_when_on(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for key, value in REFERENCE_ENV.items():
        clean_env.setenv(key, value)
    s = load_settings()
    assert not s.engine_usage and s.engine_usage_per_game_label and s.engine_usage_concurrency == 16
    clean_env.setenv("RTMANAGER_ENGINE_USAGE", "on")
    clean_env.setenv("RTMANAGER_ENGINE_USAGE_PER_GAME_LABEL", "off")
    clean_env.setenv("RTMANAGER_ENGINE_USAGE_CONCURRENCY", "4")
    s = load_settings()
    assert s.engine_usage and not s.engine_usage_per_game_label
    assert s.engine_usage_concurrency == 4
    clean_env.setenv("RTMANAGER_ENGINE_USAGE", "sometimes")
    with pytest.raises(SettingsError, match="RTMANAGER_ENGINE_USAGE"):
        load_settings()
