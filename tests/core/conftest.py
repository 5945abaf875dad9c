"""Settings tests' environments: none of the shell's RTMANAGER_* leaks in."""

from __future__ import annotations

import os

import pytest

#: The two settings without a default (SPEC §3).
REQUIRED = {
    "RTMANAGER_POSTGRES_PRIMARY_DSN": "postgres://u@h:5432/db?search_path=rtmanager",
    "RTMANAGER_REDIS_MASTER_ADDR": "127.0.0.1:6379",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RTMANAGER_* variable at all."""
    for key in list(os.environ):
        if key.startswith("RTMANAGER_"):
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Only the required settings: everything else at its default."""
    for key, value in REQUIRED.items():
        clean_env.setenv(key, value)
    return clean_env
