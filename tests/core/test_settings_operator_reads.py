"""Issue 13's settings: the follow-stream cap and the events follow's duration."""

from __future__ import annotations

import pytest

from rtm_core.settings import SettingsError, load_settings


def test_defaults(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.api_max_followers, s.events_follow_max_duration) == (32, 900)


def test_parsed_as_operators_write_them(env: pytest.MonkeyPatch) -> None:
    env.setenv("RTMANAGER_API_MAX_FOLLOWERS", "4")
    env.setenv("RTMANAGER_EVENTS_FOLLOW_MAX_DURATION", "1h")
    s = load_settings()
    assert (s.api_max_followers, s.events_follow_max_duration) == (4, 3600)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RTMANAGER_API_MAX_FOLLOWERS", "0"), ("RTMANAGER_EVENTS_FOLLOW_MAX_DURATION", "soon")],
)
def test_a_bad_value_names_its_variable(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()
