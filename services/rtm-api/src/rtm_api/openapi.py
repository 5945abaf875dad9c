"""Print rtm-api's OpenAPI document: `python -m rtm_api.openapi > docs/api/openapi.json`.

The document does not depend on configuration or on live dependencies, so
it is built over no core at all (routes only use the core per request).
A test compares the committed file with the live app's `app.openapi()`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, cast

from rtm_api.app import create_app
from rtm_core.runtime.bootstrap import Core
from rtm_core.settings import Settings


def document() -> dict[str, Any]:
    return create_app(cast(Core, _SchemaOnlyCore())).openapi()


class _SchemaOnlyCore:
    """Stands in for `Core` while routes are declared; no request ever reaches it."""

    settings = Settings.model_construct()  # defaults only; nothing is read from the env


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def main() -> None:
    sys.stdout.write(render(document()))


if __name__ == "__main__":
    main()
