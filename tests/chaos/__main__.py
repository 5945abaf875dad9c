"""`python -m chaos` (with `tests` on PYTHONPATH): the drill's command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from chaos.drill import REPO, run
from chaos.plan import FAULTS, Options, pick_faults


def options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description="Chaos drill against the compose stack of `make up` (see docs/runbook.md).",
    )
    parser.add_argument("--ci", action="store_true", help="the short variant: 20 games, 90 s bound")
    parser.add_argument("--games", type=int, help="games (default 100, 20 with --ci)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="FAULT",
        help=f"leave a fault out (repeatable): {', '.join(FAULTS)}",
    )
    parser.add_argument("--report", type=Path, help="report path (default: see runbook)")
    parser.add_argument("--converge-bound", type=float, help="seconds (default 180, 90 with --ci)")
    parser.add_argument("--replicas", type=int, default=3, help="rtm-jobs replicas expected")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--keep-games", action="store_true", help="leave this run's games and engines in place"
    )
    args = parser.parse_args(argv)
    try:
        faults = pick_faults(args.skip)
    except ValueError as exc:
        parser.error(str(exc))
    now = datetime.now(UTC)
    if args.report is not None:
        report = args.report
    elif args.ci:
        dev = Path(os.environ.get("RTM_DEV_DIR") or REPO / ".rtm-dev")
        report = dev / "drills" / f"{now:%Y-%m-%dT%H%M%S}-chaos-ci.md"
    else:
        report = REPO / "docs" / "drills" / f"{now:%Y-%m-%d}-chaos.md"
    return Options(
        games=args.games or (20 if args.ci else 100),
        faults=faults,
        ci=args.ci,
        report=report,
        replicas=args.replicas,
        converge_bound=args.converge_bound or (90.0 if args.ci else 180.0),
        gap=4.0 if args.ci else 8.0,
        seed=args.seed,
        keep_games=args.keep_games,
    )


async def _cancellable(opts: Options) -> int:
    """SIGTERM/SIGINT cancel the drill instead of ending the process on the spot,
    so that what it broke is put back on the way out (unpause, dockerd started)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await run(opts)
    except asyncio.CancelledError:
        print("chaos: interrupted; faults undone, no verdict", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_cancellable(options(argv)))


if __name__ == "__main__":
    sys.exit(main())
