"""Request dependencies: the `ApiDeps` the app serves with, the caller's op_source
and the optional bearer token.

Routes are declared over no dependencies at all (the OpenAPI document is
built that way) and read the `ApiDeps` that `app.create_app` bound to the
app once per request, as the `Deps` parameter.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.applications import Starlette

from rtm_api.bootstrap import ApiDeps
from rtm_core.domain.errors import Unauthorized
from rtm_core.domain.vocabulary import OpSource


def bind(app: Starlette, deps: ApiDeps) -> None:
    app.state.deps = deps


def bound(app: Starlette) -> ApiDeps:
    """What `bind` gave the app (AttributeError on a declared-only app)."""
    deps: ApiDeps = app.state.deps
    return deps


async def api_deps(request: Request) -> ApiDeps:
    return bound(request.app)


Deps = Annotated[ApiDeps, Depends(api_deps)]

#: Declares the scheme in OpenAPI; the check itself is `bearer_guard`, which
#: answers with RTM's envelope rather than FastAPI's own 403 page.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <RTMANAGER_INTERNAL_API_TOKEN>`, "
    "required when that variable is set",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def bearer_guard(credentials: Credentials, deps: Deps) -> None:
    """Refuse requests without the configured token (constant-time compare)."""
    token = deps.settings.internal_api_token
    if token is None:
        return
    if credentials is None:
        raise Unauthorized("missing bearer token")
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise Unauthorized("invalid bearer token")


async def op_source(
    caller: Annotated[
        str | None,
        Header(
            alias="X-Galaxy-Caller",
            description="`gm` → op_source `gm_rest`; `admin`, anything else or nothing "
            "→ `admin_rest`",
        ),
    ] = None,
) -> OpSource:
    return OpSource.from_caller_header(caller)


Source = Annotated[OpSource, Depends(op_source)]
