"""Where jobs run: one after another, in a process pool, or on a Dask cluster.

Every executor calls the same :func:`analysis_wrapper.runner.run_job` on each job and
hands each result back as soon as it is done. Correctness does not depend on the
executor: a job's files go to its own folder and its record is written last.

- ``serial``: in this process, in order (the default).
- ``process``: a pool of ``--workers`` processes on this machine (spawned, not forked,
  so threads of store clients are never copied mid-flight).
- ``dask``: an existing cluster at ``--scheduler_address`` (or
  ``DASK_SCHEDULER_ADDRESS``), whatever deploys it (dask-jobqueue on SLURM,
  Kubernetes, ...), or a LocalCluster of ``--workers`` processes when none is given.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .runner import JobResult, OnDone, PlannedJob, RunContext, Status, run_job, run_serially
from .settings import ExecutorKind

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

EXECUTORS: tuple[ExecutorKind, ...] = ("serial", "process", "dask")


@dataclass(frozen=True)
class ExecutorOptions:
    """How to run the jobs.

    Parameters
    ----------
    kind : {"serial", "process", "dask"}
        Where the jobs run.
    workers : int or None
        Pool size, or LocalCluster size; ``None`` means the number of CPUs.
    scheduler_address : str or None
        A running Dask scheduler (``tcp://host:port``); ``None`` starts a LocalCluster.
    """

    kind: ExecutorKind = "serial"
    workers: int | None = None
    scheduler_address: str | None = None

    @property
    def worker_count(self) -> int:
        """The number of workers to start."""
        return self.workers or os.cpu_count() or 1

    def __call__(self, jobs: Sequence[PlannedJob], context: RunContext, on_done: OnDone) -> None:
        """Run ``jobs`` with this executor (see :func:`execute`)."""
        execute(jobs, context, self, on_done)


def execute(
    jobs: Sequence[PlannedJob],
    context: RunContext,
    options: ExecutorOptions,
    on_done: OnDone,
) -> None:
    """Run ``jobs`` (indices into the sequence) and call ``on_done`` as each finishes.

    Raises
    ------
    ConfigError
        For an unknown executor, or Dask when it is not installed or unreachable.
    """
    if not jobs:
        return
    if options.kind == "serial":
        run_serially(jobs, context, on_done)
    elif options.kind == "process":
        _execute_in_pool(jobs, context, options.worker_count, on_done)
    elif options.kind == "dask":
        _execute_on_dask(jobs, context, options, on_done)
    else:
        raise ConfigError(f"--executor {options.kind!r}: choose one of {', '.join(EXECUTORS)}")


def _execute_in_pool(
    jobs: Sequence[PlannedJob], context: RunContext, workers: int, on_done: OnDone
) -> None:
    # Imported here: a serial run (the default) should not pay for them at start-up.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=spawn) as pool:
        futures = {pool.submit(run_job, job, context): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                result = _lost(jobs[index], f"its worker process died: {exc}")
            on_done(index, result)


def _execute_on_dask(
    jobs: Sequence[PlannedJob], context: RunContext, options: ExecutorOptions, on_done: OnDone
) -> None:
    try:
        from distributed import as_completed as dask_as_completed
    except ImportError as exc:
        raise ConfigError(
            "--executor dask needs dask.distributed; run: pip install 'aind-analysis-wrapper[dask]'"
        ) from exc
    with _dask_client(options, context) as client:
        shared = client.scatter(context, broadcast=True)
        futures = client.map(run_job, list(jobs), context=shared, pure=False)
        positions = {future.key: index for index, future in enumerate(futures)}
        for future in dask_as_completed(futures):
            index = positions[future.key]
            try:
                result = future.result()
            except Exception as exc:  # a worker lost, or the result could not travel back
                result = _lost(jobs[index], f"Dask could not run it: {type(exc).__name__}: {exc}")
            on_done(index, result)


@contextmanager
def _dask_client(options: ExecutorOptions, context: RunContext) -> Iterator[Client]:
    import dask.config
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import UploadDirectory

    address = options.scheduler_address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default.
            client = Client(address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address}: {exc}; check "
                "--scheduler_address (or DASK_SCHEDULER_ADDRESS) and that it is running"
            ) from exc
        try:
            if context.code_dir is not None:
                # Workers elsewhere cannot import the user's modules from code/ unless
                # they get a copy: the nanny puts one on each worker's sys.path.
                client.register_plugin(UploadDirectory(str(context.code_dir), update_path=True))
            yield client
        finally:
            client.close()
        return
    scratch = tempfile.mkdtemp(prefix="analysis-wrapper-dask-")
    cluster_options: dict[str, Any] = {
        "n_workers": options.worker_count,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",  # a free port, never the shared default 8787
        "host": "127.0.0.1",
        "local_directory": scratch,
    }
    try:
        with LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
            yield client
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _lost(job: PlannedJob, why: str) -> JobResult:
    message = f"{job.job_file}: {why}"
    log.error("%s", message)
    return JobResult(
        str(job.job_file), job.key, job.decision.action.value, Status.FAILED, error=message
    )
