"""The drill's verdict from what the stack shows: pure functions, no I/O.

- **lost**: a job (an entry the drill wrote to `runtime:start_jobs` or
  `runtime:stop_jobs`, counted from the streams themselves, so an XADD whose
  reply was cut off still counts) without a result on `runtime:job_results`.
  Results carry the game, not the job: per game, jobs and results are matched
  in entry-id order, each job to the first unused result written after it
  (the most jobs any assignment can answer). Results left over are repeats.
- **duplicate effects**: a game with more than one engine container, or with
  an engine running although the last command the drill sent it was a stop.
- **stuck**: entries of RTM's consumer groups pending (delivered, never
  acknowledged) or never delivered (lag) after the drill.
- **records wrong**: RTM's record disagrees with Docker and the last command
  (running record after a stop, record naming another container). Not one of
  the three figures, but the state is not right (not converged) while any.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def id_key(entry_id: str) -> tuple[int, int]:
    """Redis stream ids (`<ms>-<seq>`) in their order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Job:
    entry_id: str
    kind: str  # start | stop
    game_id: str


@dataclass(frozen=True)
class Result:
    entry_id: str
    game_id: str
    outcome: str
    error_code: str
    container_id: str = ""
    error_message: str = ""

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str]) -> Result:
        return cls(
            entry_id,
            fields.get("game_id", ""),
            fields.get("outcome", ""),
            fields.get("error_code", ""),
            fields.get("container_id", ""),
            fields.get("error_message", ""),
        )

    @property
    def label(self) -> str:
        return self.outcome + (f" {self.error_code}" if self.error_code else "")


@dataclass
class Matching:
    answered: dict[Job, Result] = field(default_factory=dict)
    lost: list[Job] = field(default_factory=list)
    repeats: list[Result] = field(default_factory=list)


def match(jobs: list[Job], results: list[Result]) -> Matching:
    out = Matching()
    games = {j.game_id for j in jobs} | {r.game_id for r in results}
    for game in sorted(games):
        mine = sorted((j for j in jobs if j.game_id == game), key=lambda j: id_key(j.entry_id))
        answers = sorted(
            (r for r in results if r.game_id == game), key=lambda r: id_key(r.entry_id)
        )
        at = 0
        for job in mine:
            while at < len(answers) and id_key(answers[at].entry_id) < id_key(job.entry_id):
                out.repeats.append(answers[at])
                at += 1
            if at < len(answers):
                out.answered[job] = answers[at]
                at += 1
            else:
                out.lost.append(job)
        out.repeats.extend(answers[at:])
    return out


@dataclass(frozen=True)
class Engine:
    container_id: str
    running: bool
    status: str  # Docker's State.Status


@dataclass(frozen=True)
class GameView:
    """One game from outside: the last command sent, its engines, RTM's record."""

    game_id: str
    last_command: str | None  # start | restart | patch | stop, None before any
    engines: tuple[Engine, ...]
    record: dict[str, Any] | None


def duplicate_effect(view: GameView) -> str | None:
    if len(view.engines) > 1:
        return f"{len(view.engines)} engine containers"
    if view.last_command == "stop" and any(e.running for e in view.engines):
        return "engine running after its last job said stop"
    return None


def record_wrong(view: GameView) -> str | None:
    record = view.record
    running = [e for e in view.engines if e.running]
    if record is None:
        return "engines but no record" if view.engines else None
    status = record.get("status")
    if status == "running" and not running:
        return "record running, no engine running"
    if status != "running" and running:
        return f"record {status}, engine running"
    if view.last_command == "stop" and status == "running":
        return "record running after the last job said stop"
    current = record.get("current_container_id")
    if len(view.engines) == 1 and current and current != view.engines[0].container_id:
        return "record names another container"
    return None


@dataclass
class Verdict:
    jobs: list[Job]
    results: list[Result]
    matching: Matching
    duplicates: dict[str, str]
    wrong_records: dict[str, str]
    pending: dict[str, int]
    lag: dict[str, int]
    flows_unfinished: int = 0

    @property
    def lost(self) -> int:
        return len(self.matching.lost)

    @property
    def stuck(self) -> int:
        return sum(self.pending.values()) + sum(self.lag.values())

    @property
    def right(self) -> bool:
        """The state the drill waits for: all three figures 0, records agree, flows done."""
        return (
            self.lost == 0
            and not self.duplicates
            and self.stuck == 0
            and not self.wrong_records
            and self.flows_unfinished == 0
        )

    @property
    def passed(self) -> bool:
        return self.lost == 0 and not self.duplicates and self.stuck == 0

    def outcomes(self) -> Counter[str]:
        return Counter(r.label for r in self.results)


def verdict(
    jobs: list[Job],
    results: list[Result],
    views: list[GameView],
    pending: dict[str, int],
    lag: dict[str, int],
    flows_unfinished: int = 0,
) -> Verdict:
    duplicates = {v.game_id: why for v in views if (why := duplicate_effect(v))}
    wrong = {v.game_id: why for v in views if (why := record_wrong(v))}
    return Verdict(
        jobs, results, match(jobs, results), duplicates, wrong, pending, lag, flows_unfinished
    )


def last_line(v: Verdict, converged_in: float | None, bound: float) -> str:
    head = (
        f"drill: {len(v.jobs)} jobs, {len(v.results)} results, {v.lost} lost, "
        f"{len(v.duplicates)} duplicate effects, {v.stuck} stuck entries, "
    )
    if converged_in is None:
        return head + f"not converged in {bound:.0f} s"
    return head + f"converged in {converged_in:.1f} s"
