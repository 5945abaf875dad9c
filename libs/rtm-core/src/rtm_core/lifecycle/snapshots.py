"""Copies of a game's state directory around a health-gated patch (issue 12).

Layout, on the state root's own filesystem (so restoring is a rename):

    <root>/<game_id>/                              the game's state (bind-mounted)
    <root>/.snapshots/<game_id>/<stamp>            a complete snapshot
    <root>/.snapshots/<game_id>/<stamp>.partial    a copy under way (discarded)
    <root>/.snapshots/<game_id>/<stamp>.restoring  a snapshot's copy on its way back
    <root>/.snapshots/<game_id>/<stamp>.rejected   the state a rolled-back engine left

`.snapshots` can never be a game's directory: a game_id starts with a letter
or digit. RTM never deletes a game's state directory: a restore renames it
aside as `<stamp>.rejected` (kept for forensics, under the snapshots'
retention) and renames a fresh copy of the snapshot into its place, so the
snapshot itself survives the restore and a restore interrupted at any point
can be run again:

1. copy the snapshot to `.restoring.partial`, then rename it `.restoring`;
2. rename the state directory to `<now>.rejected` (if it is there);
3. rename `.restoring` to the state directory.

Copies keep modes, times and symlinks, and ownership where the process may
set it (RTM as root). A non-root RTM cannot hand a file to the engine's user:
such a file gets the configured state group and the owner's permission bits
for the group too, the way a non-root RTM shares state dirs with engines
(docs/deploy.md "State directories").

Blocking filesystem work: the lifecycle runs these in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

SNAPSHOTS_DIR = ".snapshots"
PARTIAL = ".partial"
RESTORING = ".restoring"
REJECTED = ".rejected"


class SnapshotTooLarge(Exception):
    """The state directory is over the configured limit: no snapshot, no patch."""


_STAMP = "%Y%m%dT%H%M%S.%fZ"
_STAMP_LEN = len("20270115T101530.123456Z")


def stamp(now: datetime) -> str:
    """`20270115T101530.123456Z`: sorts as it happened."""
    return now.astimezone(UTC).strftime(_STAMP)


def parse_stamp(name: str) -> datetime | None:
    """When the entry `name` (a stamp, maybe with a suffix) was made; None if not ours."""
    try:
        return datetime.strptime(name[:_STAMP_LEN], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def game_snapshots(root: Path, game_id: str) -> Path:
    return root / SNAPSHOTS_DIR / game_id


def dir_size(path: Path) -> int:
    """Bytes of everything under `path` (files and links as stored, not followed)."""
    total = 0
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def check_size(path: Path, limit: int) -> int:
    size = dir_size(path) if path.exists() else 0
    if size > limit:
        raise SnapshotTooLarge(
            f"state directory {path} holds {size} bytes, over the snapshot limit of "
            f"{limit} bytes (RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE)"
        )
    free = shutil.disk_usage(path.parent if not path.exists() else path).free
    if size > free:
        raise SnapshotTooLarge(
            f"state directory {path} holds {size} bytes and its filesystem has only {free} free"
        )
    return size


def _own(src: os.stat_result, dst: str, gid: int) -> None:
    """Ownership of `src` on `dst`, or (not permitted) group `gid` with the owner's bits."""
    try:
        os.lchown(dst, src.st_uid, src.st_gid)
    except PermissionError:
        if stat.S_ISLNK(src.st_mode):
            return
        with contextlib.suppress(OSError):
            os.lchown(dst, -1, gid)
        mode = stat.S_IMODE(src.st_mode)
        os.chmod(dst, mode | ((mode & 0o700) >> 3))


def copy_tree(src: Path, dst: Path, gid: int) -> None:
    """`src` to the new directory `dst`: contents, modes, times, links, ownership."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    for base, dirs, files in os.walk(src):
        rel = os.path.relpath(base, src)
        for name in [*dirs, *files, ""]:
            source = os.path.normpath(os.path.join(base, name))
            target = os.path.normpath(os.path.join(dst, rel, name))
            _own(os.lstat(source), target, gid)


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def discard_partials(root: Path, game_id: str) -> None:
    """Copies an interrupted snapshot or restore left behind."""
    folder = game_snapshots(root, game_id)
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.endswith(PARTIAL):
                _rmtree(entry)


def take(root: Path, game_id: str, state_dir: Path, now: datetime, gid: int) -> Path:
    """A complete snapshot of `state_dir`, or an OSError and nothing but a partial."""
    folder = game_snapshots(root, game_id)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root / SNAPSHOTS_DIR, 0o700)
    final = folder / stamp(now)
    partial = folder / (final.name + PARTIAL)
    _rmtree(partial)
    copy_tree(state_dir, partial, gid)
    os.rename(partial, final)
    return final


def restore(snapshot: Path, state_dir: Path, now: datetime, gid: int) -> Path | None:
    """Put `snapshot`'s content back as `state_dir`; returns where the state it
    replaced was moved (None when there was none). Safe to run again after an
    interruption at any point."""
    if not snapshot.is_dir():
        raise FileNotFoundError(errno.ENOENT, "snapshot is gone", str(snapshot))
    restoring = snapshot.with_name(snapshot.name + RESTORING)
    if not restoring.exists():
        partial = restoring.with_name(restoring.name + PARTIAL)
        _rmtree(partial)
        copy_tree(snapshot, partial, gid)
        os.rename(partial, restoring)
    rejected: Path | None = None
    if state_dir.exists() or state_dir.is_symlink():
        rejected = snapshot.with_name(stamp(now) + REJECTED)
        os.rename(state_dir, rejected)
    os.rename(restoring, state_dir)
    return rejected


def prune(root: Path, game_id: str, keep: int, max_age: float, now: datetime) -> list[Path]:
    """Retention: the newest `keep` snapshots, and the newest `keep` rejected
    states, younger than `max_age` seconds stay; older ones go (copies under way
    are left alone). Returns what was removed."""
    folder = game_snapshots(root, game_id)
    if not folder.is_dir():
        return []
    cutoff = now - timedelta(seconds=max_age)
    removed: list[Path] = []
    for rejected in (False, True):
        entries = sorted(
            (
                e
                for e in folder.iterdir()
                if parse_stamp(e.name) is not None and e.name.endswith(REJECTED) is rejected
                if not e.name.endswith((PARTIAL, RESTORING))
            ),
            key=lambda e: e.name,
            reverse=True,
        )
        for index, entry in enumerate(entries):
            taken = parse_stamp(entry.name)
            if index >= keep or (taken is not None and taken < cutoff):
                _rmtree(entry)
                removed.append(entry)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
    return removed
