"""Helpers of the reconciler suite: engines started through the core, drift made
behind RTM's back, containers made by hand as an operator would."""

from __future__ import annotations

from typing import Any

import aiodocker
from rig import Rig

from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import OpSource
from rtm_reconciler.bootstrap import ReconcilerDeps, bootstrap

ENGINE_V100 = "galaxy/test-engine:1.0.0"


def labelled_config(image: str, labels: dict[str, str]) -> dict[str, Any]:
    """A container as an operator's `docker run --label … <image>` makes it."""
    return {"Image": image, "Labels": labels, "HostConfig": {"Init": True}}


def deps_of(rig: Rig) -> ReconcilerDeps:
    """What `main` hands the passes, built over the test's rig."""
    return bootstrap(rig.infra, rig.adapters)


async def start_engine(core: Rig, game_id: str) -> RuntimeRecord:
    """A running engine, started the way GM would."""
    result = await core.lifecycle.start(game_id, ENGINE_V100, OpSource.GM_REST)
    assert result.record is not None and result.record.current_container_id
    return result.record


async def vanish(docker: aiodocker.Docker, container_id: str) -> None:
    """`docker rm -f`: what a daemon restart or an operator does behind RTM's back."""
    await (await docker.containers.get(container_id)).delete(force=True)
