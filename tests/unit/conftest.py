"""Unit-tier fixtures: the real lifecycle over fresh in-memory fakes per test.

Nothing here connects anywhere; no fixture of `tests/conftest.py` that
reaches PostgreSQL, Redis or Docker is requested by this tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rtm_core.lifecycle import Lifecycle
from unit.fakes import Fakes, MakeUnit, make_lifecycle


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
