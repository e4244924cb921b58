"""Where jobs run: one after another, in a process pool, or on a Dask cluster.

Every executor calls the same :func:`analysis_wrapper.run.runner.run_job` on each job and
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

import contextlib
import logging
import os
import pickle
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.settings import ExecutorKind
from ..errors import ConfigError
from .runner import JobResult, OnDone, PlannedJob, RunContext, Status, run_job, run_serially

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

    # The context goes to each worker process once (its stores then keep one
    # connection per process), not once per job.
    blob = _pickled_context(context, "process", pickle.dumps)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=spawn,
        initializer=_adopt_context,
        initargs=(blob,),
    ) as pool:
        futures = {pool.submit(_run_in_pool, job): index for index, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    result = _lost(jobs[index], f"its worker process died: {exc}")
                except Exception as exc:  # the job or its result could not travel
                    why = f"the process pool could not run it: {_one_line(exc)}"
                    result = _lost(jobs[index], why)
                on_done(index, result)
        except KeyboardInterrupt:
            # Leaving the pool would wait for every job to end: stop its workers
            # instead (the runner then releases the claims they held).
            workers_now = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers_now:
                process.terminate()
            raise


_POOL_CONTEXT: RunContext | None = None
"""In a pool's worker process: the run's context, set once by :func:`_adopt_context`."""


def _adopt_context(blob: bytes) -> None:
    # Ctrl-C on a terminal reaches every process of its group: the run's own process
    # handles it (it stops the workers, then releases their claims), so a worker does
    # not also print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _POOL_CONTEXT
    _POOL_CONTEXT = pickle.loads(blob)


def _run_in_pool(job: PlannedJob) -> JobResult:
    assert _POOL_CONTEXT is not None, "the pool's initializer sets the context"
    return run_job(job, _POOL_CONTEXT)


def _pickled_context(context: RunContext, executor: str, dumps: Callable[[Any], bytes]) -> bytes:
    """The run's context as bytes, or a one-line error naming what cannot travel."""
    try:
        return dumps(context)
    except Exception as exc:
        raise ConfigError(
            f"--executor {executor}: the run cannot be sent to other processes "
            f"({_one_line(exc)}); define run_analysis and its models at the top level of "
            "a module, and keep unpicklable objects (open files, locks, clients) out of them"
        ) from exc


def _execute_on_dask(
    jobs: Sequence[PlannedJob], context: RunContext, options: ExecutorOptions, on_done: OnDone
) -> None:
    try:
        import cloudpickle
        from distributed import as_completed as dask_as_completed
    except ImportError as exc:
        raise ConfigError(
            "--executor dask needs dask.distributed; run: pip install 'aind-analysis-wrapper[dask]'"
        ) from exc
    from . import dask_shipping

    # The scheduler unpickles every task and imports nothing of the capsule's: the
    # task is a function pickled by value, its arguments opaque bytes.
    cloudpickle.register_pickle_by_value(dask_shipping)
    blob = _pickled_context(context, "dask", cloudpickle.dumps)
    with _dask_client(options, context) as (client, shipment):
        run = dask_shipping.ShippedRun(context.run_id, blob)
        _register(client, run, "the run's settings")
        futures: list[Any] = []
        local = shipment is None  # a LocalCluster of this run, which ends with it
        try:
            payloads = [cloudpickle.dumps(job) for job in jobs]
            futures = client.map(
                _ByValue(dask_shipping.run_shipped, cloudpickle.dumps),
                payloads,
                run_id=context.run_id,
                shipment=shipment,
                key=[f"analysis-wrapper-{context.run_id[:8]}-{n}" for n in range(len(jobs))],
            )
            positions = {future.key: index for index, future in enumerate(futures)}
            for future in dask_as_completed(futures):
                index = positions[future.key]
                try:
                    result = _job_result(jobs[index], future.result())
                except Exception as exc:  # a worker lost, or the result could not travel back
                    result = _lost(jobs[index], f"Dask could not run it: {_one_line(exc)}")
                on_done(index, result)
        except KeyboardInterrupt:
            # A LocalCluster's workers stop with it (they had Ctrl-C too): nothing to
            # tidy on them, which would only log their own errors. On a remote cluster
            # the tasks not yet started never start; one running finishes (Dask cannot
            # stop it), fenced by its claim, which the runner releases.
            if not local:
                with contextlib.suppress(Exception):
                    client.cancel(futures)
                _unregister(client, run.name)
            raise
        _unregister(client, run.name)


def _register(client: Client, plugin: Any, what: str) -> None:
    """Register a worker plugin on every worker, present and future; one line if it fails."""
    try:
        client.register_plugin(plugin)
    except Exception as exc:
        raise ConfigError(f"could not send {what} to the Dask workers: {_one_line(exc)}") from exc


def _unregister(client: Client, name: str) -> None:
    try:
        client.unregister_worker_plugin(name)
    except Exception as exc:  # the cluster went away: nothing left to clean
        log.debug("could not take plugin %s off the cluster: %s", name, exc)


class _ByValue:
    """A function that pickles as its cloudpickle bytes (by value), even inside a graph.

    Dask pickles a task graph with plain pickle when it can, which would name the
    function by module; the scheduler, which unpickles the graph, could not import it.
    """

    def __init__(self, function: Callable[..., Any], dumps: Callable[[Any], bytes]) -> None:
        self.function = function
        self.blob = dumps(function)
        self.__name__ = function.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return pickle.loads, (self.blob,)


def _job_result(job: PlannedJob, payload: bytes) -> JobResult:
    """Read what a Dask task sent back: a result, or the error of a worker that could not run it."""
    value = pickle.loads(payload)
    if isinstance(value, JobResult):
        return value
    error = value.get("error") if isinstance(value, dict) else repr(value)
    return _lost(job, f"the Dask worker could not run it: {error}")


Shipment = tuple[str, tuple[str, ...]]


@contextmanager
def _dask_client(
    options: ExecutorOptions, context: RunContext
) -> Iterator[tuple[Client, Shipment | None]]:
    import dask.config
    from distributed import Client, LocalCluster

    # A comm closed while a cluster shuts down is logged at INFO with its traceback
    # ("Batched Comm Closed"): expected at the end of every run, and no error of it.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
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
            with _shipped_code(client, context) as shipment:
                yield client, shipment
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
        # Dask's own log lines in the run's terminal, from this process and from each
        # worker's: only CRITICAL. Under load a worker logs tracebacks at ERROR for
        # internal comms it retries ("Failed to communicate with scheduler during
        # heartbeat"), on runs that succeed. What concerns a job, a worker that died
        # with it included, the runner reports itself, once, on the job's line.
        "silence_logs": logging.CRITICAL,
    }
    try:
        # A LocalCluster's workers are processes of this machine, started with this
        # interpreter's path: they import the code where it is.
        with _sigint_ignored():
            cluster = LocalCluster(**cluster_options)
        with cluster, Client(cluster) as client:
            yield client, None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while worker processes start: they inherit it, ignored.

    Ctrl-C on a terminal reaches every process of its group. The run's own process
    handles it (it stops the cluster, then releases the claims); workers that took it
    too would each log their own tracebacks as the cluster goes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (and gets SIGINT)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _shipped_code(client: Client, context: RunContext) -> Iterator[Shipment]:
    """Give every worker of ``client``'s cluster, present and future, the run's code.

    That is the capsule's ``code/`` folder and the ``analysis_wrapper`` package this
    process imported (when it lives elsewhere, as in a pip install). The plugin is
    taken off the cluster when the run ends.
    """
    from . import dask_shipping

    framework = Path(__file__).resolve().parents[1]  # analysis_wrapper/, above run/
    folders: dict[str, Path] = {}
    if context.code_dir is not None:
        folders[""] = context.code_dir
    folders[framework.name] = framework
    archive, digest, names = dask_shipping.build_archive(folders, skip_top=(framework.name,))
    if len(archive) > LARGE_ARCHIVE_BYTES:
        log.warning(
            "shipping %.0f MB of code/ to the Dask workers; keep data out of code/",
            len(archive) / 1e6,
        )
    plugin = dask_shipping.ShippedCode(archive, digest, names)
    _register(client, plugin, "the capsule's code")
    log.info("shipped code/ (%d kB, %s) to the Dask workers", len(archive) // 1000, digest[:12])
    try:
        yield digest, names
    finally:
        _unregister(client, plugin.name)


LARGE_ARCHIVE_BYTES = 50_000_000


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _lost(job: PlannedJob, why: str) -> JobResult:
    message = f"{job.job_file}: {why}"
    log.error("%s", message)
    return JobResult(
        str(job.job_file), job.key, job.decision.action.value, Status.FAILED, error=message
    )
