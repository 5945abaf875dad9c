"""A private Docker daemon for tests that restart a daemon (issue 10 §4).

The shared daemon (`/var/run/docker.sock`) runs everyone's tests at once and
is never restarted. `PrivateDockerd` runs a second `dockerd` beside it, as
`scripts/ensure-deps.sh` runs the shared one (a plain process in its own
session, no systemd), with everything of its own so the two never meet:

- `--data-root`, `--exec-root` (so its own managed containerd, state and
  network namespaces), `--pidfile` and `-H unix://…` under one short
  directory `/tmp/rtm-td-XXXXXXXX` (a unix socket path has 108 bytes);
- `--config-file` of its own (not the shared `/etc/docker/daemon.json`);
- `--iptables=false --ip-forward=false --ip-masq=false`: it leaves the
  host's firewall and sysctls to the shared daemon; the host still reaches
  its engines on their bridge (host → container needs no forwarding);
- `--bridge=<a bridge made for it>`, never `--bridge=none`: with `none`,
  dockerd deletes the host's `docker0` at start (libnetwork's
  removeDefaultBridgeInterface), which is the shared daemon's default
  bridge. Engines run on one user-defined bridge network; both subnets are
  picked clear of every route on the host.

`restart()` is what an operator does: `kill -TERM` of dockerd, wait for it
to exit (and its containerd), start it again with the same flags. Without
`--live-restore` dockerd stops every container on its way down; with it the
containers keep running under their shims.

Needs root (dockerd does). Teardown removes everything, also after a failed
test: containers, networks and their bridges, the daemon, its containerd,
leftover shims and container processes, every mount under the directory
(overlay layers, network namespaces, the data root's bind mount), then the
directory itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

ROOT_PREFIX = "rtm-td-"
START_TIMEOUT_SECONDS = 30.0
#: dockerd waits up to 15 s (`--shutdown-timeout`) for containers to stop.
STOP_TIMEOUT_SECONDS = 40.0
DOCKER = "docker"


class DaemonError(RuntimeError):
    pass


def _run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: it only waits for its parent.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-254.x.x that overlaps no route on this host."""
    taken = []
    for line in _run("ip", "-4", "route", "show").stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(dest, strict=False))
    for _ in range(200):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise DaemonError("no free 10.x.y.0/24 subnet for the private daemon's network")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")  # octal escapes (\\040)
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


class PrivateDockerd:
    def __init__(self, *, live_restore: bool = False) -> None:
        if os.geteuid() != 0:
            raise DaemonError("a private dockerd needs root (CI runs as root)")
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp"))
        self.live_restore = live_restore
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = self.root / "dockerd.log"
        self.config_path = self.root / "daemon.json"
        self.config_path.write_text("{}\n")
        #: Its default bridge (IFNAMSIZ: 15 characters at most), made by `start()`.
        self.bridge = f"rtd-{self.root.name.removeprefix(ROOT_PREFIX)[:8]}"
        self.networks: dict[str, str] = {}  # name → id
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def flags(self) -> list[str]:
        flags = [
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host={self.host}",
            f"--config-file={self.config_path}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]
        if self.live_restore:
            flags.append("--live-restore")
        return flags

    # the daemon ------------------------------------------------------------

    async def start(self) -> None:
        if self.pid is not None:
            raise DaemonError("the private dockerd is already running")
        if not Path(f"/sys/class/net/{self.bridge}").exists():
            subnet = _free_subnet()
            gateway = f"{next(subnet.hosts())}/{subnet.prefixlen}"
            for step in (
                ("ip", "link", "add", self.bridge, "type", "bridge"),
                ("ip", "addr", "add", gateway, "dev", self.bridge),
                ("ip", "link", "set", self.bridge, "up"),
            ):
                await _exec(*step)
        log = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                "dockerd",
                *self.flags(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest must not reach it
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            ping = await self._cli("version", "--format", "{{.Server.Version}}", check=False)
            if ping.returncode == 0:
                return
            if self._proc.returncode is not None or time.monotonic() > deadline:
                raise DaemonError(f"private dockerd did not come up:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """`kill -TERM` of dockerd; returns once it and its containerd have exited."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DaemonError(f"private dockerd ignored SIGTERM:\n{self.log_tail()}") from None
        containerd = _pid_in(self.root / "exec" / "containerd" / "containerd.pid")
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while containerd is not None and _alive(containerd) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def restart(self, *, live_restore: bool | None = None) -> None:
        """Stop and start again, with the same flags (or live-restore switched)."""
        await self.stop()
        if live_restore is not None:
            self.live_restore = live_restore
        await self.start()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # what tests need on it -------------------------------------------------

    async def docker(self, *args: str) -> str:
        """`docker -H <this daemon> ARGS`; its stdout."""
        return (await self._cli(*args)).stdout.strip()

    async def load_image(self, ref: str) -> None:
        """Copy an image of the shared daemon into this one (`docker save | load`)."""
        tar = self.root / "image.tar"
        await _exec(DOCKER, "save", "-o", str(tar), ref)
        try:
            await self.docker("load", "-q", "-i", str(tar))
        finally:
            tar.unlink(missing_ok=True)

    async def build(self, tag: str, dockerfile: str) -> None:
        """Build from a Dockerfile without context (FROM an image already here)."""
        await self._cli("build", "-q", "-t", tag, "-", stdin=dockerfile.encode())

    async def create_network(self, name: str) -> str:
        subnet = str(_free_subnet())
        network_id = await self.docker(
            "network", "create", "--driver=bridge", f"--subnet={subnet}", name
        )
        self.networks[name] = network_id
        return network_id

    async def remove_containers(self) -> None:
        ids = (await self.docker("ps", "-aq")).split()
        if ids:
            await self.docker("rm", "-f", *ids)

    async def _cli(
        self, *args: str, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        return await _exec(DOCKER, "-H", self.host, *args, check=check, stdin=stdin)

    # teardown --------------------------------------------------------------

    async def aclose(self) -> None:
        """Remove everything; safe to call at any point, and more than once."""
        try:
            if self.pid is not None:
                with contextlib.suppress(Exception):
                    await self.remove_containers()
                for name in list(self.networks):
                    with contextlib.suppress(Exception):
                        await self.docker("network", "rm", name)
                with contextlib.suppress(Exception):
                    await self.stop()
            if self._proc is not None and self._proc.returncode is None:
                self._proc.kill()
                await self._proc.wait()
        finally:
            teardown(self.root, [f"br-{i[:12]}" for i in self.networks.values()] + [self.bridge])


async def _exec(
    *args: str, check: bool = True, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    result = subprocess.CompletedProcess(
        list(args), proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise DaemonError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def teardown(root: Path, bridges: Iterable[str] = ()) -> None:
    """Whatever a private daemon left under `root`, gone: processes, bridges,
    mounts, files. Assumes its dockerd is no longer running."""
    containerd = _pid_in(root / "exec" / "containerd" / "containerd.pid")
    if containerd is not None and _alive(containerd):
        with contextlib.suppress(OSError):
            os.kill(containerd, signal.SIGKILL)
    # Containers still running (live-restore, a daemon that died): kill each
    # container's init (its whole PID namespace goes with it), then the shims.
    for config in (root / "data" / "containers").glob("*/config.v2.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pid = int(json.loads(config.read_text())["State"]["Pid"])
            if pid > 0 and _alive(pid):
                os.kill(pid, signal.SIGKILL)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(root).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
    for bridge in bridges:
        if Path(f"/sys/class/net/{bridge}").exists():
            _run("ip", "link", "del", bridge)
    for _ in range(3):
        for point in _mounts_under(root):
            _run("umount", "-l", point)
        shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            return
        time.sleep(0.2)


@contextlib.asynccontextmanager
async def private_dockerd(*, live_restore: bool = False) -> AsyncIterator[PrivateDockerd]:
    """A running private daemon, torn down afterwards whatever happened."""
    daemon = PrivateDockerd(live_restore=live_restore)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.aclose()
