"""Helpers of the rtm-api suite."""

from __future__ import annotations

from rig import Rig

from rtm_api.bootstrap import ApiDeps, bootstrap


def api_deps(rig: Rig) -> ApiDeps:
    """What the `rtm-api` process would serve with, over the rig's infrastructure."""
    return bootstrap(rig.infra, rig.adapters)
