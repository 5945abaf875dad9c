"""Cursors of `GET /runtimes?limit=&cursor=` (issue 13): opaque to clients.

A cursor is the last record's `RecordKey` (`created_at` to the microsecond,
`game_id`) as base64url JSON. Keyset paging on that key is stable under
concurrent writes: a page starts strictly after the previous page's last
key, and a game's `created_at` never changes, so no record is seen twice or
skipped; a game created meanwhile lands after every older one (on a later
page, or after the last one). One created by a transaction that began before
a page was read but committed after it may fall behind the cursor: paging
then misses it, as a record that did not exist when paging began.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from rtm_core.domain.errors import InvalidRequest
from rtm_core.domain.records import RecordKey

#: `limit` of a page: default when only `cursor` is given, and the ceiling.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def encode(key: RecordKey) -> str:
    raw = json.dumps([key.created_at.isoformat(), key.game_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> RecordKey:
    """InvalidRequest for anything `encode` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, game_id = json.loads(raw)
        key = RecordKey(datetime.fromisoformat(created_at), str(game_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor: not a cursor this API issued") from exc
    if key.created_at.tzinfo is None:
        raise InvalidRequest("cursor: not a cursor this API issued")
    return key
