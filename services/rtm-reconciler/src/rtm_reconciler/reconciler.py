"""The reconcile pass (SPEC §8): PostgreSQL records brought in line with Docker.

One pass lists this stack's containers once and the live records once, plans
the drifts in memory, then settles them with the core's batched drift call
(`Lifecycle.reconcile_many`, `RECONCILE_BATCH` games a call: one lease
pipeline, one transaction and one publish per batch rather than per game).
Every drift is re-checked by the core under the game's lease, so a start,
stop or restart that raced the pass wins and the pass writes nothing for
that game.

Drifts, per game:

- record `running`, its container gone → `reconcile_dispose`;
- record `running`, its container there but not running → `reconcile_observed_exited`;
- a container of ours (owner + stack labels) and no live record (none, or
  `removed`) → `reconcile_adopt`.

Before planning, a health-gated patch an RTM left unfinished (issue 12,
`patch_progress`) is rolled back under its game's lease
(`Lifecycle.finish_interrupted_patches`).

A record `running` whose container is gone while *another* container of ours
carries the game's labels (say an operator's `docker run` after the daemon
restart dropped RTM's engine): the record is disposed first (its container did
disappear: op row and `container_disappeared` for the old id), then that
container is adopted in the same pass. When the record's own container still
exists, the record keeps pointing at it (exited → `observed_exited`) and any
other container for the game is left alone and logged
(`unrecorded container left alone`): RTM never stops or removes a container it
has no record for, and it does not swap a live record onto a container an
operator started by hand. The next `start` of that game retires such
leftovers as it always does.

Containers without the owner label, of another stack, or without a valid
`com.galaxy.game_id` are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rtm_core.domain.engine import ContainerInfo
from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import (
    LABEL_OWNER,
    LABEL_STACK,
    OWNER,
    OpKind,
    RuntimeStatus,
    container_name,
    is_valid_game_id,
)
from rtm_core.lifecycle import Drift, DriftOutcome, DriftResult
from rtm_core.observability import tracer
from rtm_reconciler.bootstrap import ReconcilerDeps
from rtm_reconciler.passes import GamePass, error_fields

log = logging.getLogger("rtm_reconciler.reconciler")

#: Games settled together by one `Lifecycle.reconcile_many`: their leases are
#: held for the batch (a few round trips and one transaction), so a batch is
#: kept well under the lease TTL even with a thousand drifts.
RECONCILE_BATCH = 250


@dataclass(frozen=True)
class GamePlan:
    """What one pass will ask the core to do for one game."""

    game_id: str
    record_drift: OpKind | None = None  # RECONCILE_DISPOSE | RECONCILE_OBSERVED_EXITED
    adopt: ContainerInfo | None = None
    left_alone: tuple[ContainerInfo, ...] = ()
    record_container_id: str | None = None


@dataclass
class PassReport:
    records: int = 0
    containers: int = 0
    disposed: int = 0
    observed_exited: int = 0
    adopted: int = 0
    left_alone: int = 0
    ignored_containers: int = 0
    #: Health-gated patches an RTM left unfinished, rolled back first (issue 12).
    patches_rolled_back: int = 0
    skipped_busy: int = 0
    failed: int = 0
    aborted: int = 0
    list_ms: float = 0.0
    records_ms: float = 0.0
    settle_ms: float = 0.0
    duration_ms: float = 0.0

    def fields(self) -> dict[str, float | int]:
        return asdict(self)


def _ours(container: ContainerInfo, stack: str) -> bool:
    # The daemon already filtered on these labels; checked again because a
    # container of another deployment must never be touched, whatever Docker returns.
    labels = container.labels
    return labels.get(LABEL_OWNER) == OWNER and labels.get(LABEL_STACK) == stack


def _adoption_choice(candidates: list[ContainerInfo], game_id: str) -> ContainerInfo:
    """One container per game is adopted: a running one, then RTM's name, then by id."""
    name = container_name(game_id)
    return min(candidates, key=lambda c: (not c.running, c.name != name, c.id))


def plan_pass(
    records: Sequence[RuntimeRecord], containers: Sequence[ContainerInfo], stack: str
) -> tuple[list[GamePlan], list[ContainerInfo]]:
    """Plans per game (only games with something to do or to report), and the
    containers ignored for lacking our labels or a valid game_id."""
    ignored: list[ContainerInfo] = []
    by_id: dict[str, ContainerInfo] = {}
    by_game: dict[str, list[ContainerInfo]] = {}
    for c in containers:
        if not _ours(c, stack) or not is_valid_game_id(c.game_id):
            ignored.append(c)
            continue
        by_id[c.id] = c
        by_game.setdefault(c.game_id or "", []).append(c)

    live = {r.game_id: r for r in records if r.status != RuntimeStatus.REMOVED}
    plans: list[GamePlan] = []
    for game_id in sorted(live.keys() | by_game.keys()):
        record = live.get(game_id)
        own_id = record.current_container_id if record else None
        drift: OpKind | None = None
        if record is not None and record.status == RuntimeStatus.RUNNING:
            own = by_id.get(own_id or "")
            if own is None:
                drift = OpKind.RECONCILE_DISPOSE
            elif not own.running:
                drift = OpKind.RECONCILE_OBSERVED_EXITED
        others = [c for c in by_game.get(game_id, []) if c.id != own_id]
        adopt: ContainerInfo | None = None
        # Adoption only where no live record remains (none, or one this pass disposes).
        if others and (record is None or drift is OpKind.RECONCILE_DISPOSE):
            adopt = _adoption_choice(others, game_id)
            others.remove(adopt)
        if drift is None and adopt is None and not others:
            continue
        plans.append(
            GamePlan(
                game_id=game_id,
                record_drift=drift,
                adopt=adopt,
                left_alone=tuple(others),
                record_container_id=own_id,
            )
        )
    return plans, ignored


class Reconciler(GamePass):
    """The `reconciler` loop; `boot_pass()` is the synchronous pass before the loops."""

    name = "reconciler"

    def __init__(
        self,
        deps: ReconcilerDeps,
        stop: asyncio.Event,
        *,
        batch_size: int = RECONCILE_BATCH,
    ) -> None:
        super().__init__(deps, stop)
        self.interval = deps.settings.reconcile_interval
        # The boot pass (before_workers) has just run: the loop's first pass waits one interval.
        self.first_run_delay = self.interval
        self._batch_size = batch_size

    async def boot_pass(self) -> None:
        """Runs once after the leader lease is won and before the loops start.

        A failure to list containers or records is fatal here (SPEC §2: every
        boot step is); a failure on one game is not.
        """
        report = await self.reconcile()
        message = (
            "reconciler initial pass aborted"
            if report.aborted
            else "reconciler initial pass completed"
        )
        log.info(message, extra=report.fields())

    async def run_once(self) -> None:
        report = await self.reconcile()
        drifts = report.disposed + report.observed_exited + report.adopted
        level = logging.INFO if drifts or report.failed or report.aborted else logging.DEBUG
        log.log(level, "reconcile pass completed", extra=report.fields())

    async def reconcile(self) -> PassReport:
        """One pass; returns what it saw and did."""
        report = PassReport()
        began = time.perf_counter()
        with tracer.start_as_current_span("rtm.reconcile_pass"):
            # Before the drifts: a patch interrupted mid-way is rolled back (its
            # engine started again), not disposed as a vanished container.
            report.patches_rolled_back = await self._deps.lifecycle.finish_interrupted_patches()
            containers = await self._deps.engines.list_owned()
            listed = time.perf_counter()
            records = await self._deps.records.live_records()
            loaded = time.perf_counter()
            plans, ignored = plan_pass(records, containers, self._deps.settings.stack)
            report.records, report.containers = len(records), len(containers)
            report.ignored_containers = len(ignored)
            for c in ignored:
                log.warning(
                    "container without a valid game_id label left alone",
                    extra={"container_id": c.id, "container_name": c.name},
                )

            for plan in plans:
                _log_left_alone(plan, report)
            await self._settle(plans, report)
        done = time.perf_counter()
        report.list_ms = round((listed - began) * 1000, 1)
        report.records_ms = round((loaded - listed) * 1000, 1)
        report.settle_ms = round((done - loaded) * 1000, 1)
        report.duration_ms = round((done - began) * 1000, 1)
        return report

    async def _settle(self, plans: list[GamePlan], report: PassReport) -> None:
        """The record drifts first, then the adoptions (a game whose record was
        just disposed adopts its other container), each in batches: one lease
        pipeline, one transaction and one publish per batch (`reconcile_many`)."""
        drifts = [Drift(p.game_id, p.record_drift) for p in plans if p.record_drift is not None]
        settled = await self._batches(drifts, report)
        adoptions = [
            Drift(p.game_id, OpKind.RECONCILE_ADOPT, p.adopt)
            for p in plans
            if p.adopt is not None and (p.record_drift is None or p.game_id in settled)
        ]
        await self._batches(adoptions, report)

    async def _batches(self, drifts: list[Drift], report: PassReport) -> set[str]:
        """The drifts in batches of `batch_size`; returns the games settled (written,
        or nothing to do), not those left for the next pass."""
        settled: set[str] = set()
        for at in range(0, len(drifts), self._batch_size):
            if self.halted():  # abort before the next leases are taken
                report.aborted += len(drifts) - at
                break
            batch = drifts[at : at + self._batch_size]
            for result in await self._deps.lifecycle.reconcile_many(batch):
                if self._tally(result, report):
                    settled.add(result.game_id)
        return settled

    def _tally(self, result: DriftResult, report: PassReport) -> bool:
        """One game's result into the report and the log; False when the game
        is left for the next pass."""
        fields = {"game_id": result.game_id, "op_kind": result.kind.value}
        if result.outcome is DriftOutcome.BUSY:
            report.skipped_busy += 1
            log.info("reconcile skipped a busy game", extra=fields)
            return False
        if result.outcome is DriftOutcome.FAILED:
            report.failed += 1
            error = result.error or Exception("failed")
            log.warning(
                "reconcile drift failed; pass continues", extra={**fields, **error_fields(error)}
            )
            return False
        if result.outcome is DriftOutcome.WRITTEN:
            _count(report, result.kind)
        return True


def _log_left_alone(plan: GamePlan, report: PassReport) -> None:
    for c in plan.left_alone:
        report.left_alone += 1
        log.warning(
            "unrecorded container left alone",
            extra={
                "game_id": plan.game_id,
                "container_id": c.id,
                "container_name": c.name,
                "record_container_id": plan.record_container_id,
            },
        )


def _count(report: PassReport, kind: OpKind) -> None:
    if kind is OpKind.RECONCILE_DISPOSE:
        report.disposed += 1
    elif kind is OpKind.RECONCILE_OBSERVED_EXITED:
        report.observed_exited += 1
    else:
        report.adopted += 1
