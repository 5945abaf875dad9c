"""Probe worker: `GET <engine>/healthz` for every `running` record.

Every interval all engines are probed concurrently, at most
`RTMANAGER_PROBE_CONCURRENCY` at once, each under its own total deadline of
`RTMANAGER_PROBE_TIMEOUT`, through one shared `httpx.AsyncClient`: a slow
engine holds one slot for at most the timeout and never delays the others.

- Address (`RTMANAGER_PROBE_ADDRESS_MODE`): `endpoint` probes the record's
  `engine_endpoint` (RTM on the engine network); `container_ip` probes
  `http://<container IP on RTMANAGER_DOCKER_NETWORK>:8080` (RTM outside it),
  the IP cached per container and looked up again after a failure.
- Success is a 2xx answer. A failure counts towards
  `RTMANAGER_PROBE_FAILURES_THRESHOLD`; reaching it publishes `probe_failed`
  {consecutive_failures, last_status, last_error} once; the first success
  after it publishes `probe_recovered` {prior_failure_count}.
- Every probe updates the snapshot (source `probe`): `healthy`, `failing`,
  or the event it published; plain observations of a cycle are written in
  one transaction at its end (`observe_many`), events at once.
- No keep-alive: each probe opens its own connection, as a kubelet probe
  does. That checks the engine still accepts connections, and it is cheaper
  here than httpcore's bookkeeping of a pool of idle connections.
- Failure counts live in memory and in Redis while non-zero
  (`ContainerMemory`), so a new leader continues a count rather than
  announcing the same failure again.
- A container RTM is stopping (marked in `ExpectedExits`) is not counted.
- Nor is an engine the Docker daemon stopped, or one probed while the daemon
  is away and its engines' fate unknown (`DaemonWatch`): that death is the
  events listener's one report. A probe does not go through Docker, so an
  engine that keeps running while the daemon restarts (live-restore) keeps
  answering and stays healthy; a probe whose address needs an inspect the
  daemon cannot answer is not counted either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from rtm_core.domain.errors import DockerUnavailable
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import ENGINE_PORT, HealthEventType, HealthSource
from rtm_core.domain.wire import now_ms
from rtm_core.lifecycle.health import SnapshotUpdate
from rtm_core.runtime.loops import PeriodicLoop
from rtm_core.settings import ProbeAddressMode
from rtm_watcher.bootstrap import WatcherDeps
from rtm_watcher.cycle import for_each, running_records

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
#: What a probe that got no answer in time reports, as the contract's example does.
DEADLINE_EXCEEDED = "context deadline exceeded"


@dataclass
class ProbeState:
    failures: int = 0
    reported: bool = False

    @classmethod
    def load(cls, raw: dict[str, Any]) -> ProbeState:
        return cls(int(raw.get("failures", 0)), bool(raw.get("reported", False)))


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int
    error: str
    latency: float
    at_ms: int
    #: The address could not be had from Docker: nothing is known of the engine.
    docker_unavailable: bool = False

    def details(self) -> dict[str, Any]:
        return {"http_status": self.status, "latency_ms": round(self.latency * 1000, 1)}


class NoAddress(Exception):
    """The container has no address to probe (not running, or off the network)."""


class ProbeWorker(PeriodicLoop):
    name = "probe_worker"

    def __init__(self, deps: WatcherDeps) -> None:
        super().__init__(deps.loops)
        s = deps.settings
        self.interval = s.probe_interval
        self._deps = deps
        self._timeout = s.probe_timeout
        self._threshold = s.probe_failures_threshold
        self._concurrency = s.probe_concurrency
        self._mode = s.probe_address_mode
        self._memory = deps.memory.probe
        self._states: dict[str, ProbeState] | None = None
        self._ips: dict[str, str] = {}
        self._client: httpx.AsyncClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        self._states = None  # a new term continues the counts the last leader persisted
        self._open_client()
        try:
            await super().run(stop)
        finally:
            await self.aclose()

    def _open_client(self) -> None:
        # trust_env=False: an HTTP(S)_PROXY meant for the outside world must not
        # carry engine probes.
        self._client = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self._concurrency, max_keepalive_connections=0),
        )

    async def run_once(self) -> None:
        if self._client is None:  # run_once without run (tests, tools)
            self._open_client()
        if self._states is None:
            loaded = await self._memory.load()
            self._states = {cid: ProbeState.load(raw) for cid, raw in loaded.items()}
        records = await running_records(self._deps.records)
        updates: list[SnapshotUpdate] = []

        async def probe(record: RuntimeRecord) -> None:
            result = await self._probe(record)
            await self._settle(record, result, updates)

        try:
            await for_each(records, self._concurrency, probe)
        finally:
            await self._deps.health.observe_many(updates)
            live = {r.current_container_id or "" for r in records}
            await self._memory.keep_only(self._states, live)
            self._ips = {cid: ip for cid, ip in self._ips.items() if cid in live}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # one probe -------------------------------------------------------------

    async def _url(self, record: RuntimeRecord) -> str:
        if self._mode is ProbeAddressMode.ENDPOINT:
            if not record.engine_endpoint:
                raise NoAddress("record has no engine_endpoint")
            return record.engine_endpoint.rstrip("/") + HEALTH_PATH
        container_id = record.current_container_id or ""
        ip = self._ips.get(container_id)
        if ip is None:
            info = await self._deps.engine.inspect(container_id)
            if info is None or not info.running:
                raise NoAddress("container is not running")
            if not info.ip_address:
                raise NoAddress(f"container has no address on {self._deps.settings.docker_network}")
            ip = self._ips[container_id] = info.ip_address
        return f"http://{ip}:{ENGINE_PORT}{HEALTH_PATH}"

    async def _probe(self, record: RuntimeRecord) -> ProbeResult:
        assert self._client is not None
        try:
            url = await self._url(record)
        except NoAddress as exc:
            return ProbeResult(ok=False, status=0, error=str(exc), latency=0.0, at_ms=now_ms())
        except DockerUnavailable as exc:
            return ProbeResult(
                ok=False,
                status=0,
                error=exc.message,
                latency=0.0,
                at_ms=now_ms(),
                docker_unavailable=True,
            )
        began = time.perf_counter()
        status, error = 0, ""
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(url)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"unexpected status {status}"
        except TimeoutError:
            error = DEADLINE_EXCEEDED
        except httpx.HTTPError as exc:
            error = str(exc) or type(exc).__name__
        latency = time.perf_counter() - began
        ok = not error
        if not ok:
            self._ips.pop(record.current_container_id or "", None)
        self._deps.metrics.probe_latency.record(latency, {"outcome": "ok" if ok else "failed"})
        return ProbeResult(ok=ok, status=status, error=error, latency=latency, at_ms=now_ms())

    async def _settle(
        self, record: RuntimeRecord, result: ProbeResult, updates: list[SnapshotUpdate]
    ) -> None:
        assert self._states is not None and record.current_container_id is not None
        game_id, container_id = record.game_id, record.current_container_id
        state = self._states.get(container_id) or ProbeState()
        if result.ok:
            if state.reported:
                await self._report(
                    record,
                    HealthEventType.PROBE_RECOVERED,
                    {"prior_failure_count": state.failures},
                )
            else:
                updates.append(self._update(record, result, "healthy", result.details()))
            if self._states.pop(container_id, None) is not None:
                await self._memory.forget([container_id])
            return
        if result.docker_unavailable or await self._deps.exits.is_expected(container_id):
            return  # Docker is away, or RTM is stopping it: not a failure of the engine
        if not await self._deps.daemon.failure_counts(container_id):
            return  # the daemon stopped it, or may have: the listener reports that
        state.failures += 1
        failure = {
            "consecutive_failures": state.failures,
            "last_status": result.status,
            "last_error": result.error,
        }
        self._states[container_id] = state
        if not state.reported and state.failures >= self._threshold:
            await self._report(record, HealthEventType.PROBE_FAILED, failure)
            state.reported = True
        else:
            updates.append(self._update(record, result, "failing", {**failure, **result.details()}))
        await self._memory.save(container_id, asdict(state))
        log.debug(
            "engine probe failed",
            extra={"game_id": game_id, "worker": self.name, **failure},
        )

    async def _report(
        self, record: RuntimeRecord, event_type: HealthEventType, details: dict[str, Any]
    ) -> None:
        await self._deps.health.report(
            game_id=record.game_id,
            container_id=record.current_container_id or "",
            event_type=event_type,
            source=HealthSource.PROBE,
            details=details,
        )

    @staticmethod
    def _update(
        record: RuntimeRecord, result: ProbeResult, status: str, details: dict[str, Any]
    ) -> SnapshotUpdate:
        return SnapshotUpdate(
            game_id=record.game_id,
            container_id=record.current_container_id,
            source=HealthSource.PROBE,
            status=status,
            details=details,
            observed_at_ms=result.at_ms,
        )
