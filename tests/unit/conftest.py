"""Unit-tier fixtures: the real lifecycle over fresh in-memory fakes per test.

Nothing here connects anywhere; no fixture of `tests/conftest.py` that
reaches PostgreSQL, Redis or Docker is requested by this tier, and
`no_connections` makes any attempt to open a socket fail the test.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, NoReturn

import pytest

from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes, MakeUnit, make_lifecycle


@pytest.fixture(autouse=True)
def no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tier's promise, enforced: no test here reaches Docker, PostgreSQL or Redis."""

    def refuse(_sock: socket.socket, address: object) -> NoReturn:
        raise AssertionError(f"the unit tier opens no connections (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def make_unit(tmp_path: Path) -> MakeUnit:
    """`make_unit(**settings_overrides)` → a lifecycle and its fakes."""
    root = tmp_path / "games"
    root.mkdir()

    def make(**overrides: Any) -> tuple[Lifecycle, Fakes]:
        return make_lifecycle(root, **overrides)

    return make


@pytest.fixture
def unit(make_unit: MakeUnit) -> tuple[Lifecycle, Fakes]:
    return make_unit()


@pytest.fixture
def lifecycle(unit: tuple[Lifecycle, Fakes]) -> Lifecycle:
    return unit[0]


@pytest.fixture
def fakes(unit: tuple[Lifecycle, Fakes]) -> Fakes:
    return unit[1]
