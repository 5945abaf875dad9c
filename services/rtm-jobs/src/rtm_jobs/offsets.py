"""The consumer group's Redis state: group creation, acknowledgement with the
offset key, and keeping in-flight entries claimed.

What `rtmanager:stream_offsets:<startjobs|stopjobs>` means
---------------------------------------------------------
"Last fully processed entry id": the highest id such that every entry of the
stream up to and including it has been processed — its result published and
the entry acknowledged (a poison entry counts once it is acknowledged). With
several replicas each running many jobs at once, jobs finish out of order,
so the id of the job that finished last is not that. The group knows the
true watermark: XREADGROUP `>` hands entries out in id order, so every entry
below the oldest pending one (XPENDING's smallest id) has been acknowledged.
After each acknowledgement one Lua script, atomically:

- XACK the entry;
- computes the watermark: the entry just before the oldest pending one, or,
  with nothing pending, the group's `last-delivered-id`;
- SETs the key only when that is greater than what it holds (ids compared
  numerically as `<ms>-<seq>`), so the key only ever moves forward even
  when replicas race.

The key is what a lost group is rebuilt from (XGROUP CREATE … <offset>
MKSTREAM; `0` when there is no key) and what operators read to see
progress; delivery itself is guaranteed by the group's pending entries list.

A job's answer is one step too
------------------------------
The same script publishes a job's result (and, for a job given up after
too many deliveries, its dead-letter copy) only while the entry is still
pending, then acknowledges it. So an answer and its acknowledgement never
part, and an entry is answered at most once: a step retried after a lost
reply, or a peer finishing a job it claimed from a replica that finished it
too, finds the entry acknowledged and publishes nothing. The entry is
checked with XPENDING before anything is written, so a failing XADD leaves
it pending rather than acknowledged and unanswered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from rtm_core.domain.ordering import order_key
from rtm_core.domain.wire import JobResult

log = logging.getLogger(__name__)


# KEYS: stream, offset key[, results stream[, dead-letter stream]].
# ARGV: group, entry id to ack ("" = only recompute)[, MAXLEN of the streams
# written ("0" = none), number N of result arguments, the result's N
# field/value arguments, the dead-letter copy's field/value arguments].
# Returns {1 when an answer was published else 0, the offset the key holds
# afterwards or ""}.
_ACK_AND_ADVANCE = """
local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)-(%d+)$')
  if not ms then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function greater(a, b)
  local x, y = parse(a), parse(b)
  if not x then return false end
  if not y then return true end
  return x[1] > y[1] or (x[1] == y[1] and x[2] > y[2])
end
local function xadd(key, first, last)
  local fields = {}
  for i = first, last do fields[#fields + 1] = ARGV[i] end
  if ARGV[3] ~= '0' then
    redis.call('XADD', key, 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
  else
    redis.call('XADD', key, '*', unpack(fields))
  end
end
local published = 0
if ARGV[2] ~= '' then
  local open = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  if KEYS[3] and #open > 0 then
    local n = tonumber(ARGV[4])
    xadd(KEYS[3], 5, 4 + n)
    if KEYS[4] then xadd(KEYS[4], 5 + n, #ARGV) end
    published = 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
end
local mark = nil
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] == 0 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, last = nil, nil
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'last-delivered-id' then last = group[i + 1] end
    end
    if name == ARGV[1] then mark = last end
  end
else
  local before = redis.call('XREVRANGE', KEYS[1], '(' .. pending[2], '-', 'COUNT', 1)
  if #before > 0 then mark = before[1][1] end
end
local current = redis.call('GET', KEYS[2])
if mark and mark ~= '0-0' and greater(mark, current) then
  redis.call('SET', KEYS[2], mark)
  current = mark
end
return {published, current or ''}
"""

# KEYS: stream. ARGV: group, consumer, ids… Resets the idle time of the ids
# this consumer still owns, so a peer never claims a job that is running.
_TOUCH = """
local touched = 0
for i = 3, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if entry[1] and entry[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
"""


@dataclass(frozen=True)
class DeadLetterCopy:
    """Where a given-up job's copy goes, and the copy's fields in order."""

    stream: str
    fields: Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Completion:
    #: False: the entry had been answered and acknowledged already; nothing was written.
    published: bool
    #: What the offset key holds afterwards.
    offset: str | None


class GroupState:
    """One stream's consumer group, seen from one consumer."""

    def __init__(
        self, redis: Redis, *, stream: str, group: str, consumer: str, offset_key: str
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.offset_key = offset_key
        self._ack = redis.register_script(_ACK_AND_ADVANCE)
        self._touch = redis.register_script(_TOUCH)

    async def ensure_group(self) -> None:
        """Create the group if missing: from the persisted offset, else from 0."""
        offset = await self.redis.get(self.offset_key)
        start = str(offset) if offset is not None else "0"
        if not _is_entry_id(start):
            log.warning(
                "stream offset key holds no entry id; creating the group from 0",
                extra={"offset_key": self.offset_key, "value": start},
            )
            start = "0"
        try:
            await self.redis.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
            return
        log.info(
            "consumer group created",
            extra={"stream": self.stream, "group": self.group, "from_id": start},
        )

    async def complete(
        self,
        entry_id: str,
        *,
        results_stream: str,
        result: JobResult,
        maxlen: int,
        dead_letter: DeadLetterCopy | None = None,
    ) -> Completion:
        """Publish `result` (and `dead_letter`), acknowledge `entry_id` and move the
        offset, as one step; publishes nothing for an entry no longer pending.

        This is the only writer of `runtime:job_results` and of the dead-letter
        stream, so a job's answer and its acknowledgement cannot part; the
        result entry is `JobResult.fields()`, the wire's one encoder, in its order.
        """
        answer = [v for pair in result.fields().items() for v in pair]
        keys = [self.stream, self.offset_key, results_stream]
        args: list[str | bytes] = [self.group, entry_id, str(maxlen), str(len(answer)), *answer]
        if dead_letter is not None:
            keys.append(dead_letter.stream)
            args.extend(v for pair in dead_letter.fields for v in pair)
        published, offset = await self._ack(keys=keys, args=args)
        return Completion(bool(int(published)), str(offset) or None)

    async def ack(self, entry_id: str = "") -> str | None:
        """Acknowledge `entry_id` and move the offset key forward; returns the offset.
        With no id, only moves the offset (at shutdown)."""
        _published, offset = await self._ack(
            keys=[self.stream, self.offset_key], args=[self.group, entry_id]
        )
        return str(offset) or None

    async def deliveries(self, entry_ids: Sequence[str], *, also_owned: int = 0) -> dict[str, int]:
        """How often each of this consumer's pending `entry_ids` has been delivered
        (XPENDING's count, raised by every read of the entry and every claim):
        one XPENDING over the ids' range. `also_owned` is how many other entries of
        this consumer may lie in that range (in flight), so the reply covers all."""
        if not entry_ids:
            return {}
        ordered = sorted(entry_ids, key=order_key)
        pending = await self.redis.xpending_range(
            self.stream,
            self.group,
            min=ordered[0],
            max=ordered[-1],
            count=len(ordered) + also_owned,
            consumername=self.consumer,
        )
        wanted = set(entry_ids)
        return {
            str(p["message_id"]): int(p["times_delivered"])
            for p in pending
            if str(p["message_id"]) in wanted
        }

    async def touch(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        touched = await self._touch(
            keys=[self.stream], args=[self.group, self.consumer, *entry_ids]
        )
        return int(touched)

    async def backlog(self) -> tuple[int, int | None]:
        """(pending, lag) of the group, as XINFO GROUPS reports them."""
        for info in await self.redis.xinfo_groups(self.stream):
            if info["name"] == self.group:
                lag = info.get("lag")
                return int(info["pending"]), None if lag is None else int(lag)
        return 0, None


def _is_entry_id(value: str) -> bool:
    ms, sep, seq = value.partition("-")
    return value == "0" or (sep == "-" and ms.isdigit() and seq.isdigit())
