"""Issue 12's settings: off by default, parsed as operators write them, refused
with the variable's name when wrong."""

from __future__ import annotations

import pytest

from rtm_core.settings import SettingsError, Switch, load_settings


def test_every_part_is_off_by_default(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.auto_restart, s.patch_health_gate, s.start_wait_ready) == (Switch.OFF,) * 3
    assert not s.auto_restart and not s.patch_health_gate and not s.start_wait_ready
    assert (s.auto_restart_backoff_initial, s.auto_restart_backoff_factor) == (10, 2)
    assert (s.auto_restart_backoff_max, s.auto_restart_backoff_jitter) == (300, 0.2)
    assert (s.auto_restart_budget, s.auto_restart_window) == (5, 1800)
    assert s.auto_restart_reset_after == 600 and not s.auto_restart_count_clean_exit
    assert (s.patch_gate_probes, s.patch_gate_deadline, s.patch_gate_interval) == (3, 60, 1)
    assert s.patch_snapshots is Switch.ON and s.patch_snapshot_keep == 3
    assert s.patch_snapshot_max_age == 7 * 24 * 3600 and s.patch_snapshot_max_size == 1024**3
    assert s.start_ready_timeout == 60


@pytest.mark.parametrize(
    ("written", "switch"),
    [
        ("on", Switch.ON),
        ("ON", Switch.ON),
        ("true", Switch.ON),
        ("1", Switch.ON),
        ("off", Switch.OFF),
        ("false", Switch.OFF),
        ("0", Switch.OFF),
    ],
)
def test_switches_read_as_operators_write_them(
    env: pytest.MonkeyPatch, written: str, switch: Switch
) -> None:
    env.setenv("RTMANAGER_AUTO_RESTART", written)
    assert load_settings().auto_restart is switch


def test_knobs_parse_durations_and_sizes(env: pytest.MonkeyPatch) -> None:
    env.setenv("RTMANAGER_AUTO_RESTART", "on")
    env.setenv("RTMANAGER_AUTO_RESTART_BACKOFF_INITIAL", "500ms")
    env.setenv("RTMANAGER_AUTO_RESTART_WINDOW", "1h")
    env.setenv("RTMANAGER_AUTO_RESTART_COUNT_CLEAN_EXIT", "true")
    env.setenv("RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE", "256m")
    s = load_settings()
    assert s.auto_restart_backoff_initial == 0.5 and s.auto_restart_window == 3600
    assert s.auto_restart_count_clean_exit and s.patch_snapshot_max_size == 256 * 1024**2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RTMANAGER_AUTO_RESTART", "sometimes"),
        ("RTMANAGER_AUTO_RESTART_BUDGET", "0"),
        ("RTMANAGER_AUTO_RESTART_BACKOFF_JITTER", "1"),
        ("RTMANAGER_AUTO_RESTART_BACKOFF_FACTOR", "0.5"),
        ("RTMANAGER_PATCH_GATE_PROBES", "0"),
        ("RTMANAGER_PATCH_GATE_DEADLINE", "soon"),
        ("RTMANAGER_PATCH_SNAPSHOT_MAX_SIZE", "lots"),
    ],
)
def test_bad_values_name_their_variable(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_a_backoff_that_starts_above_its_maximum_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("RTMANAGER_AUTO_RESTART_BACKOFF_INITIAL", "10m")
    with pytest.raises(SettingsError, match="BACKOFF_INITIAL must not exceed"):
        load_settings()
