"""Task state changes as engine events, for engines on nodes other than the manager.

Docker's event stream is node-local for containers: a manager reports the
deaths of the task containers it runs itself, and nothing about the others
(there is no `task` event type in API 1.41). `TaskTransitions` fills that
gap: the adapter lists this stack's tasks every poll interval and this class
turns what changed since the previous list into the `EngineEvent`s the
watcher already understands:

- a task of another node that reaches `running` → `start`;
- a task of another node that ran and ended (complete, failed after running,
  shut down while running — a drain, a scale to 0) → `die` with the task's
  exit code. A task that never ran (rejected, bad mount, no image) is a
  failed start, which `create_and_start` reports; it is not a death.

The first list is a baseline and yields nothing: deaths from before the
subscription are the watcher's catch-up pass's (it inspects every `running`
record after each (re)subscription). Events carry the service id as their
`container_id`, the id the lifecycle stores and marks in ExpectedExits, so
a stop RTM caused is silenced exactly as on the docker backend. OOM kills on
other nodes are not visible through the manager (a task only says `non-zero
exit (137)`): they arrive as `die` 137 and are reported as
`container_exited` {exit_code: 137, oom: false}.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rtm_core.adapters.swarm_spec import ENDED_TASK_STATES, task_exit_code, task_ran
from rtm_core.domain.engine import EngineEvent, parse_docker_time


def _time_nano(task: dict[str, Any]) -> int:
    stamp = parse_docker_time((task.get("Status") or {}).get("Timestamp"))
    return int(stamp.timestamp() * 1_000_000_000) if stamp else 0


class TaskTransitions:
    """Each task's last seen state, and the events its changes amount to."""

    def __init__(self, local_node: str | None) -> None:
        self._local_node = local_node
        self._seen: dict[str, str] | None = None

    def update(
        self, services: dict[str, dict[str, Any]], tasks: Iterable[dict[str, Any]]
    ) -> list[EngineEvent]:
        """`services` by id (this stack's), `tasks` of those services: the events since
        the previous call (none on the first, which only records the baseline)."""
        baseline = self._seen is None
        previous = self._seen or {}
        seen: dict[str, str] = {}
        events: list[EngineEvent] = []
        for task in tasks:
            task_id = str(task.get("ID") or "")
            state = str((task.get("Status") or {}).get("State") or "")
            seen[task_id] = state
            service = services.get(str(task.get("ServiceID") or ""))
            if baseline or service is None or task.get("NodeID") == self._local_node:
                continue
            before = previous.get(task_id)
            if before == state:
                continue
            if event := self._event(task, service, before, state):
                events.append(event)
        self._seen = seen
        return events

    @staticmethod
    def _event(
        task: dict[str, Any], service: dict[str, Any], before: str | None, state: str
    ) -> EngineEvent | None:
        labels = dict((service.get("Spec") or {}).get("Labels") or {})
        service_id = str(service["ID"])
        if state == "running":
            return EngineEvent("start", service_id, labels, _time_nano(task), None)
        ended_now = state in ENDED_TASK_STATES and before not in ENDED_TASK_STATES
        if ended_now and (before == "running" or task_ran(task)):
            return EngineEvent("die", service_id, labels, _time_nano(task), task_exit_code(task))
        return None
