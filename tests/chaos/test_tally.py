"""The drill's own arithmetic (no stack): job/result matching, the three figures,
the last line, the plan mix and the report. The drill itself runs with
`make chaos` / `make chaos-ci`, never under pytest."""

from __future__ import annotations

from pathlib import Path

from chaos.drill import DrillRecord
from chaos.faults import Injection
from chaos.load import Clock, Event
from chaos.plan import FAULTS, Options, pick_faults, plan_games
from chaos.report import render
from chaos.tally import Engine, GameView, Job, Result, last_line, match, verdict


def _job(entry_id: str, game: str = "g", kind: str = "start") -> Job:
    return Job(entry_id, kind, game)


def _result(entry_id: str, game: str = "g", code: str = "") -> Result:
    return Result(entry_id, game, "success", code)


def test_each_job_takes_the_first_result_written_after_it() -> None:
    jobs = [_job("10-0"), _job("20-0", kind="stop")]
    results = [_result("15-0"), _result("25-0")]
    m = match(jobs, results)
    assert m.answered == {jobs[0]: results[0], jobs[1]: results[1]}
    assert m.lost == [] and m.repeats == []


def test_a_second_result_is_a_repeat_and_a_job_without_one_is_lost() -> None:
    jobs = [_job("10-0"), _job("20-0", kind="stop"), _job("30-0", game="h")]
    results = [_result("11-0"), _result("12-0", code="replay_no_op"), _result("21-0")]
    m = match(jobs, results)
    assert [r.entry_id for r in m.repeats] == ["12-0"]
    assert m.lost == [jobs[2]]
    # Ids compare as numbers, not text ("9-0" < "10-0").
    assert match([_job("9-0")], [_result("10-0")]).lost == []


def test_a_late_answer_still_counts_for_the_earliest_job_without_one() -> None:
    # The start's result came after the stop was written: the stop's is missing.
    jobs = [_job("10-0"), _job("20-0", kind="stop")]
    m = match(jobs, [_result("25-0")])
    assert len(m.answered) == 1 and len(m.lost) == 1


def _view(last: str, engines: list[Engine], status: str | None) -> GameView:
    record = None if status is None else {"status": status, "current_container_id": "a"}
    return GameView("g", last, tuple(engines), record)


def test_duplicate_effects_and_wrong_records() -> None:
    up, down = Engine("a", True, "running"), Engine("a", False, "exited")
    other = Engine("b", False, "exited")
    pending = {"s": 0}
    fine = verdict([], [], [_view("stop", [down], "stopped")], pending, pending)
    assert fine.right and fine.passed
    two = verdict([], [], [_view("stop", [down, other], "stopped")], pending, pending)
    assert two.duplicates == {"g": "2 engine containers"}
    running = verdict([], [], [_view("stop", [up], "running")], pending, pending)
    assert running.duplicates and running.wrong_records and not running.passed
    stale = verdict([], [], [_view("stop", [down], "running")], pending, pending)
    assert not stale.duplicates and stale.passed and not stale.right
    assert verdict([], [], [_view("stop", [], None)], pending, pending).right
    assert not verdict([], [], [], {"s": 1}, {"s": 0}).passed


def test_last_line() -> None:
    v = verdict([_job("1-0")], [_result("2-0")], [], {"s": 0}, {"s": 0})
    assert last_line(v, 12.34, 90) == (
        "drill: 1 jobs, 1 results, 0 lost, 0 duplicate effects, 0 stuck entries, "
        "converged in 12.3 s"
    )
    assert last_line(v, None, 90).endswith("0 stuck entries, not converged in 90 s")


def _options(games: int = 20) -> Options:
    return Options(games=games, faults=tuple(FAULTS), ci=True, report=Path("r.md"))


def test_plan_mix_and_waves() -> None:
    assert pick_faults(["docker-restart"])[-1] == "pause-jobs"
    plans = plan_games([f"g{i}" for i in range(20)], 9, _options())
    sizes = [sum(1 for p in plans if p.wave == w) for w in range(9)]
    assert sum(sizes) == 20 and max(sizes) - min(sizes) <= 1
    assert {p.start_via for p in plans} == {"stream", "rest"}
    assert {p.stop_via for p in plans} == {"stream", "rest"}
    assert {p.middle for p in plans} == {"restart", "patch"}


def test_report_names_the_faults_and_ends_with_the_figures() -> None:
    clock = Clock()
    plans = plan_games(["g"], 1, _options(1))
    v = verdict([_job("1-0")], [_result("2-0")], [], {"s": 0}, {"s": 0})
    record = DrillRecord(
        _options(1), clock.wall0, clock, {"cores": "2"}, {"stack label": "compose"}, plans
    )
    record.injections = [Injection("kill-api", injected=1.0, whole=3.0)]
    record.events = [Event(2.0, "result", "g", "success")]
    record.verdict, record.converged_in, record.finished = v, 4.0, clock.wall0 + 10
    record.line = last_line(v, 4.0, 90)
    text = render(record)
    assert record.line in text and "SIGKILL rtm-api" in text and "PASSED" in text
