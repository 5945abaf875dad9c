"""Jobs through PostgreSQL, Redis and Docker outages (issue 10 §4 job side, §5).

A job that meets an unavailable dependency is run again, with backoff, until
`RTMANAGER_JOBS_DEADLINE` after its entry was picked up; only then is it
answered, with the outage's code. The outages are real and private to each
test: a PostgreSQL or redis-server of the test's own stopped and started
under RTM, and a Docker socket that forwards to the daemon's and is taken
away. The session's shared servers and daemon are never touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path

import aiodocker
import asyncpg
import pytest
from harness import wait_for
from jobs.conftest import RunJobs
from jobs.helpers import hold_lease, nothing_pending, start_job, wait_results
from private_servers import PrivatePostgres, PrivateRedis
from redis.asyncio import Redis
from rig import Rig

from rtm_core.domain.errors import ServiceUnavailable
from rtm_core.domain.vocabulary import HealthEventType, OpSource
from rtm_core.domain.wire import HealthEvent
from rtm_core.settings import Settings

RETRIED = "dependency unavailable; job will be retried"


def retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.message == RETRIED]


async def containers(docker: aiodocker.Docker, game_id: str) -> list:
    return await docker.containers.list(
        all=True, filters=json.dumps({"label": [f"com.galaxy.game_id={game_id}"]})
    )


# ------------------------------------------------------------- the adapters


async def test_repositories_answer_a_postgres_outage_as_service_unavailable(
    postgres: PrivatePostgres,
    private_database: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    core = make_core(make_settings(postgres_primary_dsn=private_database))
    assert await core.repos.get_record(game_id) is None
    await postgres.stop()

    for call in (core.repos.get_record(game_id), core.repos.count_by_status()):
        with pytest.raises(ServiceUnavailable) as raised:
            await call
        assert raised.value.message.startswith("postgres unavailable: ")
        assert (raised.value.code, raised.value.http_status) == ("service_unavailable", 503)

    await postgres.start()
    # A pooled connection the restart closed fails once more (no pre-ping), as an outage.
    for _ in range(3):
        with suppress(ServiceUnavailable):
            await core.repos.get_record(game_id)
    assert await core.repos.get_record(game_id) is None


async def test_a_statement_cut_off_by_a_postgres_restart_is_an_outage(
    postgres: PrivatePostgres,
    private_database: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    """A statement running when the server shuts down gets 57P01 ("terminating
    connection due to administrator command") on a live connection: a restart,
    so 503 and a retried job, never internal_error. The server does to every
    session on a fast shutdown what pg_terminate_backend does to this one."""
    core = make_core(make_settings(postgres_primary_dsn=private_database))
    assert await core.repos.get_record(game_id) is None  # a pooled, live connection
    locker = await asyncpg.connect(private_database)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE rtmanager.runtime_records IN ACCESS EXCLUSIVE MODE")
            blocked = asyncio.ensure_future(core.repos.get_record(game_id))
            pid = await wait_for(lambda: _waiting_on_lock(locker), timeout=15)
            assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(ServiceUnavailable) as raised:
                await asyncio.wait_for(blocked, 15)
    finally:
        await locker.close()
    assert "terminating connection" in raised.value.message
    assert raised.value.message.startswith("postgres unavailable: ")

    for _ in range(3):
        with suppress(ServiceUnavailable):
            await core.repos.get_record(game_id)
    assert await core.repos.get_record(game_id) is None


async def test_a_connection_refused_by_a_shutting_down_postgres_is_an_outage(
    postgres: PrivatePostgres,
    private_database: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    """While PostgreSQL shuts down it refuses new connections with 57P03 ("the
    database system is shutting down"): the chaos drill's PostgreSQL restart
    answered start jobs internal_error for it. It is an outage: 503, retried."""
    session = await asyncpg.connect(private_database)  # keeps the smart shutdown going
    try:
        await postgres.begin_smart_stop()
        # A new pool: its first connection meets the refusal.
        core = make_core(make_settings(postgres_primary_dsn=private_database))
        with pytest.raises(ServiceUnavailable) as raised:
            await core.repos.get_record(game_id)
        assert "shutting down" in raised.value.message
    finally:
        await session.close()
    await postgres.wait_stopped()
    await postgres.start()
    assert await core.repos.get_record(game_id) is None


async def _waiting_on_lock(connection: asyncpg.Connection) -> int | None:
    """The pid of the session waiting on the lock, once it waits."""
    pid: int | None = await connection.fetchval(
        "SELECT pid FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1"
    )
    return pid


async def test_redis_adapters_answer_a_redis_outage_as_service_unavailable(
    private_redis: PrivateRedis,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    core = make_core(make_settings(redis_master_addr=private_redis.addr))
    assert not await core.leases.is_held(game_id)
    await private_redis.stop()

    async def hold() -> None:
        async with core.leases.hold(game_id):
            pass

    event = HealthEvent(
        game_id=game_id,
        container_id="c",
        event_type=HealthEventType.CONTAINER_DISAPPEARED,
        occurred_at_ms=0,
        details={},
    )
    calls = (hold(), core.exits.mark("c"), core.publishers.health_event(event))
    # redis-py retries a refused connection for a few seconds before giving up.
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, ServiceUnavailable), outcome
        assert outcome.message.startswith("redis unavailable: ")

    await private_redis.start()
    assert not await core.leases.is_held(game_id)


# --------------------------------------------------------------- PostgreSQL


async def test_a_job_meeting_a_short_postgres_outage_succeeds_once_it_is_back(
    postgres: PrivatePostgres,
    private_database: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    core = make_core(make_settings(postgres_primary_dsn=private_database))
    settings = core.settings
    assert settings.jobs_deadline == 300  # the default: five minutes
    await run_jobs(core)
    await postgres.stop()
    await start_job(redis, settings, game_id)

    await wait_for(lambda: len(retries(caplog)) >= 2, timeout=20)
    assert await redis.xlen(settings.redis_job_results_stream) == 0  # not answered yet
    await postgres.start()

    (result,) = await wait_results(redis, settings, 1, timeout=30)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    (container,) = await containers(docker, game_id)
    assert container.id == result["container_id"]
    await wait_for(lambda: nothing_pending(redis, settings))
    assert await redis.xlen(settings.redis_job_results_stream) == 1
    for retry in retries(caplog):
        assert retry.error_code == "service_unavailable"  # type: ignore[attr-defined]
        assert retry.error_message.startswith("postgres unavailable: ")  # type: ignore[attr-defined]
    record = await core.repos.get_record(game_id)
    assert record is not None and record.status == "running"
    latest = (await core.repos.operations(game_id))[0]
    assert (latest.op_kind, latest.outcome, latest.error_code) == ("start", "success", None)


async def test_a_job_meeting_a_longer_postgres_outage_is_answered_at_its_deadline(
    postgres: PrivatePostgres,
    private_database: str,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = make_core(make_settings(postgres_primary_dsn=private_database, jobs_deadline="2s"))
    settings = core.settings
    await run_jobs(core)
    await postgres.stop()
    written = time.monotonic()
    await start_job(redis, settings, game_id)

    (result,) = await wait_results(redis, settings, 1, timeout=30)

    assert time.monotonic() - written >= 2
    assert result["error_message"].startswith("postgres unavailable: ")
    assert result == {
        "game_id": game_id,
        "outcome": "failure",
        "container_id": "",
        "engine_endpoint": "",
        "error_code": "service_unavailable",
        "error_message": result["error_message"],
    }
    assert len(retries(caplog)) >= 2  # 0.5 s, 1 s, then the deadline
    (gave_up,) = [
        r
        for r in caplog.records
        if r.message == "job deadline passed while a dependency is unavailable"
    ]
    assert gave_up.error_code == "service_unavailable"  # type: ignore[attr-defined]
    await wait_for(lambda: nothing_pending(redis, settings))
    assert await containers(docker, game_id) == []


# -------------------------------------------------------------------- Redis


async def test_a_job_meeting_a_redis_outage_retries_each_attempt_leaving_its_row(
    private_redis: PrivateRedis,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_master_addr=private_redis.addr)
    core = make_core(settings)
    redis = core.redis  # the private server
    stream, group = settings.redis_start_jobs_stream, settings.jobs_consumer_group
    # The game is busy elsewhere, so the job is inside its lease wait when Redis goes.
    lease = await hold_lease(redis, game_id)
    await run_jobs(core)
    entry = await start_job(redis, settings, game_id)
    await wait_for(lambda: redis.xpending_range(stream, group, min=entry, max=entry, count=1))
    await private_redis.stop()

    await wait_for(lambda: retries(caplog), timeout=30)
    await private_redis.start()  # its data back: the stream, the group, the lease
    await redis.delete(lease)

    (result,) = await wait_results(redis, settings, 1, timeout=60)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    (container,) = await containers(docker, game_id)
    assert container.id == result["container_id"]
    await wait_for(lambda: nothing_pending(redis, settings), timeout=20)
    assert await redis.xlen(settings.redis_job_results_stream) == 1
    # Each attempt is an operation: the failed ones left their rows.
    rows = await core.repos.operations(game_id)
    assert (rows[0].outcome, rows[0].error_code) == ("success", None)
    failed = rows[1:]
    assert failed and {(r.outcome, r.error_code) for r in failed} == {
        ("failure", "service_unavailable")
    }
    assert all(
        r.error_message and r.error_message.startswith("redis unavailable: ") for r in failed
    )


# ------------------------------------------------------------------- Docker


class DockerSocket:
    """A Docker socket that forwards to the daemon's and can be taken away (an
    unreachable daemon, as RTM sees it) without touching the daemon."""

    def __init__(self, target: str = "/var/run/docker.sock") -> None:
        self.target = target
        self.path = Path(tempfile.mkdtemp(prefix="rtm-docker-")) / "docker.sock"
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.path.unlink(missing_ok=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()


@pytest.fixture
async def docker_socket() -> AsyncIterator[DockerSocket]:
    socket = DockerSocket()
    await socket.start()
    yield socket
    await socket.stop()
    shutil.rmtree(socket.path.parent, ignore_errors=True)


async def test_a_job_meeting_a_docker_outage_waits_for_the_daemon(
    docker_socket: DockerSocket,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    run_jobs: RunJobs,
    redis: Redis,
    docker: aiodocker.Docker,
    game_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = make_core(make_settings(docker_host=docker_socket.url))
    settings = core.settings
    await run_jobs(core)
    await docker_socket.stop()
    await start_job(redis, settings, game_id)

    await wait_for(lambda: len(retries(caplog)) >= 2, timeout=20)
    assert await redis.xlen(settings.redis_job_results_stream) == 0
    await docker_socket.start()

    (result,) = await wait_results(redis, settings, 1, timeout=30)
    assert (result["game_id"], result["outcome"], result["error_code"]) == (game_id, "success", "")
    (container,) = await containers(docker, game_id)
    assert container.id == result["container_id"]
    rows = await core.repos.operations(game_id)
    assert (rows[0].outcome, rows[0].error_code) == ("success", None)
    assert {(r.op_source, r.outcome, r.error_code) for r in rows[1:]} == {
        (OpSource.LOBBY_STREAM.value, "failure", "docker_unavailable")
    }
    assert len(rows) - 1 == len(retries(caplog))  # one row per failed attempt
