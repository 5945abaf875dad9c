"""The compose stack as a client on the Docker host sees it.

Everything goes through the stack's public edges, never through RTM's code:

- **Docker** (aiodocker on the host's socket): the project's containers are
  found by the `com.docker.compose.project` / `.service` labels (names differ
  between compose 1.29 and v2), engines by `galaxy-game-<game_id>`.
- **Redis**: a client on the `redis` container's IP on the project's private
  network (`<project>_rtm-internal`), password from that container's
  `REDISCLI_AUTH`. Bridge networks are routed from the host on Linux, so no
  port is published for the tests; on Docker Desktop this would need
  `docker compose exec redis redis-cli` instead.
- **REST** on `127.0.0.1:<RTM_API_PORT>` (8096), with the bearer token when
  rtm-api runs with one.
- **Metrics**: `http://<container ip on rtm-internal>:9464/metrics` of each
  RTM container (not published on the host), Prometheus on `127.0.0.1:9090`.

The stack's own settings (stack label, state root, network, intervals) are
read from rtm-api's environment, so the tests follow whatever `.env` the
stack runs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import httpx
from aiodocker.containers import DockerContainer
from harness import wait_for
from redis.asyncio import Redis
from redis.exceptions import RedisError

PROJECT = os.environ.get("RTM_COMPOSE_PROJECT", "rtm")
RTM_SERVICES = ("rtm-api", "rtm-jobs", "rtm-watcher", "rtm-reconciler")
API_PREFIX = "/api/v1/internal/runtimes"
METRICS_PORT = 9464
ENGINE_PORT = 8080
IMAGE = "galaxy/test-engine"

START_JOBS = "runtime:start_jobs"
STOP_JOBS = "runtime:stop_jobs"
JOB_RESULTS = "runtime:job_results"
HEALTH_EVENTS = "runtime:health_events"
JOBS_GROUP = "rtmanager"
#: How long cleanup waits for queued jobs of a failed test to be answered.
DRAIN_AT_CLEANUP = 60.0


def parse_duration(text: str) -> float:
    """RTM's duration syntax (`30s`, `5m`, `1h`, `250ms`) in seconds."""
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ComposeStack:
    docker: aiodocker.Docker
    api: httpx.AsyncClient
    redis: Redis
    env: dict[str, str]  # rtm-api's environment
    network: str  # the project's private network
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    games: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ settings

    @property
    def stack(self) -> str:
        return self.env.get("RTMANAGER_STACK", "default")

    @property
    def state_root(self) -> Path:
        return Path(self.env.get("RTMANAGER_GAME_STATE_ROOT", "/var/lib/galaxy/games"))

    @property
    def engine_network(self) -> str:
        return self.env.get("RTMANAGER_DOCKER_NETWORK", "galaxy-net")

    @property
    def reconcile_interval(self) -> float:
        return parse_duration(self.env.get("RTMANAGER_RECONCILE_INTERVAL", "5m"))

    def new_game(self, label: str) -> str:
        """A game id unique to this run (`it-<run>-<label>-<n>`), remembered for cleanup."""
        game_id = f"it-{self.run_id}-{label}-{len(self.games)}"
        self.games.append(game_id)
        return game_id

    # ------------------------------------------------------------ containers

    async def containers(self, service: str) -> list[DockerContainer]:
        return await _list(self.docker, service)

    async def container(self, service: str) -> dict[str, Any]:
        """`docker inspect` of the one container of `service`."""
        found = await self.containers(service)
        assert len(found) == 1, f"expected one {service} container, found {len(found)}"
        return await found[0].show()

    async def ip(self, service: str) -> str:
        info = await self.container(service)
        return str(info["NetworkSettings"]["Networks"][self.network]["IPAddress"])

    async def healthy(self, service: str) -> bool:
        info = await self.container(service)
        state = info["State"]
        return bool(state["Running"] and state.get("Health", {}).get("Status") == "healthy")

    async def engine(self, game_id: str) -> dict[str, Any] | None:
        """`docker inspect galaxy-game-<game_id>`, or None when there is none."""
        try:
            container = self.docker.containers.container(f"galaxy-game-{game_id}")
            return await container.show()  # type: ignore[no-any-return]
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise

    async def engines(self, game_id: str) -> list[dict[str, Any]]:
        """Every container of this stack labelled with the game, running or not."""
        labels = [
            "com.galaxy.owner=rtmanager",
            f"com.galaxy.stack={self.stack}",
            f"com.galaxy.game_id={game_id}",
        ]
        found = await self.docker.containers.list(all=True, filters={"label": labels})
        return [await c.show() for c in found]

    async def engine_get(self, game_id: str, path: str) -> str:
        """GET on the engine's own HTTP port, through its IP on the engine network."""
        info = await self.engine(game_id)
        assert info is not None, f"no engine for {game_id}"
        ip = info["NetworkSettings"]["Networks"][self.engine_network]["IPAddress"]
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://{ip}:{ENGINE_PORT}{path}")
        response.raise_for_status()
        return response.text.strip()

    # ------------------------------------------------------------ REST

    async def record(self, game_id: str) -> dict[str, Any] | None:
        response = await self.api.get(f"{API_PREFIX}/{game_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def operations(self, game_id: str) -> list[dict[str, Any]]:
        """The game's operation log, oldest first."""
        response = await self.api.get(f"{API_PREFIX}/{game_id}/operations", params={"limit": 500})
        response.raise_for_status()
        return list(reversed(response.json()["items"]))

    async def post(
        self, game_id: str, action: str, body: dict[str, str] | None = None, caller: str = "admin"
    ) -> httpx.Response:
        return await self.retry_busy(
            lambda: self.api.post(
                f"{API_PREFIX}/{game_id}/{action}", json=body, headers={"X-Galaxy-Caller": caller}
            )
        )

    async def delete_container(self, game_id: str) -> httpx.Response:
        return await self.retry_busy(lambda: self.api.delete(f"{API_PREFIX}/{game_id}/container"))

    @staticmethod
    async def retry_busy(
        call: Callable[[], Awaitable[httpx.Response]], budget: float = 20.0
    ) -> httpx.Response:
        """What an admin does with 409 `operation_in_progress`: try again shortly.

        The integration stack reconciles every 3 s and a pass holds a game's
        lease for a moment while it re-checks a drift (SPEC §2: REST answers
        409 `operation_in_progress` then, at once); a test step must not fail
        for landing in that moment.
        """
        deadline = asyncio.get_running_loop().time() + budget
        while True:
            response = await call()
            busy = response.status_code == 409 and (
                response.json().get("error", {}).get("code") == "operation_in_progress"
            )
            if not busy or asyncio.get_running_loop().time() > deadline:
                return response
            await asyncio.sleep(0.5)

    async def start_rest(self, game_id: str, version: str = "1.0.0") -> dict[str, Any]:
        response = await self.post(game_id, "start", {"image_ref": f"{IMAGE}:{version}"})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    # ------------------------------------------------------------ streams

    async def start_job(self, game_id: str, version: str = "1.0.0") -> str:
        fields = {"game_id": game_id, "image_ref": f"{IMAGE}:{version}"}
        return str(await self.redis.xadd(START_JOBS, {**fields, "requested_at_ms": now_ms()}))

    async def stop_job(self, game_id: str, reason: str = "cancelled") -> str:
        fields = {"game_id": game_id, "reason": reason, "requested_at_ms": now_ms()}
        return str(await self.redis.xadd(STOP_JOBS, fields))

    async def entries(self, stream: str, game_ids: set[str]) -> dict[str, list[dict[str, str]]]:
        """Entries of `stream` about these games, per game, oldest first."""
        found: dict[str, list[dict[str, str]]] = {g: [] for g in game_ids}
        for _id, fields in await self.redis.xrange(stream):
            if fields.get("game_id") in found:
                found[fields["game_id"]].append(fields)
        return found

    async def results(self, game_id: str) -> list[dict[str, str]]:
        return (await self.entries(JOB_RESULTS, {game_id}))[game_id]

    async def events(self, game_id: str, event_type: str | None = None) -> list[dict[str, str]]:
        events = (await self.entries(HEALTH_EVENTS, {game_id}))[game_id]
        return [e for e in events if event_type is None or e["event_type"] == event_type]

    async def wait_results(
        self, game_id: str, count: int, timeout: float = 60
    ) -> list[dict[str, str]]:
        async def enough() -> list[dict[str, str]] | None:
            found = await self.results(game_id)
            return found if len(found) >= count else None

        try:
            return await wait_for(enough, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(
                f"{game_id}: {count} job results expected within {timeout}s, "
                f"got {await self.results(game_id)}"
            ) from None

    async def wait_event(self, game_id: str, event_type: str, timeout: float) -> dict[str, str]:
        async def seen() -> dict[str, str] | None:
            found = await self.events(game_id, event_type)
            return found[0] if found else None

        try:
            return await wait_for(seen, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(
                f"{game_id}: no {event_type} within {timeout}s; "
                f"events: {await self.events(game_id)}"
            ) from None

    async def group_backlog(self, stream: str) -> tuple[int, int]:
        """(pending, lag) of RTM's consumer group on `stream`."""
        for info in await self.redis.xinfo_groups(stream):
            if info["name"] == JOBS_GROUP:
                return int(info["pending"]), int(info.get("lag") or 0)
        return 0, 0

    # ------------------------------------------------------------ metrics

    async def metrics(self, service: str) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://{await self.ip(service)}:{METRICS_PORT}/metrics")
        response.raise_for_status()
        return response.text

    # ------------------------------------------------------------ cleanup

    async def drained(self) -> bool:
        """Nothing pending or undelivered in RTM's job consumer groups."""
        try:
            backlogs = [await self.group_backlog(s) for s in (START_JOBS, STOP_JOBS)]
        except RedisError:  # no stream yet: nothing to drain
            return True
        return all(b == (0, 0) for b in backlogs)

    async def remove_games(self) -> None:
        """Leave nothing of this run behind: let jobs still queued finish (bounded:
        a job answered after cleanup would start an engine nobody stops), stop
        and clean up each game through REST (records end `removed`, no drift),
        then force-remove whatever of ours Docker still has."""
        with contextlib.suppress(AssertionError):
            await wait_for(self.drained, timeout=DRAIN_AT_CLEANUP, interval=0.5)

        async def one(game_id: str) -> None:
            with contextlib.suppress(httpx.HTTPError):
                record = await self.record(game_id)
                if record is not None and record["status"] == "running":
                    await self.post(game_id, "stop", {"reason": "admin_request"})
                if record is not None and record["status"] != "removed":
                    await self.api.delete(f"{API_PREFIX}/{game_id}/container")
            for info in await self.engines(game_id):
                with contextlib.suppress(aiodocker.DockerError):
                    await self.docker.containers.container(info["Id"]).delete(force=True)

        await asyncio.gather(*(one(g) for g in self.games))


async def open_stack(docker: aiodocker.Docker) -> ComposeStack:
    """Connect to the running stack; fails (never skips) when it is not up."""
    api_containers = await _list(docker, "rtm-api")
    if not api_containers:
        raise AssertionError(
            f"no rtm-api container of compose project {PROJECT!r}: bring the stack up "
            "with `make integration` (or `make up`)"
        )
    api_info = await api_containers[0].show()
    env = dict(e.split("=", 1) for e in api_info["Config"]["Env"] if "=" in e)
    network = f"{PROJECT}_rtm-internal"
    redis_info = await (await _list(docker, "redis"))[0].show()
    redis_env = dict(e.split("=", 1) for e in redis_info["Config"]["Env"] if "=" in e)
    redis = Redis(
        host=redis_info["NetworkSettings"]["Networks"][network]["IPAddress"],
        port=6379,
        password=redis_env.get("REDISCLI_AUTH") or None,
        decode_responses=True,
        socket_connect_timeout=5,
    )
    await redis.ping()
    headers = {}
    if token := env.get("RTMANAGER_INTERNAL_API_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    port = os.environ.get("RTM_API_PORT", "8096")
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)
    return ComposeStack(docker=docker, api=api, redis=redis, env=env, network=network)


async def _list(docker: aiodocker.Docker, service: str) -> list[DockerContainer]:
    labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]
    return await docker.containers.list(all=True, filters={"label": labels})
