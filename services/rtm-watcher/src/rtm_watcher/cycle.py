"""What the three loops share about one pass over the `running` records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from rtm_core.domain.records import RuntimeRecord
from rtm_core.domain.vocabulary import RuntimeStatus
from rtm_core.ports import RuntimeRecords


async def running_records(records: RuntimeRecords) -> list[RuntimeRecord]:
    """`running` records that point at a container: the engines to watch."""
    running = await records.list_records(RuntimeStatus.RUNNING.value)
    return [r for r in running if r.current_container_id]


async def for_each(
    records: Sequence[RuntimeRecord],
    limit: int,
    work: Callable[[RuntimeRecord], Awaitable[None]],
) -> None:
    """`work` on every record, at most `limit` at once. One failing record does not
    stop the others; once all are done the first failure is raised."""
    bound = asyncio.Semaphore(limit)

    async def one(record: RuntimeRecord) -> None:
        async with bound:
            await work(record)

    results = await asyncio.gather(*(one(r) for r in records), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
