"""Skipped jobs' figures for the report, copied from real embedded stores."""

from __future__ import annotations

from pathlib import Path

from analysis_wrapper.report.figures import FIGURES_FOLDER, FIGURES_PER_JOB, stored_figures
from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.manifest import build_manifest
from analysis_wrapper.stores.sqlite import SqliteRecordStore

KEY = "ab" * 32


def published(
    tmp_path: Path, files: dict[str, bytes], manifest_extra: list[dict[str, object]]
) -> tuple[SqliteRecordStore, LocalResultStore, str]:
    """A result published to a local store and its record: (records, results, location)."""
    folder = tmp_path / "work"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = build_manifest(KEY, folder)
    manifest["files"] += manifest_extra
    results = LocalResultStore(tmp_path / "store")
    location = results.publish(KEY, "attempt-1", folder, manifest)
    records = SqliteRecordStore(tmp_path / "records.sqlite", "t")
    records.put({"_id": KEY, "location": location})
    return records, results, location


def test_a_skipped_jobs_figures_are_copied_next_to_the_report(tmp_path: Path) -> None:
    """The PNGs its manifest lists (four at most) are copied; other files are not."""
    pngs = {f"plots/fig{n}.png": b"\x89PNG fig %d" % n for n in range(6)}
    records, results, location = published(tmp_path, {**pngs, "units.csv": b"a,b\n"}, [])
    report_dir = tmp_path / "results"
    report_dir.mkdir()
    found = stored_figures(report_dir, [KEY, "cd" * 32], records, results)
    assert list(found) == [KEY]  # the other key has no record
    figures = found[KEY]
    assert figures.location == location and figures.folder is None
    assert len(figures.figures) == FIGURES_PER_JOB and figures.more == 2
    for relative in figures.figures:
        copy = report_dir / relative
        assert relative.startswith(f"{FIGURES_FOLDER}/{KEY}/plots/")
        assert copy.read_bytes() == pngs[relative.split(f"{KEY}/", 1)[1]]
    assert not list(report_dir.rglob("*.csv"))


def test_a_manifest_path_leaving_the_folder_is_never_followed(tmp_path: Path) -> None:
    """A manifest read from a store names ``../``: nothing is copied outside the folder."""
    outside = [{"path": "../../escape.png", "size": 3, "sha256": "0" * 64}]
    records, results, _ = published(tmp_path, {"ok.png": b"png"}, outside)
    report_dir = tmp_path / "results"
    report_dir.mkdir()
    figures = stored_figures(report_dir, [KEY], records, results)[KEY]
    assert figures.figures == [f"{FIGURES_FOLDER}/{KEY}/ok.png"]
    assert not list(tmp_path.rglob("escape.png"))


def test_figures_already_in_the_results_folder_are_used_as_they_are(tmp_path: Path) -> None:
    """An earlier run wrote <key>/ into this results folder: nothing is copied."""
    records, results, _ = published(tmp_path, {"units.png": b"png"}, [])
    report_dir = tmp_path / "results"
    (report_dir / KEY).mkdir(parents=True)
    (report_dir / KEY / "units.png").write_bytes(b"local png")
    figures = stored_figures(report_dir, [KEY], records, results)[KEY]
    assert (figures.folder, figures.figures) == (KEY, [f"{KEY}/units.png"])
    assert not (report_dir / FIGURES_FOLDER).exists()
