"""The stream contract (tests/jobs) against the swarm backend: the same functions,
this directory's fixtures. Every `runtime:job_results` entry — fields, order,
replay, failure codes — is the same on both backends.
"""

from __future__ import annotations

from jobs.test_streams import (  # noqa: F401  (collected here, run on the swarm)
    test_a_job_waits_for_a_busy_lease_at_most_one_ttl,
    test_a_start_job_written_twice_is_a_replay,
    test_games_run_side_by_side_and_each_game_in_stream_order,
    test_offset_keys_hold_the_last_fully_processed_id,
    test_poison_entries_are_answered_or_dropped_and_never_block,
    test_start_failure_gets_the_failure_envelope,
    test_start_job_of_001_gets_the_success_envelope,
    test_stop_jobs_get_results_success_replay_and_not_found,
)
