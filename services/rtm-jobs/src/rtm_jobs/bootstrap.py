"""What the job consumers use, and nothing more (issue 9: layering).

The consumers run the lifecycle's start and stop and answer on
`runtime:job_results`. rtm-jobs is itself the stream adapter of the Lobby
door, so it holds Redis: the consumer group's state (acknowledgement, the
offset keys, the result step) goes through `redis`, and each loop reads
entries on a bytes client of its own from `open_reader`, so a blocking read
never holds a connection the result step waits for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from redis.asyncio import Redis

from rtm_core.adapters.redis.client import redis_client
from rtm_core.lifecycle import Lifecycle
from rtm_core.observability import Metrics
from rtm_core.runtime.bootstrap import CoreAdapters, Infrastructure
from rtm_core.runtime.loops import LoopRegistry
from rtm_core.settings import Settings


@dataclass(frozen=True)
class JobsDeps:
    settings: Settings
    lifecycle: Lifecycle
    metrics: Metrics
    loops: LoopRegistry
    #: The consumer group's state: XACK, the offset keys, XINFO, the result step.
    redis: Redis
    #: A new client returning bytes, for entries written by others (closed by its loop).
    open_reader: Callable[[], Redis]
    job_results_stream: str
    #: Where jobs given up after too many deliveries are copied.
    dead_letter_stream: str
    #: MAXLEN ~ of the results and dead-letter streams; 0 = untrimmed.
    stream_maxlen: int


def bootstrap(infra: Infrastructure, core: CoreAdapters) -> JobsDeps:
    settings = infra.settings
    return JobsDeps(
        settings=settings,
        lifecycle=core.lifecycle,
        metrics=infra.metrics,
        loops=infra.loops,
        redis=infra.redis,
        open_reader=partial(redis_client, settings, decode_responses=False),
        job_results_stream=settings.redis_job_results_stream,
        dead_letter_stream=settings.redis_dead_letter_stream,
        stream_maxlen=settings.stream_maxlen,
    )
