"""The layers of rtm_core hold: an AST read of every import, run with the unit tier.

    domain/      pure rules and shapes: no I/O client, no adapter, no lifecycle
    ports.py     Protocols over the domain: no I/O client, no adapter
    lifecycle/   the rules' order of work, over ports: no I/O client, no adapter
    adapters/    the ports' implementations: never the lifecycle or the runtime
    services     use rtm_core's public layers; only a service's bootstrap wires
                 an adapter, and none reaches into one for a key format or a row

Imports under `if TYPE_CHECKING:` and inside functions count too: a layer
that names an adapter's type depends on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "libs" / "rtm-core" / "src" / "rtm_core"
SERVICES = sorted((REPO / "services").glob("*/src/rtm_*"))

#: Third-party packages that do I/O: only adapters (and the runtime) import them.
IO_CLIENTS = (
    "aiodocker",
    "aiohttp",
    "redis",
    "asyncpg",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "faststream",
)
OUTER_LAYERS = ("rtm_core.adapters", "rtm_core.runtime")
#: What a service may not reach into even from its bootstrap: key formats and rows.
ADAPTER_INTERNALS = (
    "rtm_core.adapters.redis.leases",
    "rtm_core.adapters.redis.exits",
    "rtm_core.adapters.redis.publishers",
    "rtm_core.adapters.postgres.tables",
)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str

    def __str__(self) -> str:
        where = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{where}:{self.line}: imports {self.module}"


def module_name(path: Path) -> str:
    """`…/src/rtm_core/lifecycle/start.py` → `rtm_core.lifecycle.start`."""
    top = next(p for p in path.parents if p.name.startswith("rtm_"))
    parts = list(path.relative_to(top.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(path: Path) -> Iterator[Import]:
    """Every module `path` imports, relative imports resolved, `from m import n`
    also reported as `m.n` (so `from rtm_core import adapters` is caught)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(path, node.lineno, base)
            for alias in node.names:
                yield Import(path, node.lineno, f"{base}.{alias.name}")


def is_within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offending(paths: Iterable[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        {str(i) for path in paths for i in imports_in(path) if is_within(i.module, forbidden)}
    )


def files(*relative: str) -> list[Path]:
    found: list[Path] = []
    for rel in relative:
        target = CORE / rel
        found += [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
    return found


def test_the_layers_exist() -> None:
    """The checks below are not vacuous: each layer has its modules."""
    for layer, least in (("domain", 5), ("lifecycle", 5), ("adapters", 5), ("runtime", 5)):
        assert len(files(layer)) >= least, layer
    assert (CORE / "ports.py").is_file()
    assert len(SERVICES) == 4


@pytest.mark.parametrize("layer", ["domain", "lifecycle", "ports.py"])
def test_inner_layers_import_no_io_client_and_no_outer_layer(layer: str) -> None:
    bad = offending(files(layer), IO_CLIENTS + OUTER_LAYERS)
    assert not bad, "\n".join(bad)


def test_the_domain_depends_on_nothing_that_does_work() -> None:
    bad = offending(
        files("domain"), ("rtm_core.lifecycle", "rtm_core.ports", "rtm_core.observability")
    )
    assert not bad, "\n".join(bad)


def test_adapters_never_import_the_lifecycle_or_the_runtime() -> None:
    bad = offending(files("adapters"), ("rtm_core.lifecycle", "rtm_core.runtime"))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_only_a_services_bootstrap_wires_an_adapter(service: Path) -> None:
    modules = [p for p in sorted(service.rglob("*.py")) if p.name != "bootstrap.py"]
    bad = offending(modules, ("rtm_core.adapters",))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.name)
def test_no_service_reaches_into_an_adapters_keys_or_rows(service: Path) -> None:
    bad = offending(sorted(service.rglob("*.py")), ADAPTER_INTERNALS)
    assert not bad, "\n".join(bad)


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    lifecycle = tmp_path / "rtm_core" / "lifecycle"
    lifecycle.mkdir(parents=True)
    sample = lifecycle / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "import redis.asyncio\n"
        "from rtm_core import adapters\n"
        "from ..runtime.bootstrap import boot\n"
        "if TYPE_CHECKING:\n"
        "    from rtm_core.adapters.docker_engine import DockerEngine\n"
        "def later() -> None:\n"
        "    import sqlalchemy\n"
    )
    found = {(i.line, i.module) for i in imports_in(sample)}
    assert {
        (2, "redis.asyncio"),
        (3, "rtm_core.adapters"),
        (4, "rtm_core.runtime.bootstrap"),
        (6, "rtm_core.adapters.docker_engine"),
        (8, "sqlalchemy"),
    } <= found
    assert not is_within("redistools", ("redis",))
    assert offending([sample], ("sqlalchemy",)) == [f"{sample}:8: imports sqlalchemy"]
