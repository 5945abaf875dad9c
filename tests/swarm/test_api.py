"""The REST contract (tests/api) against the swarm backend: the same functions,
this directory's fixtures (a one-node swarm; the `docker` view in which a
game's container is its service). What a caller of rtm-api sees — every
status, envelope and RuntimeRecord field — is the same on both backends.
"""

from __future__ import annotations

from api.test_http_edge import (  # noqa: F401  (collected here, run on the swarm)
    test_health_and_readiness,
    test_the_token_guards_the_api_but_not_health,
    test_unknown_routes_and_methods_use_the_envelope,
)
from api.test_runtimes import (  # noqa: F401
    test_a_bad_reason_is_invalid_request_and_touches_nothing,
    test_a_game_id_outside_the_grammar_writes_nothing,
    test_a_held_lease_is_operation_in_progress,
    test_a_malformed_body_is_invalid_request,
    test_a_refused_patch_is_400_and_touches_nothing,
    test_an_unknown_game_is_not_found,
    test_cleanup_refuses_running_then_removes_a_stopped_container,
    test_docker_failures_are_502,
    test_every_reason_of_001_stops,
    test_invalid_image_ref_is_start_config_invalid_as_001_shows_it,
    test_list_all_runtimes_and_filter_by_status,
    test_operations_are_newest_first_with_the_callers_source,
    test_patch_moves_to_the_new_patch_version,
    test_restart_recreates_with_the_current_image,
    test_start_again_with_the_same_image_is_a_replay,
    test_start_then_probe_answer_the_record_as_001_shows_it,
    test_start_while_another_image_runs_is_a_conflict,
    test_stop_keeps_the_container_and_records_stopped,
)
