"""Request dependencies: the caller's op_source and the optional bearer token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rtm_core.domain.errors import Unauthorized
from rtm_core.domain.vocabulary import OpSource
from rtm_core.settings import Settings

#: Declares the scheme in OpenAPI; the check itself is `bearer_guard`, which
#: answers with RTM's envelope rather than FastAPI's own 403 page.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <RTMANAGER_INTERNAL_API_TOKEN>`, "
    "required when that variable is set",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def bearer_guard(settings: Settings) -> Callable[[Credentials], Awaitable[None]]:
    """A dependency refusing requests without the configured token (constant-time compare)."""
    expected = (
        settings.internal_api_token.get_secret_value().encode()
        if settings.internal_api_token is not None
        else None
    )

    async def check(credentials: Credentials) -> None:
        if expected is None:
            return
        if credentials is None:
            raise Unauthorized("missing bearer token")
        if not hmac.compare_digest(credentials.credentials.encode(), expected):
            raise Unauthorized("invalid bearer token")

    return check


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
