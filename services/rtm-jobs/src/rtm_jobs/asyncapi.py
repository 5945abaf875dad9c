"""The FastStream app of RTM's streams, and the AsyncAPI document generated from it.

The broker declares every stream RTM consumes (start and stop jobs, through
the consumer group) and publishes (job results, health events, notification
intents), with the shapes of `rtm_core.domain.wire`: the models that decode
and encode the entries are the ones documented. It is a declaration: it is
never connected. Consumption runs in `rtm_jobs.consumer` (its docstring says
why) and publishing is plain XADD of each shape's `fields()`, because
FastStream's `publish` would wrap each entry in its own envelope.

    python -m rtm_jobs.asyncapi            # print the document
    python -m rtm_jobs.asyncapi --write    # refresh docs/api/asyncapi.json

(`faststream docs gen rtm_jobs.asyncapi:app` works too with `faststream[cli]`.)
The document uses the default stream names of `001`; a test holds the
committed file equal to the generated one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub
from faststream.specification import AsyncAPI

from rtm_core.domain.wire import (
    DeadLetter,
    HealthEvent,
    JobResult,
    NotificationIntentEntry,
    StartJob,
    StopJob,
)
from rtm_core.settings import Settings

DOCUMENT = Path(__file__).resolve().parents[4] / "docs" / "api" / "asyncapi.json"
VERSION = "1.0.0"
#: What `RTMANAGER_JOBS_CONSUMER_NAME` defaults to, as the document shows it.
CONSUMER = "<hostname>"


def _default(field: str) -> str:
    value = Settings.model_fields[field].default
    assert isinstance(value, str)
    return value


def build_app() -> FastStream:
    group = _default("jobs_consumer_group")
    broker = RedisBroker(
        "redis://127.0.0.1:6379",
        description="RTMANAGER_REDIS_MASTER_ADDR (password: RTMANAGER_REDIS_PASSWORD)",
    )

    @broker.subscriber(
        stream=StreamSub(_default("redis_start_jobs_stream"), group=group, consumer=CONSUMER),
        title="runtime:start_jobs",
        description=(
            "Lobby → RTM (RTMANAGER_REDIS_START_JOBS_STREAM). Read by every rtm-jobs "
            "replica through the consumer group RTMANAGER_JOBS_CONSUMER_GROUP; at least "
            "once. Start the game's engine, or confirm it runs (replay_no_op). Exactly one "
            "runtime:job_results entry answers each job, malformed ones included when "
            "they carry a game_id."
        ),
    )
    async def start_job(job: StartJob) -> None:
        """Start a game's engine container."""

    @broker.subscriber(
        stream=StreamSub(_default("redis_stop_jobs_stream"), group=group, consumer=CONSUMER),
        title="runtime:stop_jobs",
        description=(
            "Lobby → RTM (RTMANAGER_REDIS_STOP_JOBS_STREAM), same group and delivery as "
            "start jobs. Stop the game's engine; already stopped is replay_no_op, an "
            "unknown game is failure + not_found."
        ),
    )
    async def stop_job(job: StopJob) -> None:
        """Stop a game's engine container."""

    broker.publisher(
        stream=_default("redis_job_results_stream"),
        title="runtime:job_results",
        description="RTM → Lobby (RTMANAGER_REDIS_JOB_RESULTS_STREAM), plain XADD.",
        schema=JobResult,
    )
    broker.publisher(
        stream=_default("redis_dead_letter_stream"),
        title="runtime:dead_letter",
        description=(
            "RTM → operators (RTMANAGER_REDIS_DEAD_LETTER_STREAM), plain XADD in the same "
            "step as the job's failure + internal_error result. A start or stop job whose "
            "entry was delivered more than RTMANAGER_JOBS_MAX_DELIVERIES times without "
            "completing: the job's own fields as written, then the fields below. Replay it "
            "by XADDing the job's own fields to source_stream (docs/runbook.md)."
        ),
        schema=DeadLetter,
    )
    broker.publisher(
        stream=_default("redis_health_events_stream"),
        title="runtime:health_events",
        description=(
            "RTM → anyone (RTMANAGER_REDIS_HEALTH_EVENTS_STREAM), plain XADD. The seven "
            "event types of the contract; container_quarantined is additive and published "
            "only with RTMANAGER_AUTO_RESTART=on. With it on, rtm-reconciler also reads "
            "this stream through its own consumer group "
            "(RTMANAGER_AUTO_RESTART_CONSUMER_GROUP)."
        ),
        schema=HealthEvent,
    )
    broker.publisher(
        stream=_default("notification_intents_stream"),
        title="notification:intents",
        description=(
            "RTM → notification service (RTMANAGER_NOTIFICATION_INTENTS_STREAM), plain "
            "XADD; only for image_pull_failed, container_start_failed and "
            "start_config_invalid on start, and (RTMANAGER_AUTO_RESTART=on only) "
            "container_quarantined."
        ),
        schema=NotificationIntentEntry,
    )
    return FastStream(
        broker,
        specification=AsyncAPI(
            broker,
            title="Galaxy Runtime Manager streams",
            version=VERSION,
            description=(
                "Redis streams RTM consumes and publishes. Every entry is plain field/value "
                "pairs exactly as listed (all values are strings)."
            ),
        ),
    )


app = build_app()


def document() -> str:
    """The AsyncAPI 3.0 document as committed: indented JSON, newline-terminated.

    Keys are sorted: FastStream keeps a broker's subscribers and publishers in
    a WeakSet, so the order it lists channels in changes from run to run.
    """
    spec = json.loads(app.schema.to_specification().to_json())
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    if "--write" in argv:
        DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
        DOCUMENT.write_text(document())
        print(f"wrote {DOCUMENT}")
    else:
        sys.stdout.write(document())


if __name__ == "__main__":
    main(sys.argv[1:])
