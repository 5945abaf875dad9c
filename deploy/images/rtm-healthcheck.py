#!/usr/bin/env python3
"""Container HEALTHCHECK for galaxy/rtm: GET http://127.0.0.1:<port>/healthz.

One image runs five commands, so the port is found, in this order, from:
1. `RTM_HEALTH_PORT` (compose and Helm set it explicitly);
2. the command of the container's main process: `rtm-api` listens on
   `RTMANAGER_INTERNAL_HTTP_ADDR` (default `:8096`), every other process on
   `RTMANAGER_OPS_HTTP_ADDR` (default `:8097`).
Exit 0 when the listener answers 2xx, 1 otherwise (Docker's contract).
Standard library only: it must work with nothing but the interpreter.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def _port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def _main_command() -> str:
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def health_port() -> int:
    explicit = os.environ.get("RTM_HEALTH_PORT", "").strip()
    if explicit:
        return int(explicit)
    if "rtm-api" in _main_command():
        return _port_of(os.environ.get("RTMANAGER_INTERNAL_HTTP_ADDR", ":8096"))
    return _port_of(os.environ.get("RTMANAGER_OPS_HTTP_ADDR", ":8097"))


def main() -> int:
    url = f"http://127.0.0.1:{health_port()}/healthz"
    try:
        with urllib.request.urlopen(
            url, timeout=float(os.environ.get("RTM_HEALTH_TIMEOUT", "2"))
        ) as r:
            ok = 200 <= r.status < 300
    except Exception as exc:  # any failure is "unhealthy"
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
