"""The run-or-skip decision: a named action and a reason that says why."""

from __future__ import annotations

import json
from typing import Any

from analysis_wrapper.plan import Action, Decision, decide

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


def test_action_values_are_exactly_run_skip_invalid() -> None:
    """The action set is named and closed: run, skip, invalid."""
    assert {action.value for action in Action} == {"run", "skip", "invalid"}
    assert len(Action) == 3


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
