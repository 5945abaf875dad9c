"""The read path's hand-made encoding (`rtm_api.schemas.record_json`, issue 14)
renders exactly what FastAPI rendered from the `RuntimeRecord` model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rtm_api.schemas import RuntimeList, RuntimeRecord, record_json, records_json
from rtm_core.domain.records import RuntimeRecord as Row

AT = datetime(2026, 4, 28, 7, 18, 54, 734_000, tzinfo=UTC)


def rows() -> list[Row]:
    full = Row(
        game_id="game-1",
        status="running",
        current_container_id="c" * 64,
        current_image_ref="galaxy/game:1.4.0",
        engine_endpoint="http://galaxy-game-game-1:8080",
        state_path="/var/lib/galaxy/games/game-1",
        docker_network="galaxy-net",
        started_at=AT,
        stopped_at=None,
        removed_at=None,
        last_op_at=AT.astimezone(timezone(timedelta(hours=3))),  # rendered in UTC
        created_at=AT - timedelta(days=1),
        quarantined=True,
    )
    bare = Row(game_id="game-é", status="removed")  # non-ASCII and every optional null
    return [full, bare]


@pytest.mark.parametrize("with_quarantine", [False, True])
def test_a_record_encodes_as_the_model_does(with_quarantine: bool) -> None:
    for row in rows():
        model = RuntimeRecord.of(row, with_quarantine=with_quarantine)
        # Byte for byte: the same fields, order, separators and UTF-8.
        assert record_json(row, with_quarantine=with_quarantine) == model.model_dump_json().encode()


@pytest.mark.parametrize("with_quarantine", [False, True])
def test_a_list_encodes_as_the_model_does(with_quarantine: bool) -> None:
    model = RuntimeList.of(rows(), with_quarantine=with_quarantine)
    assert records_json(rows(), with_quarantine=with_quarantine) == model.model_dump_json().encode()
