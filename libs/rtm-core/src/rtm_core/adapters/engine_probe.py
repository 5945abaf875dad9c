"""`GET /healthz` of one engine, for the lifecycle's gates (issue 12): the
patch health gate and a start that waits for its engine.

The address is the one the watcher's probe worker uses
(`RTMANAGER_PROBE_ADDRESS_MODE`): `endpoint` asks the record's
`engine_endpoint` (RTM on the engine network), `container_ip` asks
`http://<container IP on RTMANAGER_DOCKER_NETWORK>:8080` (RTM outside it).
Each probe has its own total deadline (`RTMANAGER_PROBE_TIMEOUT`) and its own
connection (no keep-alive: a probe also checks the engine still accepts
connections), and no proxy from the environment.
"""

from __future__ import annotations

import asyncio

import httpx

from rtm_core.domain.errors import DockerUnavailable
from rtm_core.domain.vocabulary import ENGINE_PORT
from rtm_core.ports import EngineRuntime, ProbeOutcome
from rtm_core.settings import ProbeAddressMode, Settings

HEALTH_PATH = "/healthz"
#: What a probe that got no answer in time reports, as the watcher's probes do.
DEADLINE_EXCEEDED = "context deadline exceeded"


class EngineProbe:
    def __init__(
        self,
        client: httpx.AsyncClient,
        engines: EngineRuntime,
        *,
        mode: ProbeAddressMode,
        timeout: float,
        network: str,
    ) -> None:
        self._client = client
        self._engines = engines
        self._mode = mode
        self._timeout = timeout
        self._network = network

    @classmethod
    def from_settings(cls, settings: Settings, engines: EngineRuntime) -> EngineProbe:
        client = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        return cls(
            client,
            engines,
            mode=settings.probe_address_mode,
            timeout=settings.probe_timeout,
            network=settings.docker_network,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _url(self, endpoint: str, container_id: str) -> str | ProbeOutcome:
        if self._mode is ProbeAddressMode.ENDPOINT:
            return endpoint.rstrip("/") + HEALTH_PATH
        try:
            info = await self._engines.inspect(container_id)
        except DockerUnavailable as exc:
            return ProbeOutcome(ok=False, error=exc.message)
        if info is None or not info.running:
            return ProbeOutcome(ok=False, error="container is not running")
        if not info.ip_address:
            return ProbeOutcome(ok=False, error=f"container has no address on {self._network}")
        return f"http://{info.ip_address}:{ENGINE_PORT}{HEALTH_PATH}"

    async def healthz(self, endpoint: str, container_id: str) -> ProbeOutcome:
        url = await self._url(endpoint, container_id)
        if isinstance(url, ProbeOutcome):
            return url
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(url)
        except TimeoutError:
            return ProbeOutcome(ok=False, error=DEADLINE_EXCEEDED)
        except httpx.HTTPError as exc:
            return ProbeOutcome(ok=False, error=str(exc) or type(exc).__name__)
        status = response.status_code
        if 200 <= status < 300:
            return ProbeOutcome(ok=True, status=status)
        return ProbeOutcome(ok=False, status=status, error=f"unexpected status {status}")
