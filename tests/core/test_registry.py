"""Pulls with credentials, for real, against a registry on loopback (issue 10 §4b).

The registry is Debian's `docker-registry` (distribution 2.8) with htpasswd
auth, started once for this module on a free loopback port, fed by the
docker CLI (`docker login` into a throwaway `DOCKER_CONFIG`, `docker push`
of the test engine). RTM reads the config.json that login wrote. The daemon
allows plain HTTP to 127.0.0.0/8 registries by default. Nothing here leaves
loopback; the process, its storage, the CLI config and every tag it made
are removed at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import pytest
from harness import stream_entries
from redis.asyncio import Redis
from rig import Rig

from rtm_core.adapters.docker_credentials import (
    DockerConfigError,
    RegistryAuth,
    RegistryCredentials,
    qualified,
    registry_key,
    registry_of,
)
from rtm_core.domain.errors import ImagePullFailed
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings

GM = OpSource.GM_REST
USER, PASSWORD = "rtm", "s3cret-pull"
REPOSITORY = "galaxy/test-engine"
PUSHED_TAG = "1.0.0"


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:<port>
    root: Path
    #: The directory `docker login` wrote its config.json into.
    cli_config: Path

    def ref(self, tag: str = PUSHED_TAG) -> str:
        return f"{self.host}/{REPOSITORY}:{tag}"

    def config_with(self, name: str, entry: dict[str, str]) -> Path:
        """A config.json whose `auths` holds `entry` for this registry."""
        path = self.root / f"{name}.json"
        path.write_text(json.dumps({"auths": {self.host: entry}}))
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*cmd: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr or done.stdout}"
    return done.stdout


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"docker-registry exited: {log.read_text()}"
        try:
            urllib.request.urlopen(url, timeout=1).close()  # loopback only
            return
        except urllib.error.HTTPError as exc:  # 401: up, and asking for credentials
            exc.close()
            if exc.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"docker-registry did not answer on {url}: {log.read_text()}")


def _local_tags(host: str) -> list[str]:
    out = _run("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{host}/{REPOSITORY}")
    return [line for line in out.split() if not line.endswith(":<none>")]


@pytest.fixture(scope="module")
def registry(engine_images: str) -> Iterator[LocalRegistry]:
    """`docker-registry` on 127.0.0.1 with htpasswd auth, holding the test engine."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is missing: run scripts/ensure-deps.sh"
    assert shutil.which("htpasswd"), (
        "htpasswd (apache2-utils) is missing: run scripts/ensure-deps.sh"
    )
    root = Path(tempfile.mkdtemp(prefix="rtm-registry-"))
    host = f"127.0.0.1:{_free_port()}"
    (root / "htpasswd").write_text(_run("htpasswd", "-Bbn", USER, PASSWORD))
    (root / "config.yml").write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{host}'}}\n"
        f"auth: {{htpasswd: {{realm: rtm-test, path: {root / 'htpasswd'}}}}}\n"
    )
    log = root / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    # The CLI's login goes to a throwaway config, never the caller's ~/.docker.
    cli = {**os.environ, "DOCKER_CONFIG": str(root / "cli")}
    try:
        _wait_until_serving(f"http://{host}/v2/", process, log)
        _run("docker", "login", host, "-u", USER, "--password-stdin", env=cli, stdin=PASSWORD)
        _run("docker", "tag", f"{engine_images}:{PUSHED_TAG}", f"{host}/{REPOSITORY}:{PUSHED_TAG}")
        _run("docker", "push", f"{host}/{REPOSITORY}:{PUSHED_TAG}", env=cli)
        # Untagged again: the tests' pulls must come from the registry.
        _run("docker", "rmi", f"{host}/{REPOSITORY}:{PUSHED_TAG}")
        yield LocalRegistry(host=host, root=root, cli_config=root / "cli")
    finally:
        for tag in _local_tags(host):
            with suppress(AssertionError):
                _run("docker", "rmi", tag)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def untag_pulls(registry: LocalRegistry, docker: aiodocker.Docker) -> AsyncIterator[None]:
    """Each test starts with no local copy of the registry's image."""
    yield
    for tag in _local_tags(registry.host):
        with suppress(aiodocker.DockerError):
            await docker.images.delete(tag)


@asynccontextmanager
async def silent_registry() -> AsyncIterator[str]:
    """A loopback `host:port` that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[None]] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if (task := asyncio.current_task()) is not None:
            handlers.add(task)
        with suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
        if handlers:
            await asyncio.wait(handlers, timeout=5)


async def rows(core: Rig, game_id: str) -> list:
    return list(reversed(await core.repos.operations(game_id)))


async def assert_failed_once(core: Rig, game_id: str, code: str) -> None:
    """One failure row, no record, and the game free for the next operation."""
    (row,) = await rows(core, game_id)
    assert (row.op_kind, row.outcome, row.error_code) == ("start", "failure", code)
    assert await core.repos.get_record(game_id) is None
    assert not await core.leases.is_held(game_id)


# ------------------------------------------------------------ real pulls


async def test_a_good_pull_with_the_cli_config_starts_the_engine(
    registry: LocalRegistry,
    untag_pulls: None,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    docker: aiodocker.Docker,
    game_id: str,
) -> None:
    # The directory `docker login` wrote, exactly as an operator would mount it.
    core = make_core(make_settings(image_pull_policy="always", docker_config=registry.cli_config))
    ref = registry.ref()
    result = await core.lifecycle.start(game_id, ref, GM)
    assert result.record is not None and result.record.status == "running"
    assert result.record.current_image_ref == ref
    container = (await docker.containers.get(f"galaxy-game-{game_id}"))._container
    assert container["Config"]["Image"] == ref and container["State"]["Running"]
    assert ref in _local_tags(registry.host)
    (row,) = await rows(core, game_id)
    assert (row.outcome, row.error_code) == ("success", None)


async def test_a_wrong_password_is_image_pull_failed(
    registry: LocalRegistry,
    untag_pulls: None,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
) -> None:
    config = registry.config_with("wrong", {"username": USER, "password": "not-it"})
    core = make_core(make_settings(image_pull_policy="if_not_present", docker_config=config))
    with pytest.raises(ImagePullFailed, match="unauthorized"):
        await core.lifecycle.start(game_id, registry.ref(), GM)
    await assert_failed_once(core, game_id, "image_pull_failed")
    (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
    assert json.loads(intent["envelope"])["type"] == "runtime.image_pull_failed"
    assert _local_tags(registry.host) == []


async def test_no_credentials_for_the_registry_pulls_anonymously_and_fails(
    registry: LocalRegistry,
    untag_pulls: None,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    config = registry.root / "elsewhere.json"
    config.write_text(json.dumps({"auths": {"registry.example.org": {"auth": "dXNlcjpwYXNz"}}}))
    core = make_core(make_settings(image_pull_policy="always", docker_config=config))
    with pytest.raises(ImagePullFailed, match="no basic auth credentials"):
        await core.lifecycle.start(game_id, registry.ref(), GM)
    await assert_failed_once(core, game_id, "image_pull_failed")


async def test_a_missing_tag_is_image_pull_failed_with_its_notification(
    registry: LocalRegistry,
    untag_pulls: None,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
) -> None:
    # Credentials in the `auth` form, as the CLI writes them.
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = registry.config_with("good", {"auth": token})
    core = make_core(make_settings(image_pull_policy="if_not_present", docker_config=config))
    missing = registry.ref("9.9.9")
    with pytest.raises(ImagePullFailed, match="manifest unknown"):
        await core.lifecycle.start(game_id, missing, GM)
    await assert_failed_once(core, game_id, "image_pull_failed")
    (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
    envelope = json.loads(intent["envelope"])
    payload = envelope["payload"]
    assert envelope["type"] == "runtime.image_pull_failed"
    assert envelope["producer"] == "rtmanager"
    assert envelope["audience"] == {
        "kind": "admin_email",
        "email_address_kind": "runtime_image_pull_failed",
    }
    assert envelope["idempotency_key"] == (
        f"runtime.image_pull_failed:{game_id}:{payload['attempted_at_ms']}"
    )
    assert payload["game_id"] == game_id and payload["image_ref"] == missing
    assert payload["error_code"] == "image_pull_failed"
    assert "manifest unknown" in payload["error_message"]
    assert await core.docker.list_owned(game_id) == []


async def test_a_registry_that_never_answers_fails_the_pull_on_its_deadline(
    registry: LocalRegistry,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    redis: Redis,
    game_id: str,
) -> None:
    async with silent_registry() as host:
        config = registry.root / "silent.json"
        config.write_text(json.dumps({"auths": {host: {"username": USER, "password": PASSWORD}}}))
        core = make_core(
            make_settings(
                image_pull_policy="always", docker_config=config, docker_pull_timeout="3s"
            )
        )
        began = time.monotonic()
        with pytest.raises(ImagePullFailed, match="docker pull timed out after 3s"):
            await core.lifecycle.start(game_id, f"{host}/{REPOSITORY}:{PUSHED_TAG}", GM)
        assert 3.0 <= time.monotonic() - began < 8.0
    # The lease is gone (the game answers its next operation), one row, one intent.
    await assert_failed_once(core, game_id, "image_pull_failed")
    (intent,) = await stream_entries(redis, core.settings.notification_intents_stream)
    assert json.loads(intent["envelope"])["payload"]["error_code"] == "image_pull_failed"


# ------------------------------------------------- reading the config file


def test_registry_of_follows_dockers_reference_rule() -> None:
    assert registry_of("nginx:1") == "docker.io"
    assert registry_of("galaxy/test-engine:1.0.0") == "docker.io"
    assert registry_of("docker.io/library/nginx") == "docker.io"
    assert registry_of("index.docker.io/galaxy/x:1") == "docker.io"
    assert registry_of("127.0.0.1:5000/galaxy/x:1") == "127.0.0.1:5000"
    assert registry_of("localhost/x") == "localhost"
    assert registry_of("Registry.Example.ORG/x@sha256:" + "a" * 64) == "registry.example.org"


def test_auths_keys_fold_schemes_paths_and_hub_aliases() -> None:
    for key in (
        "https://index.docker.io/v1/",
        "index.docker.io",
        "docker.io",
        "registry-1.docker.io",
        "http://registry-1.docker.io/v2/",
    ):
        assert registry_key(key) == "docker.io", key
    assert registry_key("https://127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_key("registry.example.org/v2/") == "registry.example.org"


def test_hub_references_are_qualified_for_the_daemon() -> None:
    assert qualified("nginx:1") == "docker.io/library/nginx:1"
    assert qualified("galaxy/x:1") == "docker.io/galaxy/x:1"
    assert qualified("127.0.0.1:5000/galaxy/x:1") == "127.0.0.1:5000/galaxy/x:1"


def test_entries_give_credentials_in_each_form(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw:x").decode()},
                    "r.example.org": {"username": "u", "password": "p"},
                    "t.example.org": {
                        "auth": base64.b64encode(b"u:").decode(),
                        "identitytoken": "T",
                    },
                    "helper.example.org": {},
                    "broken.example.org": {"auth": "%%%"},
                }
            }
        )
    )
    credentials = RegistryCredentials(path)
    hub = credentials.for_image("galaxy/x:1")
    assert hub == RegistryAuth("docker.io", "hub", "pw:x")
    assert hub.header() == {"username": "hub", "password": "pw:x"}
    assert "pw:x" not in repr(hub)
    assert credentials.for_image("r.example.org/x:1") == RegistryAuth("r.example.org", "u", "p")
    token = credentials.for_image("t.example.org/x:1")
    assert token is not None and token.header() == {"username": "u", "identitytoken": "T"}
    assert credentials.for_image("helper.example.org/x:1") is None  # a credsStore's stub
    assert credentials.for_image("other.example.org/x:1") is None
    with pytest.raises(DockerConfigError, match=r"broken\.example\.org"):
        credentials.for_image("broken.example.org/x:1")


def test_the_file_is_read_at_each_pull(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"r.example.org": {"username": "a", "password": "1"}}}))
    credentials = RegistryCredentials(path)
    assert credentials.for_image("r.example.org/x") == RegistryAuth("r.example.org", "a", "1")
    path.write_text(json.dumps({"auths": {"r.example.org": {"username": "a", "password": "2"}}}))
    assert credentials.for_image("r.example.org/x") == RegistryAuth("r.example.org", "a", "2")
    path.unlink()
    with pytest.raises(DockerConfigError, match=r"config\.json"):
        credentials.for_image("r.example.org/x")


def test_credential_helpers_are_announced_as_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {"r.example.org": {}},
                "credsStore": "desktop",
                "credHelpers": {"gcr.io": "gcloud"},
            }
        )
    )
    with caplog.at_level(logging.INFO, logger="rtm_core.adapters.docker_credentials"):
        RegistryCredentials(path).announce()
    loaded, ignored = caplog.records
    assert loaded.getMessage() == "docker registry credentials loaded"
    assert loaded.__dict__["registries"] == ["r.example.org"]
    assert ignored.levelno == logging.WARNING and "never runs" in ignored.getMessage()
    assert ignored.__dict__["ignored"] == ["credsStore", "credHelpers"]


async def test_an_unusable_entry_fails_the_pull_not_the_process(
    registry: LocalRegistry,
    make_settings: Callable[..., Settings],
    make_core: Callable[[Settings], Rig],
    game_id: str,
) -> None:
    config = registry.config_with("unusable", {"auth": "bm8tY29sb24="})  # "no-colon"
    core = make_core(make_settings(image_pull_policy="always", docker_config=config))
    with pytest.raises(ImagePullFailed, match="not base64 of user:password"):
        await core.lifecycle.start(game_id, registry.ref(), GM)
    await assert_failed_once(core, game_id, "image_pull_failed")
