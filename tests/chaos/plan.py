"""What the drill does: its options, the faults in order, each game's script."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: Injected in this order, one at a time, while the load flows.
FAULTS: dict[str, str] = {
    "kill-api": "SIGKILL rtm-api",
    "kill-watcher": "SIGKILL rtm-watcher",
    "kill-reconciler": "SIGKILL rtm-reconciler",
    "kill-jobs-one": "SIGKILL one rtm-jobs replica",
    "kill-jobs-all": "SIGKILL every rtm-jobs replica at once",
    "restart-redis": "restart Redis (docker restart)",
    "restart-postgres": "restart PostgreSQL (docker restart)",
    "pause-jobs": "docker pause every rtm-jobs replica past the claim idle",
    "docker-restart": "restart the Docker daemon (SIGTERM, start again)",
}

Via = Literal["stream", "rest"]
Middle = Literal["restart", "patch"]

START_VERSION = "1.0.0"
PATCH_VERSION = "1.0.1"


@dataclass(frozen=True)
class Options:
    games: int
    faults: tuple[str, ...]
    ci: bool
    report: Path
    replicas: int = 3
    #: After the last fault: how long the state may take to become right.
    converge_bound: float = 180.0
    #: How long a flow waits for one job's result before it moves on.
    result_wait: float = 360.0
    #: How long a flow retries one REST command (connection refused, 5xx, busy game).
    rest_bound: float = 180.0
    #: Healthy load between two faults.
    gap: float = 8.0
    #: Per game, between its steps: uniform in this range (seconds).
    play: tuple[float, float] = (0.5, 3.0)
    seed: int = 10
    keep_games: bool = False
    #: Lobby sends a new job after a transient failure result, at most this often.
    lobby_attempts: int = 3


def pick_faults(skip: list[str]) -> tuple[str, ...]:
    unknown = sorted(set(skip) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    return tuple(f for f in FAULTS if f not in skip)


@dataclass(frozen=True)
class GamePlan:
    """One game as Lobby and GM drive it: start, then restart or patch, then stop."""

    game_id: str
    wave: int
    start_via: Via
    middle: Middle
    stop_via: Via
    plays: tuple[float, float] = field(default=(1.0, 1.0))

    @property
    def stream_jobs(self) -> int:
        return (self.start_via == "stream") + (self.stop_via == "stream")


def plan_games(game_ids: list[str], waves: int, options: Options) -> list[GamePlan]:
    """A fixed mix: a fifth of the starts and a quarter of the stops through REST, the
    rest through the streams; restart and patch alternate. Waves are contiguous and
    differ in size by one at most."""
    rng = random.Random(options.seed)
    waves = max(1, waves)
    plans = []
    for i, game_id in enumerate(game_ids):
        low, high = options.play
        plans.append(
            GamePlan(
                game_id=game_id,
                wave=i * waves // len(game_ids),
                start_via="rest" if i % 5 == 4 else "stream",
                middle="patch" if i % 2 else "restart",
                stop_via="rest" if i % 4 == 3 else "stream",
                plays=(rng.uniform(low, high), rng.uniform(low, high)),
            )
        )
    return plans
