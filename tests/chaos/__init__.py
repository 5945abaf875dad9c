"""The chaos drill (issue 10 §6): a realistic load on the compose stack while
faults are injected one after the other, then checks from outside.

Run it with `make chaos` (100 games, report under docs/drills/) or
`make chaos-ci` (20 games, report under .rtm-dev/drills/); `python -m chaos
--help` (with `tests` on PYTHONPATH) lists the options. It drives the stack
only through what a client of it has (Redis streams, REST, the Docker CLI's
API, host signals), through the helpers of tests/integration/compose.py.
See docs/runbook.md, "Chaos drill".
"""
