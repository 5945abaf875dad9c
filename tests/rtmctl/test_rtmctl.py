"""`rtmctl` as an operator runs it, against a real `rtm-api` (and `rtm-jobs`)
process over real PostgreSQL, Redis and Docker: tables, --watch, spinners and
`logs -f` in a pseudo-terminal; `-o json` and exit codes through pipes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
from harness import fresh_database, wait_for
from processes import RtmProcess, free_port, settings_env
from redis.asyncio import Redis
from rig import Rig

from rtm_core.settings import Settings

V100 = "galaxy/test-engine:1.0.0"
V101 = "galaxy/test-engine:1.0.1"
TOKEN = "rtmctl-test-token"


#: Between two cells of a table: spaces, and the terminal's style codes (bold header).
GAP = r"(?:\s|\x1b\[[0-9;]*m)+"


async def expect(child: pexpect.spawn, pattern: Any, timeout: float = 60) -> int:
    """`child.expect` off the event loop (the RTM processes' output keeps being read)."""
    return int(await asyncio.to_thread(child.expect, pattern, timeout=timeout))


async def exited(child: pexpect.spawn, timeout: float = 60) -> int:
    await expect(child, pexpect.EOF, timeout)
    await asyncio.to_thread(child.close)
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)


async def test_operations_print_json_records_and_exit_by_error_class(
    spawn_api, cli, core: Rig, game_id: str
) -> None:
    api = await spawn_api(core.settings)
    cli.url = api.url

    started = await cli.run("start", game_id, V100, "-o", "json")
    assert started.code == 0, started.stderr
    record = json.loads(started.stdout)
    assert (record["game_id"], record["status"], record["current_image_ref"]) == (
        game_id,
        "running",
        V100,
    )
    assert json.loads((await cli.run("get", game_id, "-o", "json")).stdout) == record
    listed = json.loads((await cli.run("ls", "-o", "json")).stdout)
    assert record in listed["items"]
    got_wide = json.loads((await cli.run("ls", "-o", "json", "--status", "running")).stdout)
    assert game_id in [r["game_id"] for r in got_wide["items"]]

    patched = json.loads((await cli.run("patch", game_id, V101, "-o", "json")).stdout)
    assert patched["current_image_ref"] == V101
    assert patched["current_container_id"] != record["current_container_id"]

    # Error classes: the envelope's code and message on stderr, a documented exit code.
    busy = await cli.run("cleanup", game_id)
    assert busy.code == 4 and busy.stderr.startswith("error: conflict: "), busy
    bad = await cli.run("patch", game_id, "galaxy/test-engine:2.0.0")
    assert bad.code == 2 and bad.stderr.startswith("error: semver_patch_only: "), bad
    missing = await cli.run("get", "no-such-game")
    assert missing.code == 3 and missing.stderr.startswith("error: not_found: "), missing
    assert missing.stdout == ""
    usage = await cli.run("ls", "--status", "sleeping")
    assert usage.code == 2

    stopped = json.loads(
        (await cli.run("stop", game_id, "--reason", "finished", "-o", "json")).stdout
    )
    assert stopped["status"] == "stopped"
    removed = json.loads((await cli.run("cleanup", game_id, "-o", "json")).stdout)
    assert removed["status"] == "removed"

    history = json.loads((await cli.run("history", game_id, "--limit", "3", "-o", "json")).stdout)
    assert [(h["op_kind"], h["op_source"]) for h in history["items"]] == [
        ("cleanup_container", "admin_rest"),
        ("stop", "admin_rest"),
        ("patch", "admin_rest"),
    ]
    assert (await cli.run("history", game_id, "-o", "yaml")).stdout.startswith("items:\n")
    gm = await cli.run("start", game_id, V100, RTM_CALLER="gm")
    assert gm.code == 0, gm.stderr
    assert (await core.repos.operations(game_id, 1))[0].op_source == "gm_rest"


async def test_a_terminal_gets_a_spinner_then_the_record_and_tables(
    spawn_api, cli, core: Rig, game_id: str
) -> None:
    api = await spawn_api(core.settings)
    cli.url = api.url
    child = cli.terminal("start", game_id, V100)
    await expect(child, f"starting {game_id}")  # the spinner, while the call runs
    await expect(child, rf"status{GAP}running")
    assert await exited(child) == 0

    child = cli.terminal("ls")
    await expect(child, rf"GAME{GAP}STATUS{GAP}IMAGE{GAP}CONTAINER{GAP}AGE")
    await expect(child, rf"{game_id}{GAP}running{GAP}{V100}")
    assert await exited(child) == 0

    child = cli.terminal("ls", "-o", "wide")
    await expect(child, rf"ENDPOINT{GAP}CPU{GAP}MEMORY{GAP}RESTARTS")
    await expect(child, rf"{game_id}{GAP}running.*http://galaxy-game-{game_id}:8080")
    assert await exited(child) == 0

    child = cli.terminal("get", "no-such-game")
    await expect(child, "error: not_found: no runtime for game no-such-game")
    assert await exited(child) == 3


async def test_logs_follow_shows_what_the_engine_prints_after_it_began_and_ends_with_it(
    spawn_api, cli, core: Rig, game_id: str
) -> None:
    api = await spawn_api(core.settings)
    cli.url = api.url
    record = json.loads((await cli.run("start", game_id, V100, "-o", "json")).stdout)
    await wait_for(lambda: _printed(cli, game_id, "listening on :8080"), timeout=30, interval=0.5)

    child = cli.terminal("logs", game_id, "--follow")
    await expect(child, r"engine\[1\.0\.0\]: listening on :8080")
    # Printed only now, after `logs -f` began: the engine announces its exit.
    (Path(record["state_path"]) / "exit_code").write_text("0\n")
    await expect(child, r"engine\[1\.0\.0\]: exiting with code 0")
    assert await exited(child) == 0  # the follow ended with the engine

    tail = await cli.run("logs", game_id, "--tail", "1")
    assert (tail.code, tail.stdout) == (0, "engine[1.0.0]: exiting with code 0\n")


async def _printed(cli, game_id: str, text: str) -> bool:
    return text in (await cli.run("logs", game_id)).stdout


async def test_ls_watch_shows_a_game_started_from_the_stream(
    spawn_api,
    cli,
    make_settings: Callable[..., Settings],
    postgres_server_dsn: str,
    redis: Redis,
    game_id: str,
) -> None:
    """In a database of its own: the session's holds every suite's records, and a
    table taller than the terminal shows only its first screen (sorted by game)."""
    async with fresh_database(postgres_server_dsn, "rtm_watch_") as dsn:
        await _watch_a_stream_start(
            spawn_api, cli, make_settings(postgres_primary_dsn=dsn), redis, game_id
        )


async def _watch_a_stream_start(
    spawn_api, cli, settings: Settings, redis: Redis, game_id: str
) -> None:
    api = await spawn_api(settings)
    jobs = RtmProcess("rtm-jobs", settings_env(settings, ops_http_addr=f"127.0.0.1:{free_port()}"))
    try:
        await jobs.start()
        await jobs.wait_for_message("worker started", count=2)
        cli.url = api.url
        child = cli.terminal("ls", "--watch", "--interval", "0.5")
        await expect(child, rf"GAME{GAP}STATUS")
        fields = {"game_id": game_id, "image_ref": V100, "requested_at_ms": "1714081234567"}
        await redis.xadd(settings.redis_start_jobs_stream, fields)  # type: ignore[arg-type]
        await expect(child, rf"{game_id}{GAP}running{GAP}{V100}", timeout=60)
        child.sendintr()
        assert await exited(child) == 130
    finally:
        await jobs.close()


async def test_top_shows_the_memory_a_running_engine_uses(
    spawn_api, cli, core: Rig, game_id: str
) -> None:
    """With the watcher's usage sampler on (RTMANAGER_ENGINE_USAGE=on), `top`
    shows what the engine really uses: a non-zero memory figure."""
    settings = core.settings.model_copy(update={"inspect_interval": 1.0})
    api = await spawn_api(settings)
    cli.url = api.url
    watcher = RtmProcess(
        "rtm-watcher",
        settings_env(settings, ops_http_addr=f"127.0.0.1:{free_port()}", engine_usage="on"),
    )
    try:
        await watcher.start()
        await watcher.wait_for_message("worker started", worker="usage_sampler", timeout=60)
        assert (await cli.run("start", game_id, V100)).code == 0

        async def sampled() -> dict | None:
            items = json.loads((await cli.run("top", "-o", "json")).stdout)["items"]
            (row,) = [r for r in items if r["game_id"] == game_id]
            return row["usage"]  # type: ignore[no-any-return]

        usage = await wait_for(sampled, timeout=60, interval=1)
        assert usage["memory_bytes"] > 0
        assert usage["memory_limit_bytes"] == int(settings.default_memory)

        child = cli.terminal("top", "--sort", "memory")
        header = rf"GAME{GAP}IMAGE{GAP}CPU{GAP}MEMORY{GAP}LIMIT{GAP}RESTARTS{GAP}SAMPLED"
        await expect(child, header)
        # e.g. `it-…  galaxy/test-engine:1.0.0  0.0%  812.0Ki  512.0Mi  0  1s`
        await expect(child, rf"{game_id}{GAP}{V100}{GAP}\S+%{GAP}[1-9][0-9.]*(Ki|Mi|Gi|B)\s")
        assert await exited(child) == 0
    finally:
        await watcher.close()


async def test_events_and_health_of_a_game(spawn_api, cli, core: Rig, game_id: str) -> None:
    api = await spawn_api(core.settings)
    cli.url = api.url
    assert (await cli.run("start", game_id, V100)).code == 0
    events = json.loads((await cli.run("events", game_id, "-o", "json")).stdout)["items"]
    assert [e["event_type"] for e in events] == ["container_started"]
    health = json.loads((await cli.run("health", game_id, "-o", "json")).stdout)
    assert (health["game_id"], health["status"]) == (game_id, "container_started")

    child = cli.terminal("events", game_id, "--follow")
    await expect(child, rf"{game_id}{GAP}container_started")
    restarted = await cli.run("restart", game_id, "-o", "json")
    new_id = json.loads(restarted.stdout)["current_container_id"]
    await expect(child, rf"{game_id}{GAP}container_started{GAP}{new_id[:12]}")
    child.sendintr()
    assert await exited(child) == 130
    assert (await cli.run("events", "no-such-game")).code == 3


async def test_configuration_flags_then_environment_then_file(
    spawn_api, cli, make_settings, core: Rig, tmp_path: Path
) -> None:
    api = await spawn_api(make_settings(internal_api_token=TOKEN))
    cli.url = api.url
    refused = await cli.run("ls")
    assert refused.code == 7 and refused.stderr.startswith("error: unauthorized: "), refused
    assert (await cli.run("ls", RTM_TOKEN=TOKEN)).code == 0
    assert (await cli.run("--token", "wrong", "ls", RTM_TOKEN=TOKEN)).code == 7

    config = tmp_path / "rtmctl.toml"
    config.write_text(f'url = "{api.url}"\ntoken = "{TOKEN}"\n')
    cli.url = None
    assert (await cli.run("ls", RTMCTL_CONFIG=str(config))).code == 0
    (cli.home / ".config" / "rtmctl").mkdir(parents=True)
    (cli.home / ".config" / "rtmctl" / "config.toml").write_text(config.read_text())
    assert (await cli.run("ls")).code == 0
    assert (await cli.run("ls", RTM_TOKEN="wrong")).code == 7  # env over file
    broken = tmp_path / "broken.toml"
    broken.write_text("url = \n")
    assert (await cli.run("ls", RTMCTL_CONFIG=str(broken))).code == 2


async def test_error_exits_against_a_stopped_api(spawn_api, cli, core: Rig) -> None:
    api = await spawn_api(core.settings)
    cli.url = api.url
    assert (await cli.run("ls")).code == 0
    assert await api.process.signal(signal.SIGTERM, timeout=30) == 0
    for args in (["ls"], ["get", "g"], ["start", "g", V100], ["logs", "g", "-f"], ["events", "-f"]):
        ran = await cli.run(*args)
        assert ran.code == 6, (args, ran)
        assert ran.stderr.startswith("error: unreachable: cannot reach RTM at "), ran.stderr
    child = cli.terminal("ls")
    await expect(child, "error: unreachable: ")
    assert await exited(child) == 6
    ran = await cli.run("--url", "ftp://x", "ls")
    assert ran.code == 2 and "url must start with http" in ran.stderr
