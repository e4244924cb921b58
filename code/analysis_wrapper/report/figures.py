"""The figures a run's report shows: each job's own, or, for a skipped job, its stored ones.

A job that ran wrote its figures (``*.png``) into ``<results_directory>/<key>/``. A job
that was skipped ran in an earlier run, perhaps on another machine or in another Code
Ocean run whose results folder is gone: its figures are in the result store, in the
folder its record names. They are copied from there (through the result store, so a
local folder and S3 alike) into ``<results_directory>/report_figures/<key>/``, where
the report links them, unless ``<results_directory>/<key>/`` already holds figures (an
earlier run wrote them into this same results folder; same key, same result).

Only files the published manifest lists are copied, at most :data:`FIGURES_PER_JOB` per
job, each at most :data:`MAX_FIGURE_BYTES`. Nothing here fails a run: a record or a
figure that cannot be read is one warning, and that row shows no figure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..common.redact import mask_url
from ..stores.base import RecordStore, ResultStore

log = logging.getLogger(__name__)

FIGURES_FOLDER = "report_figures"
"""Under the results folder: the copies of skipped jobs' stored figures."""
FIGURES_PER_JOB = 4
"""A row shows this many figures at most; its folder link leads to the rest."""
MAX_FIGURE_BYTES = 20 * 1024 * 1024
"""A stored figure larger than this is not copied for the report."""
FETCH_THREADS = 8
"""Stored figures copied at once (each is one request to a remote store)."""


@dataclass(frozen=True)
class JobFigures:
    """Where one job's result is, and its figures, as paths relative to the report.

    Parameters
    ----------
    folder : str or None
        The job's local folder relative to the results folder (``<key>``), if it exists.
    location : str or None
        Where the result is stored (the record's ``location``), for a job with a record.
    figures : list of str
        The figures' POSIX paths relative to the results folder, sorted.
    more : int
        How many more figures the job has than are listed.
    """

    folder: str | None = None
    location: str | None = None
    figures: list[str] = field(default_factory=list)
    more: int = 0


def local_figures(results_directory: Path, key: str) -> JobFigures:
    """The figures a run wrote into ``<results_directory>/<key>/`` (none if no folder)."""
    folder = results_directory / key
    if not folder.is_dir():
        return JobFigures()
    found = sorted(p.relative_to(results_directory).as_posix() for p in folder.rglob("*.png"))
    return JobFigures(key, None, found[:FIGURES_PER_JOB], max(0, len(found) - FIGURES_PER_JOB))


def stored_figures(
    results_directory: Path,
    keys: Iterable[str],
    record_store: RecordStore,
    result_store: ResultStore,
) -> dict[str, JobFigures]:
    """Each skipped key's stored location and figures, copied next to the report.

    Parameters
    ----------
    results_directory : Path
        The run's results folder; copies go to ``report_figures/<key>/`` in it.
    keys : iterable of str
        The keys of the jobs that were skipped.
    record_store, result_store
        Where the records and their published folders are.

    Returns
    -------
    dict
        Key to its figures, for each key whose record was found.
    """
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    try:
        records = record_store.get_many(wanted)
    except Exception as exc:
        log.warning("report: could not read the skipped jobs' records: %s", mask_url(str(exc)))
        return {}
    locations = {
        key: record["location"]
        for key, record in records.items()
        if isinstance(record.get("location"), str)
    }
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        found = pool.map(
            lambda item: _one_job(results_directory, item[0], item[1], result_store),
            sorted(locations.items()),
        )
        return dict(zip(sorted(locations), found, strict=True))


def _one_job(results_directory: Path, key: str, location: str, store: ResultStore) -> JobFigures:
    here = local_figures(results_directory, key)
    if here.figures:
        return JobFigures(here.folder, location, here.figures, here.more)
    try:
        manifest = store.read_manifest(location)
        listed = _listed_figures(manifest or {})
        copied = []
        for relative in listed[:FIGURES_PER_JOB]:
            target = results_directory / FIGURES_FOLDER / key / relative
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                if not store.download(location, relative, target):
                    break  # another kind of store: nothing of it can be read here
            copied.append(target.relative_to(results_directory).as_posix())
    except Exception as exc:
        log.warning("report: could not copy the figures of %s: %s", key[:12], mask_url(str(exc)))
        return JobFigures(here.folder, location)
    return JobFigures(here.folder, location, copied, max(0, len(listed) - len(copied)))


def _listed_figures(manifest: Mapping[str, object]) -> list[str]:
    """The manifest's PNGs small enough to copy, with safe relative paths, sorted."""
    files = manifest.get("files")
    figures = []
    for entry in files if isinstance(files, list) else []:
        path = entry.get("path") if isinstance(entry, dict) else None
        size = entry.get("size", 0) if isinstance(entry, dict) else 0
        if not isinstance(path, str) or not path.lower().endswith(".png"):
            continue
        parts = PurePosixPath(path).parts
        # A manifest is read from a store: a path must stay inside the job's folder.
        if not parts or path.startswith("/") or ".." in parts or "\\" in path:
            continue
        if isinstance(size, int) and size <= MAX_FIGURE_BYTES:
            figures.append(path)
    return sorted(figures)
