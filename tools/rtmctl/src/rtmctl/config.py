"""Where rtmctl finds RTM: flags, then the environment, then a config file.

    setting  flag        environment   config file key   default
    -------  ----------  ------------  ----------------  -----------------------
    url      --url       RTM_URL       url               http://127.0.0.1:8096
    token    --token     RTM_TOKEN     token             none (no Authorization)
    caller   --caller    RTM_CALLER    caller            admin (X-Galaxy-Caller)
    timeout  --timeout   RTM_TIMEOUT   timeout           10 (seconds, per read)

The config file is TOML at `$RTMCTL_CONFIG`, else
`$XDG_CONFIG_HOME/rtmctl/config.toml` (`~/.config/rtmctl/config.toml`); a
missing file is no error, an unreadable one is a usage error.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8096"
DEFAULT_CALLER = "admin"
DEFAULT_TIMEOUT = 10.0
CALLERS = ("admin", "gm")


class ConfigError(ValueError):
    """A setting rtmctl cannot use (exit code 2, like a bad flag)."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None
    caller: str
    timeout: float


def config_path() -> Path:
    if explicit := os.environ.get("RTMCTL_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rtmctl" / "config.toml"


def _file() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def resolve(
    *, url: str | None, token: str | None, caller: str | None, timeout: float | None
) -> Config:
    """Each setting from the first of: flag, environment, config file, default."""
    file = _file()

    def pick(flag: Any, env: str, key: str, default: Any) -> Any:
        if flag is not None:
            return flag
        if (value := os.environ.get(env)) not in (None, ""):
            return value
        return file.get(key, default)

    chosen_caller = str(pick(caller, "RTM_CALLER", "caller", DEFAULT_CALLER))
    if chosen_caller not in CALLERS:
        raise ConfigError(f"caller must be one of {', '.join(CALLERS)}, not {chosen_caller!r}")
    try:
        chosen_timeout = float(pick(timeout, "RTM_TIMEOUT", "timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise ConfigError("timeout must be a number of seconds") from None
    chosen_url = str(pick(url, "RTM_URL", "url", DEFAULT_URL)).rstrip("/")
    if not chosen_url.startswith(("http://", "https://")):
        raise ConfigError(f"url must start with http:// or https://, not {chosen_url!r}")
    chosen_token = pick(token, "RTM_TOKEN", "token", None)
    return Config(
        url=chosen_url,
        token=None if chosen_token in (None, "") else str(chosen_token),
        caller=chosen_caller,
        timeout=chosen_timeout,
    )
