"""The crash-loop policy of automatic restarts (issue 12), as arithmetic.

An engine that dies (`container_exited`, `container_oom`) or fails its
probes (`probe_failed`) while its record is `running` is restarted after a
backoff delay, at most `budget` times per sliding `window`; the crash that
finds the budget spent quarantines the game (no more automatic restarts
until an admin lifts it). The delay after the n-th crash in a row is

    min(initial x factor^(n-1), max) x (1 - jitter x u),   u uniform in [0, 1)

so jitter only ever shortens a delay (never past `max`), and an engine that
ran `reset_after` or longer before it died starts the sequence over at
`initial`. The budget counts restart *attempts*: a restart that itself fails
counts, and is retried after the next delay.

`CrashHistory` is the durable state (table `crash_history`): everything here
is a pure function of it, the policy, the crash and a random draw, so the
same crash seen twice (a redelivered health event, the loop's own sweep) is
recognised by its container id and counted once, and an RTM restart
continues exactly where the last one stopped.

Pure: no I/O, no clock, no randomness of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from rtm_core.domain.vocabulary import HealthEventType


class CrashReason(StrEnum):
    """What ended (or wedged) the engine: the health event type that reported it."""

    CONTAINER_EXITED = HealthEventType.CONTAINER_EXITED.value
    CONTAINER_OOM = HealthEventType.CONTAINER_OOM.value
    PROBE_FAILED = HealthEventType.PROBE_FAILED.value


class PolicySettings(Protocol):
    """The settings the policy reads (`rtm_core.settings.Settings` has them)."""

    @property
    def auto_restart_backoff_initial(self) -> float: ...
    @property
    def auto_restart_backoff_factor(self) -> float: ...
    @property
    def auto_restart_backoff_max(self) -> float: ...
    @property
    def auto_restart_backoff_jitter(self) -> float: ...
    @property
    def auto_restart_budget(self) -> int: ...
    @property
    def auto_restart_window(self) -> float: ...
    @property
    def auto_restart_reset_after(self) -> float: ...
    @property
    def auto_restart_count_clean_exit(self) -> bool: ...


@dataclass(frozen=True)
class CrashPolicy:
    backoff_initial: float = 10.0
    backoff_factor: float = 2.0
    backoff_max: float = 300.0
    #: Fraction in [0, 1): each delay is drawn from [delay x (1 - jitter), delay].
    jitter: float = 0.2
    budget: int = 5
    window: float = 1800.0
    reset_after: float = 600.0
    count_clean_exit: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.backoff_factor < 1 or self.backoff_initial <= 0:
            raise ValueError("backoff must start positive and never shrink")
        if self.budget < 1:
            raise ValueError("budget must allow at least one restart")

    @classmethod
    def of(cls, settings: PolicySettings) -> CrashPolicy:
        return cls(
            backoff_initial=settings.auto_restart_backoff_initial,
            backoff_factor=settings.auto_restart_backoff_factor,
            backoff_max=settings.auto_restart_backoff_max,
            jitter=settings.auto_restart_backoff_jitter,
            budget=settings.auto_restart_budget,
            window=settings.auto_restart_window,
            reset_after=settings.auto_restart_reset_after,
            count_clean_exit=settings.auto_restart_count_clean_exit,
        )

    def base_delay(self, consecutive: int) -> float:
        """Seconds before the restart that follows the `consecutive`-th crash in a
        row (1-based), before jitter: initial x factor^(n-1), capped at max."""
        delay = self.backoff_initial
        for _ in range(max(consecutive - 1, 0)):
            delay *= self.backoff_factor
            if delay >= self.backoff_max:  # stop early: a long loop never overflows
                break
        return min(delay, self.backoff_max)

    def delay(self, consecutive: int, draw: Callable[[], float]) -> float:
        """`base_delay` shortened by up to `jitter` of itself; `draw()` in [0, 1)."""
        return self.base_delay(consecutive) * (1.0 - self.jitter * draw())

    def counts(self, reason: CrashReason, exit_code: int | None) -> bool:
        """A clean exit (code 0) counts only when configured to; everything else does."""
        if reason is CrashReason.CONTAINER_EXITED and exit_code == 0:
            return self.count_clean_exit
        return True


@dataclass(kw_only=True)
class CrashHistory:
    """One game's crash-loop state (table `crash_history`, one row per game)."""

    game_id: str
    #: Crashes in a row since the last reset: the backoff's exponent.
    consecutive: int = 0
    #: Restart attempts within the window (older ones are pruned as time passes).
    restart_times: list[datetime] = field(default_factory=list)
    #: The crashed container awaiting its restart, when one is scheduled.
    pending_container_id: str | None = None
    pending_reason: str | None = None
    next_restart_at: datetime | None = None
    #: The scheduled attempt was already counted in `restart_times` (it began; an
    #: RTM that died during it must not count it twice).
    attempt_counted: bool = False
    #: The last crash seen: a second report of the same container is the same crash.
    last_container_id: str | None = None
    last_reason: str | None = None
    last_exit_code: int | None = None
    last_crash_at: datetime | None = None
    quarantined: bool = False
    quarantined_at: datetime | None = None

    @property
    def in_backoff(self) -> bool:
        """A restart is scheduled and the game is not quarantined."""
        return self.pending_container_id is not None and not self.quarantined

    def is_due(self, now: datetime) -> bool:
        return self.in_backoff and self.next_restart_at is not None and self.next_restart_at <= now

    def restarts_in_window(self, now: datetime, window: float) -> int:
        start = now - timedelta(seconds=window)
        return sum(1 for t in self.restart_times if t > start)

    def prune(self, now: datetime, window: float) -> None:
        start = now - timedelta(seconds=window)
        self.restart_times = [t for t in self.restart_times if t > start]


@dataclass(frozen=True)
class Crash:
    """One observed death (or probe failure) of a game's current engine."""

    game_id: str
    container_id: str
    reason: CrashReason
    exit_code: int | None
    at: datetime
    #: Seconds the engine ran before this crash, when known.
    uptime: float | None = None


class Verdict(StrEnum):
    SCHEDULED = "scheduled"
    QUARANTINED = "quarantined"
    #: This container's crash is already known (a redelivered event, the sweep).
    DUPLICATE = "duplicate"
    #: The game is quarantined: the crash is noted, nothing is scheduled.
    ALREADY_QUARANTINED = "already_quarantined"
    #: A clean exit while clean exits do not count: left alone.
    NOT_COUNTED = "not_counted"
    #: A due restart may go ahead (`begin_attempt`).
    PROCEED = "proceed"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    #: The history to store (a copy; the input is never changed).
    history: CrashHistory
    #: Seconds until the scheduled restart (SCHEDULED only).
    delay: float = 0.0

    @property
    def changed(self) -> bool:
        return self.verdict not in {Verdict.DUPLICATE, Verdict.NOT_COUNTED}


def _quarantine(history: CrashHistory, at: datetime) -> Decision:
    history.quarantined = True
    history.quarantined_at = at
    history.pending_container_id = None
    history.pending_reason = None
    history.next_restart_at = None
    history.attempt_counted = False
    return Decision(Verdict.QUARANTINED, history)


def on_crash(
    policy: CrashPolicy,
    history: CrashHistory | None,
    crash: Crash,
    draw: Callable[[], float],
) -> Decision:
    """Schedule the restart after `crash`, or quarantine the game when the window's
    budget is already spent."""
    h = copy.deepcopy(history) if history is not None else CrashHistory(game_id=crash.game_id)
    if crash.container_id in {h.last_container_id, h.pending_container_id}:
        return Decision(Verdict.DUPLICATE, h)
    if not policy.counts(crash.reason, crash.exit_code):
        return Decision(Verdict.NOT_COUNTED, h)
    h.last_container_id = crash.container_id
    h.last_reason = crash.reason.value
    h.last_exit_code = crash.exit_code
    h.last_crash_at = crash.at
    if h.quarantined:
        return Decision(Verdict.ALREADY_QUARANTINED, h)
    h.prune(crash.at, policy.window)
    if crash.uptime is not None and crash.uptime >= policy.reset_after:
        h.consecutive = 0
    if len(h.restart_times) >= policy.budget:
        return _quarantine(h, crash.at)
    h.consecutive += 1
    delay = policy.delay(h.consecutive, draw)
    h.pending_container_id = crash.container_id
    h.pending_reason = crash.reason.value
    h.next_restart_at = crash.at + timedelta(seconds=delay)
    h.attempt_counted = False
    return Decision(Verdict.SCHEDULED, h, delay)


def begin_attempt(policy: CrashPolicy, history: CrashHistory, now: datetime) -> Decision:
    """Count a due restart before it runs, once per scheduled attempt. A retry
    after a failed attempt that finds the budget spent quarantines instead."""
    h = copy.deepcopy(history)
    if h.attempt_counted:
        return Decision(Verdict.PROCEED, h)  # RTM died during this attempt: not again
    h.prune(now, policy.window)
    if len(h.restart_times) >= policy.budget:
        return _quarantine(h, now)
    h.restart_times.append(now)
    h.attempt_counted = True
    return Decision(Verdict.PROCEED, h)


def after_failed_attempt(
    policy: CrashPolicy, history: CrashHistory, now: datetime, draw: Callable[[], float]
) -> Decision:
    """The restart itself failed (pull, create, Docker): try again after the next delay."""
    h = copy.deepcopy(history)
    h.consecutive += 1
    delay = policy.delay(h.consecutive, draw)
    h.next_restart_at = now + timedelta(seconds=delay)
    h.attempt_counted = False
    return Decision(Verdict.SCHEDULED, h, delay)


def settled(history: CrashHistory) -> CrashHistory:
    """The pending restart happened, or no longer applies (someone else replaced,
    stopped or removed the engine): nothing is scheduled any more."""
    h = copy.deepcopy(history)
    h.pending_container_id = None
    h.pending_reason = None
    h.next_restart_at = None
    h.attempt_counted = False
    return h


def lifted(history: CrashHistory) -> CrashHistory:
    """An admin lifted the quarantine (or a command relaunched the engine): the
    policy starts over. The last crash is kept, so it is never counted again."""
    h = settled(history)
    h.consecutive = 0
    h.restart_times = []
    h.quarantined = False
    h.quarantined_at = None
    return h
