"""The diagnostic Lobby GET made on every start.

It runs beside the start, never in front of it: a Lobby that is slow or down
costs a start nothing, and its answer is only logged at debug.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

log = logging.getLogger(__name__)


class LobbyDiagnostics:
    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._tasks: set[asyncio.Task[None]] = set()

    def look_up(self, game_id: str) -> None:
        task = asyncio.create_task(self._get(game_id), name=f"lobby-diag:{game_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _get(self, game_id: str) -> None:
        url = f"{self._base_url}/api/v1/internal/games/{game_id}"
        try:
            response = await self._client.get(url)
            log.debug(
                "lobby diagnostic lookup",
                extra={"game_id": game_id, "status_code": response.status_code},
            )
        except Exception as exc:
            log.debug(
                "lobby diagnostic lookup failed",
                extra={"game_id": game_id, "error": str(exc) or type(exc).__name__},
            )

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
