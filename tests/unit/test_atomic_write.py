"""Atomic writes: a file is replaced whole or not at all, and no temporary file stays."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.common import atomic_write
from analysis_wrapper.common.atomic_write import fsync_directory, write_atomic, write_json
from analysis_wrapper.report.html import write_report
from analysis_wrapper.run.context import RunSummary


class _Unserialisable:
    """A value json.dumps reaches only after writing the items before it."""


def _fsynced_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every descriptor os.fsync is called with (Linux /proc)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_write_json_writes_indented_utf8_json(tmp_path: Path) -> None:
    """The file holds the value as indented UTF-8 JSON with a final newline."""
    path = tmp_path / "run_summary.json"
    write_json(path, {"name": "Zählung", "jobs": [1, 2]})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"name": "Zählung", "jobs": [1, 2]}
    assert text.endswith("\n") and "Zählung" in text and '\n  "jobs"' in text


def test_value_that_cannot_be_serialised_leaves_the_previous_file(tmp_path: Path) -> None:
    """A serialisation that fails halfway through the value changes nothing on disk."""
    path = tmp_path / "plan.json"
    write_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"a": list(range(1000)), "z": _Unserialisable()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_failed_rename_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When os.replace fails, the old content stays and the temporary file is removed."""
    path = tmp_path / "run_summary.json"
    write_json(path, {"old": True})

    def replace(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        write_json(path, {"new": True})
    assert json.loads(path.read_text(encoding="utf-8")) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_summary.json"]


def test_failed_write_midway_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails after some bytes (here at the fsync) never reaches the target."""
    path = tmp_path / "report.html"
    write_atomic(path, "<p>old</p>")

    def fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        write_atomic(path, "<p>new</p>" * 10_000)
    assert path.read_text(encoding="utf-8") == "<p>old</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_durable_write_fsyncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file is fsynced before os.replace, the folder after it."""
    events: list[str] = []
    seen = _fsynced_paths(monkeypatch)
    real_replace = os.replace

    def replace(source: Any, target: Any) -> None:
        events.extend(f"fsync {p}" for p in seen)
        seen.clear()
        events.append(f"replace {Path(source).name} {Path(target).name}")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    write_atomic(tmp_path / "plan.json", "[]")
    events.extend(f"fsync {p}" for p in seen)
    assert len(events) == 3
    assert events[0].startswith(f"fsync {tmp_path}/.plan.json.") and events[0].endswith(".tmp")
    assert events[1].startswith("replace .plan.json.") and events[1].endswith(" plan.json")
    assert events[2] == f"fsync {tmp_path}"


def test_write_that_is_not_durable_does_not_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable=False (a job's work folder) is atomic but costs no fsync."""
    seen = _fsynced_paths(monkeypatch)
    write_json(tmp_path / "metadata.nd.json", {"a": 1}, durable=False)
    assert seen == []
    assert json.loads((tmp_path / "metadata.nd.json").read_text()) == {"a": 1}


def test_fsync_directory_opens_the_folder_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync_directory fsyncs the folder's own descriptor."""
    seen = _fsynced_paths(monkeypatch)
    fsync_directory(tmp_path)
    assert seen == [str(tmp_path)]


def test_report_write_that_fails_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.html goes through write_atomic: a failed rename keeps the old report whole."""
    (tmp_path / "report.html").write_text("<p>previous run</p>", encoding="utf-8")

    def replace(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    assert write_report(tmp_path, RunSummary(dry_run=True)) is None
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == "<p>previous run</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_job_run_write_json_is_atomic_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """job_run.write_json (a work folder's files) replaces whole and never fsyncs."""
    from analysis_wrapper.run.job import write_json as write_work_json

    path = tmp_path / "metadata.nd.json"
    seen = _fsynced_paths(monkeypatch)
    write_work_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_work_json(path, {"new": _Unserialisable()})
    assert seen == []
    assert json.loads(path.read_text(encoding="utf-8")) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.nd.json"]


def test_runner_writes_plan_and_summary_through_the_helper() -> None:
    """plan.json and run_summary.json are written by the durable, atomic helper."""
    from analysis_wrapper.run import runner

    assert runner._write_json is atomic_write.write_json
