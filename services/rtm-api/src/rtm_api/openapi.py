"""Print rtm-api's OpenAPI document: `python -m rtm_api.openapi > docs/api/openapi.json`.

The document describes route declarations only, so it is built from
`declare_app()`: no configuration, no connections, no dependencies bound.
A test compares the committed file with the live app's `app.openapi()`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rtm_api.app import declare_app


def document() -> dict[str, Any]:
    return declare_app().openapi()


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def main() -> None:
    sys.stdout.write(render(document()))


if __name__ == "__main__":
    main()
