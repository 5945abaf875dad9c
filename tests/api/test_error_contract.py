"""Each route documents exactly the error codes it can answer (issue 9 item 5).

"Can answer" is read off the code that runs, not off a second list:

- The route's handler and its FastAPI dependencies are walked with `ast`,
  following every call into rtm-api and rtm-core (the lifecycle operations,
  the domain rules they apply, and the adapters behind the ports). Names are
  resolved against the real objects: the handler's `deps` parameter is the
  `ApiDeps` that `bootstrap()` builds over a test rig, so `deps.lifecycle`
  is the real `Lifecycle`, and `deps.docker.create_and_start` inside it is
  `DockerEngine.create_and_start`, exactly as `CoreAdapters.over` wires them
  in production. Arguments are bound to the callee's parameters; `self` to
  the instance. An `RtmError` subclass that is raised or constructed along
  the way (`InternalError(...)` is built, then raised, by `run_operation`)
  is something the route can answer. (The ports' docstrings name some of
  their errors in prose, but not all: `EngineRuntime.stop` says nothing of
  the `docker_unavailable` its adapter raises. The adapter is what runs.)
- Added at the edge: 400 `invalid_request` when FastAPI validates a body or
  a query parameter (mapped in `rtm_api.errors`), 500 `internal_error`
  on every route (the middleware's last resort), and 503
  `service_unavailable` on every route (every route reads PostgreSQL; the
  adapters' outage mapping is a decorator, which the walk unwraps).

The walk over-approximates where code catches and translates (a `try`
around a call still counts the call's errors) and does not look inside the
constructors of plain records or into calls on local variables whose value
it cannot know (neither raises an `RtmError` today). A walk that loses its
way through `deps`/`self` fails the test instead of silently finding less.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from api.helpers import api_deps
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from rig import Rig

from rtm_api.bootstrap import ApiDeps
from rtm_api.deps import api_deps as api_deps_dependency
from rtm_api.openapi import document
from rtm_api.routes import runtimes_router
from rtm_core.domain.errors import InternalError, InvalidRequest, RtmError, ServiceUnavailable

#: Code the walk follows; everything else (FastAPI, aiodocker, redis, …) is a leaf.
OURS = ("rtm_core", "rtm_api")
MISSING: Any = object()

#: The runtimes routes as `declare_app()` includes them (prefix and token guard applied).
ROUTES = [r for r in runtimes_router().routes if isinstance(r, APIRoute)]


def _ours(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return isinstance(module, str) and module.startswith(OURS)


@dataclass
class Walk:
    """The `RtmError` classes reachable from the functions walked so far."""

    raised: set[type[RtmError]] = field(default_factory=set)
    visited: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    def function(self, fn: Callable[..., Any], env: dict[str, Any]) -> None:
        """Walk `fn`'s body with its parameters bound as in `env`."""
        func = inspect.unwrap(fn)
        key = (func.__code__, frozenset((k, id(v)) for k, v in env.items()))
        if key in self._seen:
            return
        self._seen.add(key)
        self.visited.add(f"{func.__module__}.{func.__qualname__}")
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
        except (OSError, TypeError, SyntaxError):
            return  # a lambda inside an expression, or generated code: no statements to read
        root = tree.body[0]
        if not isinstance(root, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        closure = inspect.getclosurevars(func).nonlocals
        scopes = (env, closure, func.__globals__, vars(builtins))
        for statement in root.body:
            for node in ast.walk(statement):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    self._note(self._resolve(node.exc, scopes))
                elif isinstance(node, ast.Call):
                    self._call(node, scopes)

    def _note(self, value: Any) -> None:
        if isinstance(value, type) and issubclass(value, RtmError):
            self.raised.add(value)

    def _call(self, node: ast.Call, scopes: tuple[dict[str, Any], ...]) -> None:
        callee = self._resolve(node.func, scopes)
        if callee is MISSING:
            self._lost_at(node.func, scopes)
            return
        if isinstance(callee, type):
            self._note(callee)  # an error built here is raised (or returned to be raised)
            return
        if inspect.ismethod(callee):
            func, bound_self = callee.__func__, callee.__self__
        elif isinstance(callee, types.FunctionType):
            func, bound_self = callee, MISSING
        else:
            return
        if not _ours(inspect.unwrap(func)):
            return
        self.function(func, self._bind(inspect.unwrap(func), bound_self, node, scopes))

    def _bind(
        self, func: Any, bound_self: Any, node: ast.Call, scopes: tuple[dict[str, Any], ...]
    ) -> dict[str, Any]:
        params = list(inspect.signature(func).parameters)
        env: dict[str, Any] = {}
        if bound_self is not MISSING:
            env[params.pop(0)] = bound_self
        for name, arg in zip(params, node.args, strict=False):
            if isinstance(arg, ast.Starred):
                break
            env[name] = self._resolve(arg, scopes)
        for keyword in node.keywords:
            if keyword.arg is not None:
                env[keyword.arg] = self._resolve(keyword.value, scopes)
        return {k: v for k, v in env.items() if v is not MISSING}

    def _resolve(self, node: ast.expr, scopes: tuple[dict[str, Any], ...]) -> Any:
        if isinstance(node, ast.Name):
            for scope in scopes:
                if node.id in scope:
                    return scope[node.id]
            return MISSING
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value, scopes)
            if base is MISSING:
                return MISSING
            try:
                return getattr(base, node.attr, MISSING)
            except Exception:
                return MISSING
        return MISSING

    def _lost_at(self, func: ast.expr, scopes: tuple[dict[str, Any], ...]) -> None:
        """A call on one of our objects that names nothing it has: the walk lost its way."""
        if isinstance(func, ast.Attribute):
            base = self._resolve(func.value, scopes)
            if base is not MISSING and _ours(base):
                self.lost.append(f"{ast.unparse(func)} ({type(base).__qualname__})")


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _env(dependant: Dependant, deps: ApiDeps) -> dict[str, Any]:
    """The parameters FastAPI fills with the app's `ApiDeps`."""
    return {
        sub.name: deps
        for sub in dependant.dependencies
        if sub.name is not None and sub.call is api_deps_dependency
    }


def can_answer(route: APIRoute, deps: ApiDeps) -> tuple[set[tuple[int, str]], Walk]:
    walk = Walk()
    dependants = (route.dependant, *_dependants(route.dependant))
    for dependant in dependants:
        # FastAPI's own (the HTTPBearer scheme, auto_error off) are leaves.
        if isinstance(dependant.call, types.FunctionType) and _ours(dependant.call):
            walk.function(dependant.call, _env(dependant, deps))
    edge: set[type[RtmError]] = {InternalError, ServiceUnavailable}
    if any(d.body_params or d.query_params for d in dependants):
        edge.add(InvalidRequest)
    errors = walk.raised | edge
    return {(e.http_status, e.code) for e in errors}, walk


def documented(route: APIRoute) -> set[tuple[int, str]]:
    """`(status, code)` pairs in the route's OpenAPI responses (descriptions "`a` | `b`")."""
    (method,) = route.methods
    responses = document()["paths"][route.path][method.lower()]["responses"]
    return {
        (int(status), code)
        for status, response in responses.items()
        if int(status) >= 400
        for code in re.findall(r"`([a-z_]+)`", response["description"])
    }


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
async def test_a_route_documents_exactly_what_it_can_answer(route: APIRoute, core: Rig) -> None:
    answers, walk = can_answer(route, api_deps(core))
    assert walk.lost == [], "the walk could not follow these calls"
    assert documented(route) == answers, (
        f"documented only: {sorted(documented(route) - answers)}; "
        f"raised but undocumented: {sorted(answers - documented(route))}"
    )


async def test_the_walk_crosses_the_ports_into_the_adapters(core: Rig) -> None:
    """The walk is only as good as its reach: from the start route it gets to the
    lease, the Docker adapter and the operation frame, and finds their errors."""
    (start,) = [r for r in ROUTES if r.name == "start"]
    answers, walk = can_answer(start, api_deps(core))
    for reached in (
        "rtm_core.lifecycle.start.start",
        "rtm_core.lifecycle.operation.run_operation",
        "rtm_core.adapters.redis.leases.GameLeases.hold",
        "rtm_core.adapters.docker_engine.DockerEngine.ensure_image",
        "rtm_core.adapters.docker_engine.DockerEngine.create_and_start",
        "rtm_core.domain.imageref.validate_image_ref",
        "rtm_api.deps.bearer_guard",
    ):
        assert reached in walk.visited, reached
    assert {code for _, code in answers} >= {
        "operation_in_progress",
        "docker_unavailable",
        "image_pull_failed",
        "container_start_failed",
        "start_config_invalid",
        "unauthorized",
        "internal_error",
    }
