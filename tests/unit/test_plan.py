"""The run-or-skip decision: a named action and a reason that says why."""

from __future__ import annotations

import json
from typing import Any

from analysis_wrapper.run.decision import Action, Decision, decide
from analysis_wrapper.stores.claims import Claim, Failure, Owner

KEY = "9f" * 32
RECORD: dict[str, Any] = {
    "_id": KEY,
    "name": KEY,
    "processing": {
        "data_processes": [
            {
                "start_date_time": "2025-06-25T00:12:35Z",
                "end_date_time": "2025-06-25T00:12:41Z",
                "code": {"version": "ec09a2d4ad9d8fde521890b9c5ad6f6e03c8d3b7"},
            }
        ]
    },
}


def test_action_values_are_exactly_the_documented_ones() -> None:
    """The action set is named and closed: run, skip, invalid, in-progress, failed."""
    assert {action.value for action in Action} == {
        "run",
        "skip",
        "invalid",
        "in-progress",
        "failed",
    }
    assert len(Action) == 5


def test_action_values_are_the_json_words() -> None:
    """Each action is a str that serialises to its word, as written in plan.json."""
    assert isinstance(Action.RUN, str)
    assert json.dumps([Action.RUN, Action.SKIP, Action.INVALID]) == '["run", "skip", "invalid"]'
    assert Action("skip") is Action.SKIP


def test_no_record_runs() -> None:
    """No record under the key: the job runs, and the reason says so."""
    decision = decide(None, force=False)
    assert isinstance(decision, Decision)
    assert decision.action is Action.RUN
    assert "no record" in decision.reason


def test_no_record_with_force_runs() -> None:
    """--force 1 with no record still simply runs."""
    decision = decide(None, force=True)
    assert decision.action is Action.RUN
    assert "no record" in decision.reason


def test_existing_record_skips_naming_it() -> None:
    """A record under the key: skip, naming its _id, when it was written, and the code version."""
    decision = decide(RECORD, force=False)
    assert decision.action is Action.SKIP
    assert KEY in decision.reason
    assert "2025-06-25T00:12:41Z" in decision.reason
    assert "ec09a2d4ad9d8fde521890b9c5ad6f6e03c8d3b7" in decision.reason


def test_force_runs_naming_the_replaced_record() -> None:
    """--force 1 over a record: run, and say which record is replaced."""
    decision = decide(RECORD, force=True)
    assert decision.action is Action.RUN
    assert "--force" in decision.reason
    assert "replac" in decision.reason
    assert KEY in decision.reason


def test_earlier_job_with_same_key_skips_naming_it() -> None:
    """A second job with the key of an earlier one in this run skips, naming the earlier job."""
    decision = decide(None, force=False, earlier_job="/in/job_dict/a.json")
    assert decision.action is Action.SKIP
    assert "/in/job_dict/a.json" in decision.reason


def test_earlier_job_skips_even_with_force() -> None:
    """Even with --force 1 the same key does its work once per run."""
    decision = decide(RECORD, force=True, earlier_job="a.json")
    assert decision.action is Action.SKIP
    assert "a.json" in decision.reason


def test_skip_reason_for_a_minimal_record() -> None:
    """A record with only an _id still gives a readable reason, naming it."""
    decision = decide({"_id": "abc"}, force=False)
    assert decision.action is Action.SKIP
    assert "abc" in decision.reason


def test_decide_never_returns_invalid() -> None:
    """A job with a valid key is never invalid; that action belongs to bad job files."""
    cases = [(None, False, None), (RECORD, False, None), (RECORD, True, None), (None, True, "a")]
    for existing, force, earlier in cases:
        assert decide(existing, force=force, earlier_job=earlier).action is not Action.INVALID


def test_record_without_manifest_runs_again_as_orphan() -> None:
    """A record whose manifest is missing is an orphan: the job runs, naming why."""
    record = {**RECORD, "location": "s3://bucket/prefix/" + KEY}
    decision = decide(record, force=False, manifest_found=False)
    assert decision.action is Action.RUN
    assert "orphaned" in decision.reason
    assert record["location"] in decision.reason


def test_record_whose_manifest_cannot_be_checked_is_trusted() -> None:
    """manifest_found None (another kind of store) keeps the skip."""
    assert decide(RECORD, force=False, manifest_found=None).action is Action.SKIP
    assert decide(RECORD, force=False, manifest_found=True).action is Action.SKIP


NOW = 1_800_000_000.0


def claim(state: str, *, lease_left: float = 60.0, failure: Failure | None = None) -> Claim:
    return Claim(
        KEY,
        Owner("node-3", 77, "feedbeef" * 4),
        2,
        state,  # type: ignore[arg-type]
        NOW - 300,
        NOW - 10,
        NOW + lease_left,
        2,
        failure,
    )


def test_a_live_claim_elsewhere_is_in_progress() -> None:
    """No record, a live claim: the job is in progress elsewhere, and the reason says where."""
    decision = decide(None, force=False, claim=claim("running"), now=NOW)
    assert decision.action is Action.IN_PROGRESS
    assert "node-3 pid 77 (run feedbeef)" in decision.reason
    assert "started 5 min ago" in decision.reason and "heartbeat 10 s ago" in decision.reason


def test_force_does_not_run_over_a_live_claim() -> None:
    """--force 1 replaces a record, never races a worker that holds the key."""
    decision = decide(RECORD, force=True, claim=claim("running"), now=NOW)
    assert decision.action is Action.IN_PROGRESS


def test_an_expired_claim_runs_with_the_takeover_named() -> None:
    """A claim past its lease is taken over: the reason says from whom."""
    decision = decide(None, force=False, claim=claim("running", lease_left=-5), now=NOW)
    assert decision.action is Action.RUN
    assert "taking over from node-3 pid 77" in decision.reason


def test_a_failed_claim_is_failed_until_retry_failed() -> None:
    """A failure blocks the job with its error; --retry_failed 1 runs it."""
    failed = claim("failed", failure=Failure("ValueError", "bad session"))
    blocked = decide(None, force=False, claim=failed, now=NOW)
    assert blocked.action is Action.FAILED
    assert "ValueError: bad session" in blocked.reason and "2 attempt(s)" in blocked.reason
    assert "--retry_failed 1" in blocked.reason
    retried = decide(None, force=False, claim=failed, now=NOW, retry_failed=True)
    assert retried.action is Action.RUN and "--retry_failed 1" in retried.reason


def test_a_record_wins_over_any_claim() -> None:
    """A record means done, whatever a claim says."""
    for state in ("running", "failed", "done"):
        assert decide(RECORD, force=False, claim=claim(state), now=NOW).action is Action.SKIP


def test_finished_or_released_claims_do_not_block() -> None:
    """A done claim without a record (deleted) or a released one: the job runs."""
    for state in ("done", "released"):
        decision = decide(None, force=False, claim=claim(state), now=NOW)
        assert decision == Decision(Action.RUN, "no record with this key")
