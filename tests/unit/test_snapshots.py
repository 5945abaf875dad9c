"""State snapshots on a real (tmp) filesystem: copies that keep what they copy,
restores that can be run again after any interruption, retention."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rtm_core.lifecycle import snapshots

T0 = datetime(2030, 1, 1, tzinfo=UTC)
GAME = "g-1"


def tree(path: Path) -> dict[str, tuple[bytes | str, int]]:
    out: dict[str, tuple[bytes | str, int]] = {}
    for p in sorted(path.rglob("*")):
        mode = os.lstat(p).st_mode & 0o7777
        if p.is_symlink():
            out[str(p.relative_to(path))] = (os.readlink(p), mode)
        elif p.is_file():
            out[str(p.relative_to(path))] = (p.read_bytes(), mode)
        else:
            out[str(p.relative_to(path))] = ("<dir>", mode)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    state = tmp_path / GAME
    (state / "saves").mkdir(parents=True)
    (state / "world.dat").write_bytes(bytes(range(256)))
    (state / "saves" / "1.sav").write_bytes(b"one")
    os.chmod(state / "saves" / "1.sav", 0o600)
    os.symlink("saves/1.sav", state / "latest")
    return tmp_path


def test_a_snapshot_is_the_state_byte_for_byte_with_modes_and_links(root: Path) -> None:
    taken = snapshots.take(root, GAME, root / GAME, T0, os.getgid())
    assert taken == root / ".snapshots" / GAME / "20300101T000000.000000Z"
    assert tree(taken) == tree(root / GAME)
    assert [p.name for p in taken.parent.iterdir()] == [taken.name]  # no partial left


def test_restore_puts_the_snapshot_back_and_keeps_what_it_replaced(root: Path) -> None:
    state = root / GAME
    before = tree(state)
    taken = snapshots.take(root, GAME, state, T0, os.getgid())
    (state / "world.dat").write_bytes(b"corrupted")
    (state / "new.file").write_text("bad")

    rejected = snapshots.restore(taken, state, T0 + timedelta(seconds=5), os.getgid())

    assert tree(state) == before
    assert rejected is not None and (rejected / "new.file").read_text() == "bad"
    assert tree(taken) == before  # the snapshot itself survives


def test_an_interrupted_restore_can_be_run_again(root: Path) -> None:
    state = root / GAME
    before = tree(state)
    taken = snapshots.take(root, GAME, state, T0, os.getgid())
    (state / "world.dat").write_bytes(b"corrupted")
    # Interrupted after the copy and the move aside, before the last rename:
    snapshots.copy_tree(taken, taken.with_name(taken.name + snapshots.RESTORING), os.getgid())
    os.rename(state, taken.with_name("aside" + snapshots.REJECTED))
    assert not state.exists()

    snapshots.restore(taken, state, T0, os.getgid())
    assert tree(state) == before
    # …and a partial copy from an interrupted snapshot is discarded.
    (taken.parent / ("x" + snapshots.PARTIAL)).mkdir()
    snapshots.discard_partials(root, GAME)
    assert not (taken.parent / ("x" + snapshots.PARTIAL)).exists()


def test_the_size_guard(root: Path) -> None:
    assert snapshots.check_size(root / GAME, 10_000) == snapshots.dir_size(root / GAME)
    with pytest.raises(snapshots.SnapshotTooLarge, match="over the snapshot limit"):
        snapshots.check_size(root / GAME, 100)


def test_retention_keeps_the_newest_by_count_and_age(root: Path) -> None:
    for hours in (0, 1, 2, 3):
        snapshots.take(root, GAME, root / GAME, T0 + timedelta(hours=hours), os.getgid())
    folder = root / ".snapshots" / GAME
    (folder / "20300101T000000.000000Z.rejected").mkdir()
    (folder / "20300101T030000.000000Z.rejected").mkdir()

    removed = snapshots.prune(root, GAME, 2, 24 * 3600, T0 + timedelta(hours=4))
    assert sorted(p.name for p in folder.iterdir()) == [
        "20300101T000000.000000Z.rejected",
        "20300101T020000.000000Z",
        "20300101T030000.000000Z",
        "20300101T030000.000000Z.rejected",
    ]
    assert len(removed) == 2
    snapshots.prune(root, GAME, 2, 2 * 3600, T0 + timedelta(hours=4, minutes=30))
    assert sorted(p.name for p in folder.iterdir()) == [
        "20300101T030000.000000Z",
        "20300101T030000.000000Z.rejected",
    ]
    snapshots.prune(root, GAME, 2, 60, T0 + timedelta(days=1))
    assert not folder.exists()  # empty: gone too
