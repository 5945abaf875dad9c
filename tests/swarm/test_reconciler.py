"""The reconciler's three drifts and retention cleanup (tests/reconciler) against
the swarm backend, through this directory's fixtures.

On this backend the drifts are made the swarm way by the `docker` view: a
vanished engine is a service removed behind RTM's back (`docker service rm`),
an engine that exits is its task ending, an operator's hand-made engine is a
labelled service. The rules checked are the same functions' as on docker.
"""

from __future__ import annotations

from reconciler.test_cleanup import (  # noqa: F401  (collected here, run on the swarm)
    test_a_tiny_retention_cleans_a_just_stopped_runtime,
    test_only_runtimes_stopped_past_retention_are_cleaned,
)
from reconciler.test_reconcile_pass import (  # noqa: F401
    test_a_busy_game_is_skipped_and_the_pass_goes_on,
    test_a_failing_game_is_logged_and_the_pass_goes_on,
    test_a_manual_container_replaces_a_vanished_engine,
    test_a_stopping_process_aborts_before_the_next_lease,
    test_an_engine_in_sync_writes_nothing,
    test_an_extra_container_beside_a_live_record_is_left_alone,
    test_containers_of_another_stack_or_without_owner_are_untouched,
    test_exited_engine_is_observed_as_stopped,
    test_hand_started_labelled_container_is_adopted,
    test_vanished_container_is_disposed,
)
