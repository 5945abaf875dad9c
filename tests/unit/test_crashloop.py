"""The crash-loop policy's arithmetic (issue 12): backoff, jitter bounds, budget,
window, reset, duplicates, clean exits, attempts. Pure: no fakes needed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from rtm_core.domain.crashloop import (
    Crash,
    CrashHistory,
    CrashPolicy,
    CrashReason,
    Verdict,
    after_failed_attempt,
    begin_attempt,
    lifted,
    on_crash,
    settled,
)
from rtm_core.settings import load_settings

T0 = datetime(2030, 1, 1, tzinfo=UTC)
GAME = "g-1"
NO_JITTER = CrashPolicy(jitter=0.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def crash(n: int, seconds: float, *, uptime: float | None = 1.0, **kw: object) -> Crash:
    values: dict[str, object] = {
        "game_id": GAME,
        "container_id": f"c{n}",
        "reason": CrashReason.CONTAINER_EXITED,
        "exit_code": 1,
        "at": at(seconds),
        "uptime": uptime,
    }
    values.update(kw)
    return Crash(**values)  # type: ignore[arg-type]


def zero() -> float:
    return 0.0


def restarted(policy: CrashPolicy, history: CrashHistory, seconds: float) -> CrashHistory:
    """The scheduled restart ran at `seconds` and succeeded."""
    decision = begin_attempt(policy, history, at(seconds))
    assert decision.verdict is Verdict.PROCEED
    return settled(decision.history)


def test_backoff_grows_by_the_factor_up_to_the_maximum() -> None:
    policy = CrashPolicy(backoff_initial=10, backoff_factor=2, backoff_max=300, jitter=0)
    assert [policy.base_delay(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 300, 300, 300]
    assert policy.base_delay(0) == 10
    assert CrashPolicy(backoff_factor=1).base_delay(7) == 10


def test_a_very_long_loop_never_overflows() -> None:
    assert CrashPolicy().base_delay(10**6) == 300


@pytest.mark.parametrize("jitter", [0.0, 0.2, 0.5, 0.99])
def test_jitter_only_ever_shortens_a_delay_within_its_bound(jitter: float) -> None:
    policy = CrashPolicy(jitter=jitter)
    rng = random.Random(12)
    for n in range(1, 10):
        base = policy.base_delay(n)
        assert policy.delay(n, zero) == base  # draw 0: the full delay
        assert policy.delay(n, lambda: 0.999999) == pytest.approx(base * (1 - jitter), abs=1e-3)
        for _ in range(200):
            assert base * (1 - jitter) <= policy.delay(n, rng.random) <= base


def test_with_jitter_delays_still_grow_when_the_factor_outruns_it() -> None:
    policy = CrashPolicy(backoff_factor=2, jitter=0.4)
    longest_of = [policy.delay(n, zero) for n in range(1, 6)]
    shortest_of = [policy.delay(n, lambda: 0.999999) for n in range(1, 6)]
    assert all(shortest_of[i + 1] > longest_of[i] for i in range(4))


def test_policy_validation_and_settings() -> None:
    with pytest.raises(ValueError):
        CrashPolicy(jitter=1.0)
    with pytest.raises(ValueError):
        CrashPolicy(budget=0)
    settings = load_settings(
        postgres_primary_dsn="postgresql://x/y",
        redis_master_addr="127.0.0.1:1",
        auto_restart_backoff_initial="2s",
        auto_restart_backoff_max="1m",
        auto_restart_budget=3,
        auto_restart_window="10m",
        auto_restart_reset_after="90s",
        auto_restart_count_clean_exit=True,
    )
    assert CrashPolicy.of(settings) == CrashPolicy(
        backoff_initial=2,
        backoff_factor=2,
        backoff_max=60,
        jitter=0.2,
        budget=3,
        window=600,
        reset_after=90,
        count_clean_exit=True,
    )


def test_defaults_are_the_issues() -> None:
    settings = load_settings(postgres_primary_dsn="postgresql://x/y", redis_master_addr="h:1")
    assert CrashPolicy.of(settings) == CrashPolicy()
    assert (CrashPolicy().budget, CrashPolicy().window, CrashPolicy().reset_after) == (5, 1800, 600)
    assert not settings.auto_restart and not settings.patch_health_gate


def test_a_crash_schedules_the_restart_after_the_first_delay() -> None:
    decision = on_crash(NO_JITTER, None, crash(1, 0), zero)
    assert decision.verdict is Verdict.SCHEDULED and decision.delay == 10
    h = decision.history
    assert (h.pending_container_id, h.pending_reason, h.next_restart_at) == (
        "c1",
        "container_exited",
        at(10),
    )
    assert (h.consecutive, h.restart_times, h.quarantined) == (1, [], False)
    assert h.in_backoff and not h.is_due(at(9.9)) and h.is_due(at(10))


def test_the_budget_allows_exactly_n_restarts_per_window_then_quarantines() -> None:
    policy = CrashPolicy(jitter=0, budget=3, window=1800, reset_after=600)
    history: CrashHistory | None = None
    delays = []
    now = 0.0
    for n in range(1, 4):
        decision = on_crash(policy, history, crash(n, now), zero)
        assert decision.verdict is Verdict.SCHEDULED
        delays.append(decision.delay)
        now += decision.delay
        history = restarted(policy, decision.history, now)
        now += 1  # the engine runs a second, then crashes again
    assert delays == [10, 20, 40]
    assert history is not None and len(history.restart_times) == 3

    final = on_crash(policy, history, crash(4, now), zero)
    assert final.verdict is Verdict.QUARANTINED
    q = final.history
    assert q.quarantined and q.quarantined_at == at(now) and not q.in_backoff
    assert (q.last_container_id, q.last_exit_code) == ("c4", 1)
    # Quarantined: further crashes are noted, nothing is scheduled.
    later = on_crash(policy, q, crash(5, now + 5), zero)
    assert (
        later.verdict is Verdict.ALREADY_QUARANTINED and later.history.pending_container_id is None
    )


def test_the_window_slides() -> None:
    policy = CrashPolicy(jitter=0, budget=2, window=100, reset_after=10**6)
    history = restarted(policy, on_crash(policy, None, crash(1, 0), zero).history, 10)
    history = restarted(policy, on_crash(policy, history, crash(2, 20), zero).history, 40)
    # Both restarts (at 10 and 40) are in the window at t=100: the budget is spent.
    assert on_crash(policy, history, crash(3, 100), zero).verdict is Verdict.QUARANTINED
    # At t=111 the restart at 10 has left the window: one more is allowed.
    decision = on_crash(policy, history, crash(3, 111), zero)
    assert decision.verdict is Verdict.SCHEDULED
    assert decision.history.restart_times == [at(40)]


def test_running_long_enough_resets_the_backoff_not_the_budget() -> None:
    policy = CrashPolicy(jitter=0, budget=5, reset_after=600)
    history = restarted(policy, on_crash(policy, None, crash(1, 0), zero).history, 10)
    second = on_crash(policy, history, crash(2, 20, uptime=10), zero)
    assert (second.delay, second.history.consecutive) == (20, 2)
    history = restarted(policy, second.history, 40)
    healthy = on_crash(policy, history, crash(3, 700, uptime=660), zero)
    assert (healthy.delay, healthy.history.consecutive) == (10, 1)
    assert len(healthy.history.restart_times) == 2  # still counted in the window
    unknown = on_crash(policy, history, crash(3, 700, uptime=None), zero)
    assert unknown.delay == 40


def test_the_same_crash_reported_twice_counts_once() -> None:
    first = on_crash(NO_JITTER, None, crash(1, 0), zero)
    again = on_crash(NO_JITTER, first.history, crash(1, 0.5, reason=CrashReason.PROBE_FAILED), zero)
    assert again.verdict is Verdict.DUPLICATE and not again.changed
    assert again.history == first.history
    # …also after its restart ran (a redelivered event of the old container).
    after = restarted(NO_JITTER, first.history, 10)
    assert on_crash(NO_JITTER, after, crash(1, 11), zero).verdict is Verdict.DUPLICATE


def test_a_clean_exit_counts_only_when_configured() -> None:
    clean = crash(1, 0, exit_code=0)
    assert on_crash(CrashPolicy(), None, clean, zero).verdict is Verdict.NOT_COUNTED
    assert (
        on_crash(CrashPolicy(count_clean_exit=True), None, clean, zero).verdict is Verdict.SCHEDULED
    )
    oom = crash(2, 0, reason=CrashReason.CONTAINER_OOM, exit_code=137)
    probe = crash(3, 0, reason=CrashReason.PROBE_FAILED, exit_code=None)
    assert on_crash(CrashPolicy(), None, oom, zero).verdict is Verdict.SCHEDULED
    assert on_crash(CrashPolicy(), None, probe, zero).verdict is Verdict.SCHEDULED


def test_an_attempt_is_counted_once_even_when_rtm_dies_during_it() -> None:
    scheduled = on_crash(NO_JITTER, None, crash(1, 0), zero).history
    begun = begin_attempt(NO_JITTER, scheduled, at(10))
    assert begun.verdict is Verdict.PROCEED and begun.history.restart_times == [at(10)]
    # RTM died; the next leader finds the same attempt due and begins it again.
    again = begin_attempt(NO_JITTER, begun.history, at(15))
    assert again.verdict is Verdict.PROCEED and again.history.restart_times == [at(10)]


def test_a_failed_attempt_is_retried_after_a_longer_delay_and_counts() -> None:
    policy = CrashPolicy(jitter=0, budget=2)
    scheduled = on_crash(policy, None, crash(1, 0), zero).history
    begun = begin_attempt(policy, scheduled, at(10)).history
    retry = after_failed_attempt(policy, begun, at(11), zero)
    assert retry.delay == 20 and retry.history.next_restart_at == at(31)
    assert retry.history.pending_container_id == "c1" and not retry.history.attempt_counted
    second = begin_attempt(policy, retry.history, at(31))
    assert second.verdict is Verdict.PROCEED and len(second.history.restart_times) == 2
    failed_again = after_failed_attempt(policy, second.history, at(32), zero).history
    third = begin_attempt(policy, failed_again, at(72))
    assert third.verdict is Verdict.QUARANTINED and third.history.quarantined


def test_lifting_starts_over_but_remembers_the_last_crash() -> None:
    policy = CrashPolicy(jitter=0, budget=1)
    history = restarted(policy, on_crash(policy, None, crash(1, 0), zero).history, 10)
    quarantined = on_crash(policy, history, crash(2, 20), zero).history
    fresh = lifted(quarantined)
    assert not fresh.quarantined and fresh.restart_times == [] and fresh.consecutive == 0
    assert on_crash(policy, fresh, crash(2, 30), zero).verdict is Verdict.DUPLICATE
    assert on_crash(policy, fresh, crash(3, 30), zero).verdict is Verdict.SCHEDULED


def test_the_input_history_is_never_changed() -> None:
    original = on_crash(NO_JITTER, None, crash(1, 0), zero).history
    snapshot = CrashHistory(**vars(original))
    snapshot.restart_times = list(original.restart_times)
    begin_attempt(NO_JITTER, original, at(10))
    after_failed_attempt(NO_JITTER, original, at(10), zero)
    on_crash(NO_JITTER, original, crash(2, 5), zero)
    assert original == snapshot
