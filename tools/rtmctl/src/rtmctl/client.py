"""RTM's internal REST API as rtmctl uses it, and what its answers mean as exit codes.

exit  class         when
----  ------------  ------------------------------------------------------------
0     ok
1     failure       500 internal_error, or an answer rtmctl does not understand
2     usage         a bad flag or argument (Click's own), a bad config, or a 400
                    (invalid_request, start_config_invalid, image_ref_not_semver,
                    semver_patch_only)
3     not found     404 not_found
4     conflict      409 conflict / operation_in_progress, 429 too_many_followers
5     upstream      502 image_pull_failed / container_start_failed /
                    docker_unavailable / patch_rolled_back, 503
                    service_unavailable, 501 logs_not_readable
6     unreachable   no connection to RTM, or no answer within --timeout
7     unauthorized  401 unauthorized (RTM_TOKEN missing or wrong)
130   interrupted   Ctrl-C
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import IntEnum
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from rtmctl.config import Config

API = "/api/v1/internal"


class Exit(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    UPSTREAM = 5
    UNREACHABLE = 6
    UNAUTHORIZED = 7
    INTERRUPTED = 130


def exit_for(status: int) -> Exit:
    if status == 400:
        return Exit.USAGE
    if status == 401:
        return Exit.UNAUTHORIZED
    if status == 404:
        return Exit.NOT_FOUND
    if status in (409, 429):
        return Exit.CONFLICT
    if status in (501, 502, 503, 504):
        return Exit.UPSTREAM
    return Exit.FAILURE


class CallFailed(Exception):
    """An error envelope (or no answer at all): what to print, and the exit code."""

    def __init__(self, code: str, message: str, exit_code: Exit) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.exit_code = exit_code


def _failed(response: httpx.Response) -> CallFailed:
    response.read()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text.strip()[:500]
    return CallFailed(code, message, exit_for(response.status_code))


class Rtm:
    """One RTM, through one HTTP connection pool."""

    def __init__(self, config: Config, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"X-Galaxy-Caller": config.caller, "User-Agent": "rtmctl"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        self.config = config
        self._http = httpx.Client(
            base_url=config.url + API,
            headers=headers,
            timeout=httpx.Timeout(config.timeout),
            transport=transport,
        )
        #: Operations (and streams) may take as long as RTM's own deadlines allow:
        #: connecting is bounded, waiting for the answer is not.
        self._patient = httpx.Timeout(config.timeout, read=None)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, patient: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(
                method,
                path,
                timeout=self._patient if patient else httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise CallFailed(
                "timeout", f"no answer from {self.config.url} ({exc})", Exit.UNREACHABLE
            ) from None
        except httpx.TransportError as exc:
            raise CallFailed(
                "unreachable", f"cannot reach RTM at {self.config.url}: {exc}", Exit.UNREACHABLE
            ) from None
        if response.is_error:
            raise _failed(response)
        try:
            return response.json()
        except ValueError:
            raise CallFailed(
                "bad_answer", f"not JSON: {response.text[:200]!r}", Exit.FAILURE
            ) from None

    # reads -----------------------------------------------------------------

    def runtime(self, game_id: str, *, wide: bool = False) -> dict[str, Any]:
        params = {"view": "wide"} if wide else {}
        result: dict[str, Any] = self._call("GET", f"/runtimes/{game_id}", params=params)
        return result

    def runtimes(
        self, *, status: str | None = None, wide: bool = False, page: int = 500
    ) -> list[dict[str, Any]]:
        """Every record, a page at a time (keyset paging: none seen twice)."""
        params: dict[str, Any] = {"limit": page}
        if status:
            params["status"] = status
        if wide:
            params["view"] = "wide"
        items: list[dict[str, Any]] = []
        while True:
            answer = self._call("GET", "/runtimes", params=params)
            items += answer["items"]
            if not answer.get("next_cursor"):
                return items
            params["cursor"] = answer["next_cursor"]

    def operations(self, game_id: str, limit: int) -> list[dict[str, Any]]:
        answer = self._call("GET", f"/runtimes/{game_id}/operations", params={"limit": limit})
        items: list[dict[str, Any]] = answer["items"]
        return items

    def health(self, game_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/runtimes/{game_id}/health")
        return result

    def events(self, game_id: str | None, limit: int) -> list[dict[str, Any]]:
        path = "/events" if game_id is None else f"/runtimes/{game_id}/events"
        items: list[dict[str, Any]] = self._call("GET", path, params={"limit": limit})["items"]
        return items

    # operations ------------------------------------------------------------

    def start(self, game_id: str, image_ref: str, wait_ready: bool | None) -> dict[str, Any]:
        params = {} if wait_ready is None else {"wait_ready": str(wait_ready).lower()}
        result: dict[str, Any] = self._call(
            "POST",
            f"/runtimes/{game_id}/start",
            json={"image_ref": image_ref},
            params=params,
            patient=True,
        )
        return result

    def stop(self, game_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/runtimes/{game_id}/stop", json={"reason": reason}, patient=True
        )
        return result

    def restart(self, game_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/runtimes/{game_id}/restart", patient=True)
        return result

    def patch(self, game_id: str, image_ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/runtimes/{game_id}/patch", json={"image_ref": image_ref}, patient=True
        )
        return result

    def cleanup(self, game_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "DELETE", f"/runtimes/{game_id}/container", patient=True
        )
        return result

    # streams ---------------------------------------------------------------

    def logs(
        self, game_id: str, *, tail: int | None, since: str | None, follow: bool
    ) -> Iterator[str]:
        params: dict[str, Any] = {"follow": str(follow).lower()}
        if tail is not None:
            params["tail"] = tail
        if since:
            params["since"] = since
        try:
            with self._http.stream(
                "GET", f"/runtimes/{game_id}/logs", params=params, timeout=self._patient
            ) as response:
                if response.is_error:
                    raise _failed(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise CallFailed(
                "unreachable", f"cannot reach RTM at {self.config.url}: {exc}", Exit.UNREACHABLE
            ) from None

    def follow_events(self, game_id: str | None, limit: int) -> Iterator[dict[str, Any]]:
        """Recent events, then new ones; reconnects after each `end` the server
        sends at its max duration, from the last event seen."""
        path = "/events" if game_id is None else f"/runtimes/{game_id}/events"
        params: dict[str, Any] = {"follow": "true", "limit": limit}
        while True:
            ended = False
            for sse in self._sse(path, params):
                if sse.event == "health_event":
                    params["after"] = sse.id
                    yield json.loads(sse.data)
                elif sse.event == "end":
                    ended = json.loads(sse.data).get("reason") == "max_duration"
            if not ended:
                return

    def _sse(self, path: str, params: dict[str, Any]) -> Iterator[ServerSentEvent]:
        try:
            with connect_sse(
                self._http, "GET", path, params=params, timeout=self._patient
            ) as source:
                if source.response.is_error:
                    raise _failed(source.response)
                yield from source.iter_sse()
        except httpx.TransportError as exc:
            raise CallFailed(
                "unreachable", f"cannot reach RTM at {self.config.url}: {exc}", Exit.UNREACHABLE
            ) from None
