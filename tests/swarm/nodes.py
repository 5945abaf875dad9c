"""Throwaway Swarm clusters of separate `dockerd`s, for the swarm suites and the
multi-node test, that never touch the machine's own Docker daemon.

Each node is a `dockerd` in its own network namespace (entered with
`nsenter --net`, so the filesystem and cgroups stay the host's) with its own
`--data-root`, `--exec-root`, `--pidfile`, `--cgroup-parent` and socket
`/run/rsw/<tag>/<i>.sock`. Its bridge, iptables rules, swarm ports and overlay
networks live in that namespace only. The nodes reach each other through a
bridge in a hub namespace (so the host's firewall, which the main daemon
manages, never sees their traffic), one veth pair per node on the private
subnet 10.213.<s>.0/24 (node i at .(10+i)); one more veth pair gives the
host .1 on that subnet, for anyone who wants to reach a node by address.

    netns rsw<tag>n0 (10.213.s.10) ─┐
    netns rsw<tag>n1 (10.213.s.11) ─┼─ br0 in netns rsw<tag>hub ── host (10.213.s.1)
    netns rsw<tag>n2 (10.213.s.12) ─┘

Node 0 inits the swarm (and is its only manager); the others join as
workers. Daemons run with `--no-new-privileges` (what Swarm's API 1.41
cannot ask per service, see docs/scale-out.md) and
`DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1` (no registry is reachable: a node
uses its local copy instead of trying to pull first); `load_images` copies
images from the main daemon with `docker save | docker load`.

Everything a cluster creates is recorded in /run/rsw/<tag>/cluster.json
before it is created, and `teardown()` removes all of it, whatever state the
cluster is in: daemons (and the shims they leave), mounts, directories,
cgroups, namespaces and veths. `sweep()` does the same for every cluster
whose creating process is gone (a killed test run).

CLI (what tests/swarm/multinode.sh and an operator use):

    python tests/swarm/nodes.py up [--nodes 3] [--image REF ...]   # prints the cluster JSON
    python tests/swarm/nodes.py down <tag>
    python tests/swarm/nodes.py sweep
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_ROOT = Path("/run/rsw")
DATA_ROOT = Path("/var/lib/rtm-swarm")
SUBNET_PREFIX = "10.213"
FIRST_NODE_HOST = 10
DAEMON_START_SECONDS = 60
DAEMON_STOP_SECONDS = 20
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: Daemons this process started, kept referenced until reaped (a collected
#: Popen of a live process is a ResourceWarning, an error under pytest).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def run(*cmd: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


@dataclass
class Node:
    index: int
    netns: str
    address: str
    socket: str
    exec_root: str
    data_root: str
    pidfile: str
    log: str
    cgroup_parent: str
    pid: int = 0
    node_id: str = ""

    @property
    def host(self) -> str:
        """`DOCKER_HOST` / `RTMANAGER_DOCKER_HOST` of this node's daemon."""
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("docker", "-H", self.host, *args, check=check)


@dataclass
class Cluster:
    tag: str
    subnet: int
    owner_pid: int
    nodes: list[Node] = field(default_factory=list)

    # names ----------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.tag

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.tag

    @property
    def hub(self) -> str:
        return f"rsw{self.tag}hub"

    @property
    def host_veth(self) -> str:
        return f"rsw{self.tag}h"

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.run_dir / "cluster.json"
        state.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, tag: str) -> Cluster:
        raw = json.loads((RUN_ROOT / tag / "cluster.json").read_text())
        nodes = [Node(**n) for n in raw.pop("nodes")]
        return cls(**raw, nodes=nodes)

    # bring-up ---------------------------------------------------------------

    @classmethod
    def start(cls, count: int, *, owner_pid: int | None = None, swarm: bool = True) -> Cluster:
        """`count` nodes, node 0 the manager, the rest joined as workers (or, with
        `swarm=False`, daemons in no swarm: what `make up` meets on a fresh host)."""
        if os.geteuid() != 0:
            raise RuntimeError("swarm test clusters need root (ip netns, dockerd)")
        tag, subnet = _free_tag_and_subnet()
        cluster = cls(tag=tag, subnet=subnet, owner_pid=owner_pid or os.getpid())
        for i in range(count):
            cluster.nodes.append(cluster._node(i))
        cluster.save()  # before anything exists: a crash from here on is sweepable
        try:
            cluster._network()
            for node in cluster.nodes:
                cluster._start_daemon(node)
            for node in cluster.nodes:
                _wait_for_daemon(node)
            if swarm:
                cluster._form_swarm()
        except BaseException:
            cluster.teardown()
            raise
        return cluster

    def _node(self, i: int) -> Node:
        run_dir, data_dir = self.run_dir, self.data_dir
        return Node(
            index=i,
            netns=f"rsw{self.tag}n{i}",
            address=f"{SUBNET_PREFIX}.{self.subnet}.{FIRST_NODE_HOST + i}",
            socket=str(run_dir / f"{i}.sock"),
            exec_root=str(run_dir / str(i)),
            data_root=str(data_dir / str(i)),
            pidfile=str(run_dir / f"{i}.pid"),
            log=str(run_dir / f"{i}.log"),
            # Absolute: relative parents land under the daemon's own cgroup, which
            # for the memory controller may be the caller's (a job's) cgroup.
            cgroup_parent=f"/rsw-{self.tag}-{i}",
        )

    def _network(self) -> None:
        run("ip", "netns", "add", self.hub)
        run("ip", "-n", self.hub, "link", "set", "lo", "up")
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        # The host's leg: .1, for reaching a node by address (never needed by RTM).
        hub_end = f"rsw{self.tag}hb"
        run("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", hub_end)
        run("ip", "link", "set", hub_end, "netns", self.hub)
        run("ip", "-n", self.hub, "link", "set", hub_end, "master", "br0", "up")
        run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_veth)
        run("ip", "link", "set", self.host_veth, "up")
        for node in self.nodes:
            inner, outer = f"rsw{self.tag}n{node.index}", f"rsw{self.tag}b{node.index}"
            run("ip", "netns", "add", node.netns)
            run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            run("ip", "link", "set", inner, "netns", node.netns)
            run("ip", "link", "set", outer, "netns", self.hub)
            run("ip", "-n", self.hub, "link", "set", outer, "master", "br0", "up")
            run("ip", "-n", node.netns, "link", "set", inner, "name", "eth0")
            run("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            run("ip", "-n", node.netns, "link", "set", "eth0", "up")
            run("ip", "-n", node.netns, "link", "set", "lo", "up")
            # No default route: a node reaches its peers, the host's .1 and nothing else.

    def _start_daemon(self, node: Node) -> None:
        Path(node.exec_root).mkdir(parents=True, exist_ok=True)
        Path(node.data_root).mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "daemon.json"
        config.write_text("{}\n")  # never the host's /etc/docker/daemon.json
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        env.pop("DOCKER_HOST", None)
        with open(node.log, "ab") as log:
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{node.netns}",
                    # Its own hostname, so `docker node ls` tells the nodes apart.
                    "unshare",
                    "--uts",
                    "--",
                    "sh",
                    "-c",
                    'hostname "$0" && exec "$@"',
                    f"rsw-{self.tag}-n{node.index}",
                    "dockerd",
                    "--host",
                    node.host,
                    "--data-root",
                    node.data_root,
                    "--exec-root",
                    node.exec_root,
                    "--pidfile",
                    node.pidfile,
                    "--config-file",
                    str(config),
                    "--cgroup-parent",
                    node.cgroup_parent,
                    "--no-new-privileges",
                    "--shutdown-timeout",
                    "2",
                    "--log-level",
                    "warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # a Ctrl-C of the caller is for the caller
            )
        node.pid = proc.pid
        _CHILDREN[proc.pid] = proc
        self.save()

    def _form_swarm(self) -> None:
        manager = self.manager
        manager.docker(
            "swarm",
            "init",
            "--advertise-addr",
            manager.address,
            "--listen-addr",
            f"{manager.address}:2377",
            "--dispatcher-heartbeat",
            "2s",
        )
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes[1:]:
            node.docker(
                "swarm",
                "join",
                "--token",
                token,
                "--advertise-addr",
                node.address,
                f"{manager.address}:2377",
            )
        for node in self.nodes:
            node.node_id = node.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
        self.save()
        deadline = time.monotonic() + DAEMON_START_SECONDS
        while time.monotonic() < deadline:
            ready = manager.docker("node", "ls", "-f", "role=worker", "-q").stdout.split()
            states = [
                manager.docker("node", "inspect", "-f", "{{.Status.State}}", n).stdout.strip()
                for n in ready
            ]
            if len(ready) == len(self.nodes) - 1 and all(s == "ready" for s in states):
                return
            time.sleep(0.2)
        raise RuntimeError("swarm workers did not become ready")

    def load_images(self, refs: list[str]) -> None:
        """Copy images from the main daemon into every node (no registry needed)."""
        for node in self.nodes:
            save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
            loaded = subprocess.run(
                ["docker", "-H", node.host, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
            )
            assert save.stdout is not None
            save.stdout.close()
            if save.wait() != 0 or loaded.returncode != 0:
                raise RuntimeError(f"image copy to node {node.index} failed: {loaded.stderr}")

    def create_overlay(self, name: str) -> None:
        self.manager.docker("network", "create", "-d", "overlay", "--attachable", name)

    # teardown -------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove everything this cluster created; safe to call at any stage, twice."""
        for node in self.nodes:
            _stop_daemon(node)
        _kill_leftovers(str(self.run_dir) + "/")
        for prefix in (str(self.run_dir), str(self.data_dir)):
            _unmount_under(prefix)
        for node in self.nodes:
            _remove_cgroups(node.cgroup_parent)
            run("ip", "netns", "del", node.netns, check=False)
        run("ip", "netns", "del", self.hub, check=False)
        run("ip", "link", "del", self.host_veth, check=False)
        run("rm", "-rf", str(self.data_dir), check=False)
        run("rm", "-rf", str(self.run_dir), check=False)


def _free_tag_and_subnet() -> tuple[str, int]:
    used = set()
    for state in RUN_ROOT.glob("*/cluster.json"):
        with contextlib.suppress(Exception):
            used.add(int(json.loads(state.read_text())["subnet"]))
    routes = run("ip", "-4", "route", "show").stdout + run("ip", "-4", "-o", "addr").stdout
    for _ in range(1000):
        subnet = random.randint(1, 254)
        if subnet not in used and f"{SUBNET_PREFIX}.{subnet}." not in routes:
            return f"{random.getrandbits(24):06x}", subnet
    raise RuntimeError(f"no free {SUBNET_PREFIX}.x.0/24 subnet")


def _wait_for_daemon(node: Node) -> None:
    deadline = time.monotonic() + DAEMON_START_SECONDS
    while time.monotonic() < deadline:
        if node.docker("info", "-f", "{{.ID}}", check=False).returncode == 0:
            return
        time.sleep(0.2)
    tail = Path(node.log).read_text()[-2000:] if Path(node.log).exists() else ""
    raise RuntimeError(f"dockerd of node {node.index} did not answer:\n{tail}")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _stop_daemon(node: Node) -> None:
    pid = node.pid
    with contextlib.suppress(OSError, ValueError):
        pid = int(Path(node.pidfile).read_text().strip()) or pid
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DAEMON_STOP_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    child = _CHILDREN.pop(node.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=DAEMON_STOP_SECONDS)


def _kill_leftovers(marker: str) -> None:
    """containerd, shims and anything else still naming this cluster's paths."""
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                os.kill(int(proc.name), signal.SIGKILL)


def _unmount_under(prefix: str) -> None:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == prefix or target.startswith(prefix + "/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        run("umount", "-l", target, check=False)


def _remove_cgroups(parent: str) -> None:
    """Kill what still runs in the node's cgroups (an engine whose shim was
    killed), then remove them."""
    for controller in CGROUP_ROOT.iterdir():
        top = controller / parent.lstrip("/")
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for child in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def sweep() -> list[str]:
    """Tear down every cluster whose creating process is gone; returns their tags."""
    swept = []
    for state in sorted(RUN_ROOT.glob("*/cluster.json")):
        try:
            cluster = Cluster.load(state.parent.name)
        except Exception:
            continue
        if not _alive(cluster.owner_pid):
            cluster.teardown()
            swept.append(cluster.tag)
    return swept


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster, print it as JSON")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--image", action="append", default=[], help="copy into every node")
    up.add_argument("--network", help="an attachable overlay network to create")
    up.add_argument("--owner-pid", type=int, help="the cluster is swept once this pid is gone")
    up.add_argument("--no-swarm", action="store_true", help="daemons only, in no swarm")
    down = sub.add_parser("down", help="tear a cluster down")
    down.add_argument("tag")
    sub.add_parser("sweep", help="tear down clusters whose owner is gone")
    args = parser.parse_args(argv)
    if args.command == "up":
        cluster = Cluster.start(
            args.nodes, owner_pid=args.owner_pid or os.getppid(), swarm=not args.no_swarm
        )
        try:
            if args.image:
                cluster.load_images(args.image)
            if args.network:
                cluster.create_overlay(args.network)
        except BaseException:
            cluster.teardown()
            raise
        print(json.dumps(asdict(cluster)))
    elif args.command == "down":
        if (RUN_ROOT / args.tag / "cluster.json").exists():
            Cluster.load(args.tag).teardown()
    else:
        for tag in sweep():
            print(f"swept {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
