"""tests/integration: the compose stack driven from outside (see README.md).

Collected only on purpose: the default `pytest` run ignores this directory
(`--ignore=tests/integration` in the root pyproject's addopts), and naming it
explicitly without `RTM_INTEGRATION=1` is a usage error, never a silent skip.
`make integration` brings the stack up and sets the variable.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiodocker
import pytest
from integration.compose import ComposeStack, open_stack

if os.environ.get("RTM_INTEGRATION") != "1":
    raise pytest.UsageError(
        "tests/integration drives a running compose stack (Docker, Redis and REST of "
        "`make up`); run it with `make integration`, which brings the stack up and sets "
        "RTM_INTEGRATION=1 (or set RTM_INTEGRATION=1 yourself against a stack you started)"
    )


@pytest.fixture(scope="session")
async def compose(engine_images: str) -> AsyncIterator[ComposeStack]:
    """The running stack; this run's games are stopped and cleaned up afterwards."""
    docker = aiodocker.Docker()
    stack = await open_stack(docker)
    try:
        yield stack
    finally:
        try:
            await stack.remove_games()
        finally:
            await stack.api.aclose()
            await stack.redis.aclose()
            await docker.close()
