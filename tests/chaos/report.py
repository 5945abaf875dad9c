"""The drill's report: markdown, what was injected when and the figures."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chaos.load import Event
from chaos.tally import Verdict, id_key

if TYPE_CHECKING:
    from chaos.drill import DrillRecord

#: At most this many games listed per problem kind.
LISTED = 20
#: rtm-jobs log messages counted per fault window besides every warning and error.
COUNTED = ("claimed idle entries",)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _at(record: DrillRecord, t: float | None) -> str:
    if t is None:
        return "—"
    return f"{_utc(record.clock.wall(t))} (t+{t:.1f})"


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in counter.most_common()) or "—"


def _per_stream(values: dict[str, int]) -> str:
    return ", ".join(f"`{stream}` {n}" for stream, n in values.items())


def render(record: DrillRecord) -> str:
    v = record.verdict
    assert v is not None
    o = record.options
    day = datetime.fromtimestamp(record.started, UTC).strftime("%Y-%m-%d")
    kind = "CI variant" if o.ci else "full drill"
    out = [
        f"# Chaos drill {day} ({kind})",
        "",
        "Written by `tests/chaos` (`make chaos` / `make chaos-ci`; docs/runbook.md, "
        '"Chaos drill"). Times are UTC; t+ is seconds since the drill started '
        f"({_utc(record.started)}); it ran {record.finished - record.started:.0f} s.",
        "",
        "```",
        record.line,
        "```",
        "",
        f"**{'PASSED' if v.passed and record.converged_in is not None else 'FAILED'}**: "
        "lost, duplicate effects and stuck entries must all be 0"
        + (
            "."
            if record.converged_in is not None
            else f", and the state must be right within {o.converge_bound:.0f} s of the last fault."
        ),
        "",
        *_setup(record),
        *_timeline(record),
        *_figures(record, v),
        *_windows(record),
        *_problems(record, v),
    ]
    if record.notes:
        out += ["## Notes", "", *[f"- {n}" for n in record.notes], ""]
    return "\n".join(out).rstrip() + "\n"


def _setup(record: DrillRecord) -> list[str]:
    o = record.options
    plans = record.plans
    mix = Counter(f"{p.start_via} start → {p.middle} (REST) → {p.stop_via} stop" for p in plans)
    out = ["## Setup", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in record.machine.items()]
    out += [f"| {k} | {v} |" for k, v in record.stack.items()]
    out += [
        f"| games | {o.games} in {max(p.wave for p in plans) + 1 if plans else 0} waves, "
        f"{sum(p.stream_jobs for p in plans)} stream jobs planned |",
        f"| convergence bound | {o.converge_bound:.0f} s after the last fault |",
        "",
        "Each game, as Lobby and GM drive one: start (stream, or REST by GM), a pause "
        f"of {o.play[0]:g} to {o.play[1]:g} s, restart (REST, GM) or patch "
        "`galaxy/test-engine:1.0.0 → 1.0.1` (REST, admin), a pause, stop (stream, or "
        "REST by GM). A wave of games is launched before each fault, which goes in once "
        "the wave is answering; earlier waves are still in their later steps. REST "
        "commands are retried (refused connection, 5xx, `operation_in_progress`) for "
        f"up to {o.rest_bound:.0f} s; Lobby writes a stream job again after a transient "
        f"failure result (at most {o.lobby_attempts} jobs per step). A GM reader polls "
        "records throughout.",
        "",
        "| plan | games |",
        "|---|---|",
        *[f"| {k} | {n} |" for k, n in sorted(mix.items())],
        "",
    ]
    return out


def _timeline(record: DrillRecord) -> list[str]:
    out = [
        "## Timeline of injections",
        "",
        "| # | fault | injected | released | whole again | observations |",
        "|---|---|---|---|---|---|",
    ]
    for n, i in enumerate(record.injections, 1):
        whole = "—" if i.whole is None else f"{_at(record, i.whole)}, {i.whole - i.end:.1f} s"
        out.append(
            f"| {n} | {i.title} | {_at(record, i.injected)} | "
            f"{_at(record, i.released) if i.released is not None else '(instant)'} | {whole} | "
            + "; ".join(i.observations).replace("|", "\\|")
            + " |"
        )
    if not record.injections:
        out.append("| — | no fault injected | | | | |")
    converged = (
        "not within the bound"
        if record.converged_in is None
        else f"{record.converged_in:.1f} s after the last fault ended "
        f"({_at(record, record.last_fault_end)})"
    )
    return [*out, "", f"State right (converged): {converged}.", ""]


def _figures(record: DrillRecord, v: Verdict) -> list[str]:
    events = record.events
    rest = [e for e in events if e.kind == "rest"]
    finals = Counter(f.split(" (")[0] for fs in record.rest_finals.values() for f in fs)
    reads = Counter(e.detail for e in events if e.kind == "read")
    jobs = Counter(j.kind for j in v.jobs)
    replays = sum(1 for r in v.results if r.error_code == "replay_no_op")
    return [
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| stream jobs written | {len(v.jobs)} ({jobs['start']} start, {jobs['stop']} stop) |",
        f"| Lobby re-sends after a transient failure | "
        f"{sum(1 for e in events if e.kind == 'resend')} |",
        f"| results for them | {len(v.results)}: {_counts(v.outcomes())} |",
        f"| of which `replay_no_op` | {replays} |",
        f"| repeat results (more than one for a job) | {len(v.matching.repeats)} |",
        f"| **lost** (job without a result) | **{v.lost}** |",
        f"| **duplicate effects** | **{len(v.duplicates)}** |",
        f"| **stuck entries** (pending + never delivered) | **{v.stuck}** "
        f"({_per_stream(v.pending)} pending; {_per_stream(v.lag)} never delivered) |",
        f"| records disagreeing with Docker / the last job | {len(v.wrong_records)} |",
        f"| game flows unfinished at the end | {v.flows_unfinished} |",
        f"| REST commands | {sum(len(f) for f in record.rest_finals.values())} final answers: "
        f"{_counts(finals)}; {len(rest)} attempts |",
        f"| REST attempts not answered 200 | "
        f"{_counts(Counter(e.detail for e in rest if e.detail != '200'))} |",
        f"| GM record reads | {_counts(reads)} |",
        f"| dead letters of this run (`runtime:dead_letter`) | {record.dead_letters} |",
        f"| game leases of this run still held after the drill | {len(record.leases_held)} |",
        "",
    ]


def _windows(record: DrillRecord) -> list[str]:
    """Per fault, from its injection to the next one's (the last: to the end)."""
    if not record.injections:
        return []
    end = record.finished - record.clock.wall0
    bounds = [i.injected for i in record.injections] + [end]
    out = [
        "## Per fault window",
        "",
        "From each injection to the next (the last one: to the end). Log lines are "
        "rtm-jobs' own (all replicas), by message.",
        "",
        "| fault | results | REST attempts not 200 | failed reads | rtm-jobs log lines |",
        "|---|---|---|---|---|",
    ]
    jobs_log = record.logs.get("rtm-jobs", [])
    for n, i in enumerate(record.injections):
        lo, hi = bounds[n], bounds[n + 1]
        inside: list[Event] = [e for e in record.events if lo <= e.t < hi]
        results = Counter(e.detail for e in inside if e.kind == "result")
        rest = Counter(e.detail for e in inside if e.kind == "rest" and e.detail != "200")
        reads = sum(1 for e in inside if e.kind == "read" and e.detail != "200")
        wall_lo, wall_hi = record.clock.wall(lo), record.clock.wall(hi)
        logs = Counter(
            msg
            for t, level, msg in jobs_log
            if wall_lo <= t < wall_hi and (level in ("WARNING", "ERROR") or msg in COUNTED)
        )
        out.append(
            f"| {i.name} | {_counts(results)} | {_counts(rest)} | {reads} | {_counts(logs)} |"
        )
    errors: Counter[str] = Counter()
    for service, lines in record.logs.items():
        errors.update(f"{service}: {msg}" for _t, level, msg in lines if level == "ERROR")
    out += ["", f"Error-level log lines over the whole drill: {_counts(errors)}.", ""]
    return out


def _problems(record: DrillRecord, v: Verdict) -> list[str]:
    out: list[str] = []
    if v.matching.lost:
        out += ["### Lost jobs", ""]
        out += [f"- {j.game_id}: {j.kind} job {j.entry_id}" for j in v.matching.lost[:LISTED]]
        out.append("")
    for title, found in (("Duplicate effects", v.duplicates), ("Wrong records", v.wrong_records)):
        if found:
            out += [f"### {title}", ""]
            out += [f"- {g}: {why}" for g, why in sorted(found.items())[:LISTED]]
            out.append("")
    failures = sorted(
        (r for r in v.results if r.outcome != "success"), key=lambda r: id_key(r.entry_id)
    )
    if failures:
        jobs = {r.entry_id: j for j, r in v.matching.answered.items()}
        out += [
            "### Failure results",
            "",
            "Not lost (each job was answered), but Lobby had to act on these answers; an "
            "outage of PostgreSQL, Redis or Docker should have been retried by rtm-jobs "
            "(`service_unavailable`, `docker_unavailable`), not answered otherwise.",
            "",
        ]
        for r in failures[:LISTED]:
            job = jobs.get(r.entry_id)
            what = f"{job.kind} job {job.entry_id}" if job else "repeat result"
            message = r.error_message.replace("\n", " ")[:300]
            out.append(f"- {r.game_id}: {what} → `{r.error_code}`: {message}")
        out.append("")
    if record.leases_held:
        out += [
            "### Game leases still held",
            "",
            "Nothing of this run should hold a game's lease after it: a lease that is "
            "still renewed belongs to an operation that never finished.",
            "",
            *[f"- `{k}` (ttl {ms} ms)" for k, ms in sorted(record.leases_held.items())[:LISTED]],
            "",
        ]
    gave_up = {g: [f for f in fs if "gave up" in f] for g, fs in record.rest_finals.items()}
    gave_up = {g: fs for g, fs in gave_up.items() if fs}
    if gave_up:
        out += ["### REST commands given up", ""]
        out += [f"- {g}: {'; '.join(fs)}" for g, fs in sorted(gave_up.items())[:LISTED]]
        out.append("")
    if out:
        out = ["## Problems", "", *out]
    return out
