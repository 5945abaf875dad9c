"""Make a wheel directory complete for the *image's* interpreter.

`pip wheel` on the host resolves environment markers for the host's Python
(3.11.7 here), but the offline image runs Debian's 3.11.2: e.g. redis needs
`async-timeout; python_full_version < "3.11.3"` there and not here. This walks
the Requires-Dist of the wheels from the root packages, evaluates markers
against the target environment (JSON from the base image's python3, extras
followed), and prints one requirement per line for every distribution that
the target needs but the directory lacks. build.sh feeds them to
`pip wheel` and repeats until nothing is missing.

Usage: python complete_wheels.py TARGET_ENV_JSON ROOT_NAME... -- WHEEL_DIR...
"""

from __future__ import annotations

import json
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - pip always vendors it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

# Printed by the base image: `python3 -c "$(python complete_wheels.py --env-probe)"`.
ENV_PROBE = """
import json, os, platform, sys
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": platform.python_version(),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""


def wheel_requires(path: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(path) as whl:
        meta_name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode())
    return meta["Name"], meta.get_all("Requires-Dist") or []


def missing(target_env: dict[str, str], roots: list[str], dirs: list[Path]) -> list[str]:
    wheels: dict[str, list[str]] = {}
    for d in dirs:
        for w in d.glob("*.whl"):
            name, reqs = wheel_requires(w)
            wheels[canonicalize_name(name)] = reqs
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(canonicalize_name(r), "") for r in roots]
    lacking: dict[str, str] = {}
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        if name not in wheels:
            continue
        for raw in wheels[name]:
            req = Requirement(raw)
            env = dict(target_env, extra=extra)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = canonicalize_name(req.name)
            if dep not in wheels:
                spec = f"{req.name}{req.specifier}"
                lacking.setdefault(dep, spec)
            todo.append((dep, ""))
            for ex in req.extras:
                todo.append((dep, ex))
    return sorted(lacking.values())


def main(argv: list[str]) -> int:
    if argv[:1] == ["--env-probe"]:
        print(ENV_PROBE)
        return 0
    sep = argv.index("--")
    target_env = json.loads(argv[0])
    roots, dirs = argv[1:sep], [Path(p) for p in argv[sep + 1 :]]
    for line in missing(target_env, roots, dirs):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
