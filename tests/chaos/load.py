"""The load: Lobby on the streams and GM/admin on REST, each game start →
restart or patch → stop, many games at once, as a client that keeps trying
while the stack is hurt (REST retried on refusals, 5xx and a busy game; a
stream job re-sent by Lobby after a transient failure result)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from integration.compose import IMAGE, JOB_RESULTS

from chaos.plan import PATCH_VERSION, START_VERSION, GamePlan, Options
from chaos.stackctl import Stack, Unavailable
from chaos.tally import Result, id_key

#: Result codes after which Lobby writes the job again (the stack was hurt, not the job wrong).
TRANSIENT_CODES = {
    "operation_in_progress",
    "service_unavailable",
    "docker_unavailable",
    "internal_error",
}
#: REST answers a client retries; any other non-200 is final.
RETRY_STATUS = {500, 502, 503, 504}
XADD_BOUND = 120.0


@dataclass(frozen=True)
class Event:
    """Something the load saw, at `t` seconds on the drill's clock."""

    t: float
    kind: str  # job | result | rest | rest-final | read | xadd-error | resend
    game_id: str
    detail: str


@dataclass
class GameLog:
    last_command: str | None = None
    done_at: float | None = None
    rest_final: list[str] = field(default_factory=list)


class Clock:
    def __init__(self) -> None:
        self.mono0 = time.monotonic()
        self.wall0 = time.time()

    def now(self) -> float:
        return time.monotonic() - self.mono0

    def wall(self, t: float) -> float:
        return self.wall0 + t


class Results:
    """Follows `runtime:job_results` (XREAD) and hands each game its results in order."""

    def __init__(self, stack: Stack, clock: Clock, games: set[str], since: str) -> None:
        self.stack = stack
        self.clock = clock
        self.games = games
        self.cursor = since
        self.by_game: dict[str, list[Result]] = {g: [] for g in games}
        self.taken: Counter[str] = Counter()
        self.changed = asyncio.Condition()
        self.events: list[Event] = []

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                found = await self.stack.redis(
                    lambda r: r.xread({JOB_RESULTS: self.cursor}, count=500, block=1000),
                    timeout=6.0,
                )
            except Exception:
                await asyncio.sleep(0.5)
                continue
            fresh = []
            for _stream, entries in found or []:
                for entry_id, fields in entries:
                    self.cursor = entry_id
                    if fields.get("game_id") in self.games:
                        fresh.append(Result.of(entry_id, fields))
            if fresh:
                async with self.changed:
                    for result in fresh:
                        self.by_game[result.game_id].append(result)
                        self.events.append(
                            Event(self.clock.now(), "result", result.game_id, result.label)
                        )
                    self.changed.notify_all()

    async def next_after(self, game_id: str, job_id: str, timeout: float) -> Result | None:
        """The game's first result not handed out yet and written after `job_id`
        (earlier ones answer older jobs), or None after `timeout` seconds."""
        found: list[Result] = []

        def ready() -> bool:
            got = self.by_game[game_id]
            while self.taken[game_id] < len(got):
                result = got[self.taken[game_id]]
                self.taken[game_id] += 1
                if id_key(result.entry_id) > id_key(job_id):
                    found.append(result)
                    return True
            return False

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(ready), timeout)
            except TimeoutError:
                return None
        return found[0]


class Load:
    def __init__(self, stack: Stack, clock: Clock, options: Options, results: Results) -> None:
        self.stack = stack
        self.compose = stack.compose
        self.clock = clock
        self.options = options
        self.results = results
        self.events: list[Event] = []
        self.games: dict[str, GameLog] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._reader_stop = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def note(self, kind: str, game_id: str, detail: str) -> None:
        self.events.append(Event(self.clock.now(), kind, game_id, detail))

    # ------------------------------------------------------------ driving

    def launch(self, plans: list[GamePlan], stagger: float = 0.25) -> None:
        for i, plan in enumerate(plans):
            self.games[plan.game_id] = GameLog()
            self.tasks.append(asyncio.create_task(self._game(plan, i * stagger), name=plan.game_id))

    def unfinished(self) -> list[str]:
        return [g for g, log in self.games.items() if log.done_at is None]

    async def answered_any(self, plans: list[GamePlan], timeout: float) -> bool:
        """Wait until some game of `plans` got its first answer (the wave is in flight)."""
        wanted = {p.game_id for p in plans}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(self.results.by_game[g] for g in wanted) or any(
                e.kind == "rest" and e.game_id in wanted and e.detail == "200"
                for e in self.events[-200:]
            ):
                return True
            await asyncio.sleep(0.1)
        return False

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _game(self, plan: GamePlan, delay: float) -> None:
        game = plan.game_id
        log = self.games[game]
        await asyncio.sleep(delay)
        image = f"{IMAGE}:{START_VERSION}"
        log.last_command = "start"
        if plan.start_via == "stream":
            await self._stream_job(game, "start", {"image_ref": image})
        else:
            await self._rest(game, "start", {"image_ref": image}, "gm")
        await asyncio.sleep(plan.plays[0])
        log.last_command = plan.middle
        if plan.middle == "patch":
            await self._rest(game, "patch", {"image_ref": f"{IMAGE}:{PATCH_VERSION}"}, "admin")
        else:
            await self._rest(game, "restart", None, "gm")
        await asyncio.sleep(plan.plays[1])
        log.last_command = "stop"
        if plan.stop_via == "stream":
            await self._stream_job(game, "stop", {"reason": "finished"})
        else:
            await self._rest(game, "stop", {"reason": "finished"}, "gm")
        log.done_at = self.clock.now()

    # ------------------------------------------------------------ Lobby

    async def _stream_job(self, game: str, kind: str, fields: dict[str, str]) -> None:
        for attempt in range(self.options.lobby_attempts):
            if attempt:
                self.note("resend", game, kind)
            try:
                entry_id = await self.stack.retry(
                    lambda: self._xadd(game, kind, fields), bound=XADD_BOUND
                )
            except Unavailable as exc:
                self.note("xadd-error", game, f"{kind}: {exc}")
                return
            self.note("job", game, f"{kind} {entry_id}")
            result = await self.results.next_after(game, entry_id, self.options.result_wait)
            if result is None or result.error_code not in TRANSIENT_CODES:
                return

    async def _xadd(self, game: str, kind: str, fields: dict[str, str]) -> str:
        try:
            if kind == "start":
                version = fields["image_ref"].rsplit(":", 1)[1]
                return await self.compose.start_job(game, version)
            return await self.compose.stop_job(game, fields["reason"])
        except Exception as exc:
            self.note("xadd-error", game, f"{kind}: {type(exc).__name__}")
            raise

    # ------------------------------------------------------------ GM / admin

    async def _rest(
        self, game: str, action: str, body: dict[str, str] | None, caller: str
    ) -> int | None:
        started = time.monotonic()
        pause = 0.5
        while True:
            detail, status = await self._rest_once(game, action, body, caller)
            self.note("rest", game, detail)
            retry = (
                status is None or status in RETRY_STATUS or detail.endswith("operation_in_progress")
            )
            if not retry or time.monotonic() - started > self.options.rest_bound:
                final = f"{action} {detail}" + ("" if not retry else " (gave up)")
                self.games[game].rest_final.append(final)
                self.note("rest-final", game, final)
                return status
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _rest_once(
        self, game: str, action: str, body: dict[str, str] | None, caller: str
    ) -> tuple[str, int | None]:
        try:
            response = await self.compose.post(game, action, body, caller)
        except httpx.HTTPError as exc:
            return type(exc).__name__, None
        if response.status_code == 200:
            return "200", 200
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "?"
        return f"{response.status_code} {code}", response.status_code

    # ------------------------------------------------------------ GM reads

    def start_reader(self) -> None:
        self._reader = asyncio.create_task(self._read_records())

    async def stop_reader(self) -> None:
        self._reader_stop.set()
        if self._reader is not None:
            await self._reader

    async def _read_records(self) -> None:
        rng = random.Random(self.options.seed)
        while not self._reader_stop.is_set():
            games = list(self.games)
            if games:
                game = rng.choice(games)
                try:
                    response = await self.compose.api.get(
                        f"/api/v1/internal/runtimes/{game}", timeout=5
                    )
                    detail = str(response.status_code)
                except httpx.HTTPError as exc:
                    detail = type(exc).__name__
                self.note("read", game, detail)
            await asyncio.sleep(0.2)
