"""`rtmctl`: the console command (Typer). Thin: parse, call `client.Rtm`, render.

Exit codes are `client.Exit` (documented there and in docs/rtmctl.md).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.measure import Measurement

from rtmctl import render
from rtmctl.client import CallFailed, Exit, Rtm
from rtmctl.config import ConfigError, resolve
from rtmctl.render import Output, Row

T = TypeVar("T")
#: Width a table may measure itself in before rtmctl decides how wide to print it.
UNBOUNDED = 10_000

app = typer.Typer(
    name="rtmctl",
    help="Drive and watch RTM (Galaxy Runtime Manager) through its internal REST API.\n\n"
    "Configuration: flags, then RTM_URL / RTM_TOKEN / RTM_CALLER / RTM_TIMEOUT, then "
    "~/.config/rtmctl/config.toml (or $RTMCTL_CONFIG).\n\n"
    "Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 not found, 4 conflict, "
    "5 upstream (Docker, registry, RTM's stores), 6 RTM unreachable, 7 unauthorized.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

STOP_REASONS = ("admin_request", "orphan_cleanup", "cancelled", "finished", "timeout")
STATUSES = ("running", "stopped", "removed")


@dataclass
class State:
    rtm: Rtm | None = None


state = State()


def rtm() -> Rtm:
    assert state.rtm is not None  # set by the callback before any command
    return state.rtm


def fail(error: CallFailed) -> typer.Exit:
    err.print(f"error: {error.code}: {error.message}", markup=False, soft_wrap=True)
    return typer.Exit(int(error.exit_code))


def call(action: Callable[[], T], *, spinner: str | None = None) -> T:
    """Run one REST call: a spinner on a terminal while it runs, the envelope's code
    and message on stderr and the exit code of its class when it fails."""
    try:
        if spinner is None:
            return action()
        with err.status(spinner):
            return action()
    except CallFailed as error:
        raise fail(error) from None


@contextmanager
def interruptible() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    except CallFailed as error:
        raise fail(error) from None


def echo_data(data: Any, output: Output) -> None:
    typer.echo(render.as_data(data, output))


def show_record(record: Row, output: Output) -> None:
    if output in (Output.JSON, Output.YAML):
        echo_data(record, output)
    else:
        print_wide(render.describe(record))


def show_rows(
    rows: Sequence[Row], columns: Sequence[render.Column], output: Output, key: str = "items"
) -> None:
    if output in (Output.JSON, Output.YAML):
        echo_data({key: list(rows)}, output)
    else:
        print_wide(render.table(rows, columns))


def print_wide(renderable: RenderableType) -> None:
    """As wide as the content needs, as kubectl prints: a narrow terminal wraps
    lines rather than rtmctl cutting cells short."""
    natural = Measurement.get(out, out.options.update(max_width=UNBOUNDED), renderable).maximum
    if natural <= out.width:
        out.print(renderable)
    else:
        Console(width=natural, highlight=False, file=out.file).print(renderable)


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (default), wide, json or yaml")
]
GameArg = Annotated[str, typer.Argument(help="The game's id", show_default=False)]
ImageArg = Annotated[str, typer.Argument(help="Docker image reference", show_default=False)]


@app.callback()
def main_options(
    url: Annotated[
        str | None,
        typer.Option(help="RTM's REST base URL (env RTM_URL; default http://127.0.0.1:8096)"),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (env RTM_TOKEN)", show_default=False)
    ] = None,
    caller: Annotated[
        str | None,
        typer.Option(help="X-Galaxy-Caller: admin or gm (env RTM_CALLER; default admin)"),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds to connect, and to wait for a read (env RTM_TIMEOUT; default 10)"
        ),
    ] = None,
) -> None:
    try:
        config = resolve(url=url, token=token, caller=caller, timeout=timeout)
    except ConfigError as exc:
        err.print(f"error: config: {exc}", markup=False)
        raise typer.Exit(int(Exit.USAGE)) from None
    state.rtm = Rtm(config)


# ----------------------------------------------------------------- reads


@app.command(
    "ls",
    epilog="Examples:  rtmctl ls  ·  rtmctl ls --status running -o wide  ·  "
    "rtmctl ls -o json | jq -r '.items[].game_id'  ·  rtmctl ls --watch",
)
def list_runtimes(
    status: Annotated[
        str | None,
        typer.Option("--status", "-s", help="Only running, stopped or removed", show_default=False),
    ] = None,
    output: OutputOption = Output.TABLE,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the table on screen, refreshed")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes (--watch)")] = 2.0,
) -> None:
    """List runtimes (every page), by game id."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(STATUSES)}", param_hint="--status")
    if watch and output in (Output.JSON, Output.YAML):
        raise typer.BadParameter("--watch shows a table: use -o table or -o wide")
    wide = output is Output.WIDE
    columns = render.WIDE_COLUMNS if wide else render.BASE_COLUMNS

    def fetch() -> list[Row]:
        return sorted(rtm().runtimes(status=status, wide=wide), key=lambda r: str(r["game_id"]))

    if not watch:
        show_rows(call(fetch), columns, output)
        return
    with interruptible(), Live(render.table(fetch(), columns), console=out) as live:
        while True:
            time.sleep(interval)
            live.update(render.table(fetch(), columns))


@app.command(epilog="Examples:  rtmctl get game-42  ·  rtmctl get game-42 -o json")
def get(game_id: GameArg, output: OutputOption = Output.TABLE) -> None:
    """Show one runtime record (-o wide adds its engine's usage)."""
    show_record(call(lambda: rtm().runtime(game_id, wide=output is Output.WIDE)), output)


@app.command(epilog="Examples:  rtmctl history game-42 --limit 5")
def history(
    game_id: GameArg,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Rows, newest first")] = 20,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show a game's operation log, newest first."""
    rows = call(lambda: rtm().operations(game_id, limit))
    show_rows(rows, render.HISTORY_COLUMNS, output)


@app.command(epilog="Examples:  rtmctl health game-42 -o json")
def health(game_id: GameArg, output: OutputOption = Output.TABLE) -> None:
    """Show the latest health snapshot of a game's engine."""
    show_record(call(lambda: rtm().health(game_id)), output)


@app.command(
    epilog="Examples:  rtmctl logs game-42 --tail 50  ·  rtmctl logs game-42 -f  ·  "
    "rtmctl logs game-42 --since 10m"
)
def logs(
    game_id: GameArg,
    tail: Annotated[
        int | None, typer.Option(min=0, help="Only the last N lines", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the engine stops")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="From then on: RFC 3339, or a span back (10m, 2h)", show_default=False),
    ] = None,
) -> None:
    """Print the engine's stdout and stderr (as docker logs does)."""
    with interruptible():
        for chunk in rtm().logs(game_id, tail=tail, since=since, follow=follow):
            sys.stdout.write(chunk)
            sys.stdout.flush()


@app.command(
    epilog="Examples:  rtmctl events  ·  rtmctl events game-42 -f  ·  "
    "rtmctl events -f -o json | jq .event_type"
)
def events(
    game_id: Annotated[
        str | None, typer.Argument(help="Only this game's events", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new events as they come")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Recent events shown")] = 20,
    output: OutputOption = Output.TABLE,
) -> None:
    """Show recent health events (every game's, or one game's); -f -o json: JSON lines."""
    if not follow:
        rows = call(lambda: rtm().events(game_id, limit))
        show_rows(rows, render.EVENT_COLUMNS, output)
        return
    with interruptible():
        for event in rtm().follow_events(game_id, limit):
            if output in (Output.JSON, Output.YAML):
                typer.echo(json.dumps(event, separators=(",", ":")))
            else:
                typer.echo(render.event_line(event))


@app.command(epilog="Examples:  rtmctl top  ·  rtmctl top --sort cpu")
def top(
    sort: Annotated[str, typer.Option(help="memory or cpu")] = "memory",
    output: OutputOption = Output.TABLE,
) -> None:
    """Running engines by memory (or CPU), from their last usage samples."""
    if sort not in ("memory", "cpu"):
        raise typer.BadParameter("must be memory or cpu", param_hint="--sort")
    field = "memory_bytes" if sort == "memory" else "cpu_percent"
    rows = call(lambda: rtm().runtimes(status="running", wide=True))

    def key(row: Row) -> tuple[int, float]:
        value = render.usage(row).get(field)
        return (0, -float(value)) if value is not None else (1, 0.0)

    rows.sort(key=key)
    show_rows(rows, render.TOP_COLUMNS, output)
    if output in (Output.TABLE, Output.WIDE) and rows and not any(r.get("usage") for r in rows):
        err.print("note: no usage samples yet (RTM's watcher samples running engines)")


# ------------------------------------------------------------ operations


@app.command(epilog="Examples:  rtmctl start game-42 galaxy/game:1.4.0")
def start(
    game_id: GameArg,
    image_ref: ImageArg,
    wait_ready: Annotated[
        bool | None,
        typer.Option(
            "--wait-ready/--no-wait-ready",
            help="Answer after the engine's first /healthz (default: RTM's setting)",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = Output.TABLE,
) -> None:
    """Start a game's engine (the same image already running is a success)."""
    record = call(
        lambda: rtm().start(game_id, image_ref, wait_ready), spinner=f"starting {game_id}"
    )
    show_record(record, output)


@app.command(epilog="Examples:  rtmctl stop game-42 --reason finished")
def stop(
    game_id: GameArg,
    reason: Annotated[
        str, typer.Option(help="admin_request, orphan_cleanup, cancelled, finished, timeout")
    ] = "admin_request",
    output: OutputOption = Output.TABLE,
) -> None:
    """Stop a game's engine; its container stays until cleanup."""
    record = call(lambda: rtm().stop(game_id, reason), spinner=f"stopping {game_id}")
    show_record(record, output)


@app.command(epilog="Examples:  rtmctl restart game-42")
def restart(game_id: GameArg, output: OutputOption = Output.TABLE) -> None:
    """Recreate a game's engine with its current image."""
    record = call(lambda: rtm().restart(game_id), spinner=f"restarting {game_id}")
    show_record(record, output)


@app.command(epilog="Examples:  rtmctl patch game-42 galaxy/game:1.4.1")
def patch(game_id: GameArg, image_ref: ImageArg, output: OutputOption = Output.TABLE) -> None:
    """Recreate a game's engine with a new patch version of its image."""
    record = call(lambda: rtm().patch(game_id, image_ref), spinner=f"patching {game_id}")
    show_record(record, output)


@app.command(epilog="Examples:  rtmctl cleanup game-42")
def cleanup(game_id: GameArg, output: OutputOption = Output.TABLE) -> None:
    """Remove a stopped engine's container; the game's state stays."""
    record = call(lambda: rtm().cleanup(game_id), spinner=f"removing {game_id}'s container")
    show_record(record, output)


def main() -> None:
    try:
        app()
    finally:
        if state.rtm is not None:
            state.rtm.close()
