"""Ship the capsule's code to Dask workers that have its environment but not its code.

A cluster's workers run the capsule's image (Python and the packages), but not its
``code/`` folder, and often not this framework either: a worker of a SLURM or
Kubernetes cluster cannot import ``run_capsule.py``'s helper modules. So an external
cluster gets, before any job, one zip holding the capsule's ``code/`` and the
``analysis_wrapper`` package the client imported; a :class:`ShippedCode` worker plugin
unpacks it into each worker's local directory and puts it first on that worker's
``sys.path``. The scheduler keeps the plugin and hands it to workers that join later,
before they get a task.

The scheduler unpickles every task it is sent, and it cannot import the capsule
either. So a task is :func:`run_shipped` with opaque bytes as arguments, and this
module is pickled *by value* (cloudpickle): it imports only the standard library and
``distributed``, which every worker and scheduler has. On the worker, the task puts
its own code first, then hands the bytes to :func:`analysis_wrapper.run.dask_worker.run_payload`
from the shipped copy.

One cluster serves one code version at a time: a task forgets modules of the shipped
names that another version (or the worker's own install) loaded, so runs one after
another each import their own code; runs of two versions *at once* on one cluster
are not supported.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from distributed.diagnostics.plugin import WorkerPlugin

SHIPPED_FOLDER = "analysis-wrapper-code"
"""Under each worker's local directory: one folder per shipped code version."""

SKIPPED_DIRECTORIES = frozenset(
    {
        ".git",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".venv",
        "venv",
        "node_modules",
    }
)
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries carry no mtime: same code, same digest


def build_archive(
    folders: Mapping[str, Path], skip_top: Iterable[str] = ()
) -> tuple[bytes, str, tuple[str, ...]]:
    """Zip ``folders`` (archive prefix -> folder) into a deterministic archive.

    Entries of the folder at prefix ``""`` whose first part is in ``skip_top`` are left
    out (another folder of ``folders`` provides them).

    Returns
    -------
    tuple
        The archive's bytes, its sha256 (hex), and the top-level module and package
        names it holds (what a worker must import from it, not from elsewhere).
    """
    skipped = frozenset(skip_top)
    entries: dict[str, Path] = {}
    for prefix, folder in folders.items():
        for path in _files_under(folder):
            name = path.relative_to(folder).as_posix()
            if not prefix and name.partition("/")[0] in skipped:
                continue
            entries[f"{prefix}/{name}" if prefix else name] = path
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name].read_bytes())
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest(), top_level_names(entries)


def top_level_names(archive_names: Iterable[str]) -> tuple[str, ...]:
    """The importable top-level names of archive paths: ``a.py`` -> a, ``p/x.py`` -> p."""
    names = set()
    for name in archive_names:
        first, _, rest = name.partition("/")
        if rest and first.isidentifier():
            names.add(first)
        elif not rest and first.endswith(".py") and first[:-3].isidentifier():
            names.add(first[:-3])
    return tuple(sorted(names))


def _files_under(folder: Path) -> list[Path]:
    found = []
    for root, directories, files in os.walk(folder):
        directories[:] = sorted(
            d for d in directories if d not in SKIPPED_DIRECTORIES and not d.endswith(".egg-info")
        )
        for file in sorted(files):
            if not file.endswith(SKIPPED_SUFFIXES):
                found.append(Path(root, file))
    return found


class ShippedCode(WorkerPlugin):
    """A worker plugin: unpack the shipped code and import from it first.

    Parameters
    ----------
    archive : bytes
        The zip from :func:`build_archive`.
    digest : str
        Its sha256; names the folder it is unpacked into.
    names : tuple of str
        The top-level modules and packages it holds.
    """

    def __init__(self, archive: bytes, digest: str, names: tuple[str, ...]) -> None:
        self.archive = archive
        self.digest = digest
        self.names = names
        self.name = f"{SHIPPED_FOLDER}-{digest[:16]}"

    def setup(self, worker: Any) -> None:
        """Unpack the archive (once per worker directory) and put it first on ``sys.path``."""
        folder = shipped_folder(worker.local_directory, self.digest)
        if not folder.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{self.digest[:16]}-", dir=folder.parent))
            with zipfile.ZipFile(io.BytesIO(self.archive)) as archive:
                archive.extractall(staging)
            try:
                os.replace(staging, folder)
            except OSError:  # another process of this worker unpacked it first
                shutil.rmtree(staging, ignore_errors=True)
        activate(folder, self.names)

    def teardown(self, worker: Any) -> None:
        """Take the shipped folder off ``sys.path`` and forget what was imported from it."""
        folder = str(shipped_folder(worker.local_directory, self.digest))
        while folder in sys.path:
            sys.path.remove(folder)
        _forget(self.names, keep=None)


class ShippedRun(WorkerPlugin):
    """A worker plugin that holds one run's pickled context on every worker.

    The scheduler keeps it and gives it to workers that join later, so unlike
    scattered data it is not lost with the workers that held it.

    Parameters
    ----------
    run_id : str
        The run it belongs to; names the plugin.
    context : bytes
        The pickled :class:`~analysis_wrapper.run.context.RunContext`.
    """

    def __init__(self, run_id: str, context: bytes) -> None:
        self.name = run_plugin_name(run_id)
        self.context = context


def run_plugin_name(run_id: str) -> str:
    """The name of the :class:`ShippedRun` plugin of run ``run_id``."""
    return f"analysis-wrapper-run-{run_id}"


def shipped_folder(local_directory: str, digest: str) -> Path:
    """Where a worker keeps the code version ``digest``."""
    return Path(local_directory) / SHIPPED_FOLDER / digest[:16]


def activate(folder: Path, names: tuple[str, ...]) -> None:
    """Import ``names`` from ``folder`` from now on in this process.

    ``folder`` goes first on ``sys.path``, and modules of those names loaded from
    anywhere else (an earlier code version, the worker's own install) are forgotten.
    """
    entry = str(folder)
    if not sys.path or sys.path[0] != entry:
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
    _forget(names, keep=entry)


def _forget(names: tuple[str, ...], keep: str | None) -> None:
    """Drop modules ``names`` (and their submodules) not loaded from under ``keep``."""
    prefixes = tuple(f"{name}." for name in names)
    for module_name in list(sys.modules):
        if module_name not in names and not module_name.startswith(prefixes):
            continue
        origin = getattr(sys.modules[module_name], "__file__", None) or ""
        if keep is None or not os.path.abspath(origin).startswith(keep + os.sep):
            del sys.modules[module_name]


def run_shipped(job: bytes, *, run_id: str, shipment: tuple[str, tuple[str, ...]] | None) -> bytes:
    """A Dask task: run one pickled job of run ``run_id``; return the pickled result.

    The run's context comes from its :class:`ShippedRun` plugin on this worker.
    ``shipment`` (digest and names) is ``None`` when the workers import the code
    themselves (a LocalCluster). Whatever goes wrong comes back as bytes too: a worker
    that cannot even import the framework answers with a plain dict.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
        if shipment is not None:
            digest, names = shipment
            activate(shipped_folder(worker.local_directory, digest), names)
        from analysis_wrapper.run.dask_worker import run_payload

        run = cast(ShippedRun, worker.plugins[run_plugin_name(run_id)])
        result: bytes = run_payload(run.context, job)
        return result
    except Exception as exc:
        return pickle.dumps({"error": f"{type(exc).__name__}: {exc}"})
