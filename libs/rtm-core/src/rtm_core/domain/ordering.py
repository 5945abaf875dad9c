"""Which job came last: the order of a game's operations across both streams
and REST, and the fencing number that keeps a lost lease from writing.

Redis stream entry ids are `<ms>-<seq>` from one Redis clock, so an id of
`runtime:start_jobs` and one of `runtime:stop_jobs` compare in the order
Lobby wrote them. A REST operation is ordered by the Redis time at which it
took the game's lease (`<ms>-0`), on the same clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GameFence:
    """What the game's record was last written under (table `game_fences`)."""

    #: Fencing number of the newest lease that wrote the record.
    fence: int
    #: Entry id (or REST order id) of the last job applied; None before the first.
    last_job_id: str | None = None


def order_key(entry_id: str) -> tuple[int, int]:
    """`<ms>-<seq>` as a sortable pair; ValueError for anything else."""
    ms, sep, seq = entry_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        raise ValueError(f"not a stream entry id: {entry_id!r}")
    return int(ms), int(seq)


def is_superseded(job_id: str, last_job_id: str | None) -> bool:
    """A job is superseded when a strictly newer one has already been applied.

    Equal ids are the same job delivered again: it runs (idempotently) rather
    than being answered as superseded.
    """
    return last_job_id is not None and order_key(job_id) < order_key(last_job_id)


def order_id_at(ms: int) -> str:
    """The order id of a REST operation decided at Redis time `ms`."""
    return f"{ms}-0"
