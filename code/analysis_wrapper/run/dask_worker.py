"""What a Dask worker runs: a pickled job and context in, the pickled result out.

:func:`~analysis_wrapper.run.dask_shipping.run_shipped` calls :func:`run_payload` once the
worker imports the shipped code (or, on a LocalCluster, its own).
"""

from __future__ import annotations

import pickle
import threading
from typing import cast

from .context import RunContext
from .runner import run_job


def run_payload(context: bytes, job: bytes) -> bytes:
    """On a Dask worker: run a pickled job with a pickled context; return the pickled result.

    The context of a run arrives once per worker (a plugin) and is unpickled once:
    its stores keep their connections from job to job.
    """
    return pickle.dumps(run_job(pickle.loads(job), _worker_context(context)))


_WORKER_CONTEXTS: list[tuple[bytes, RunContext]] = []
_WORKER_CONTEXTS_LOCK = threading.Lock()
_KEPT_CONTEXTS = 2


def _worker_context(blob: bytes) -> RunContext:
    """The context ``blob`` holds, unpickled once per worker process and run."""
    with _WORKER_CONTEXTS_LOCK:
        for kept, context in _WORKER_CONTEXTS:
            if kept is blob or kept == blob:
                return context
        context = cast(RunContext, pickle.loads(blob))
        _WORKER_CONTEXTS.insert(0, (blob, context))
        for _, old in _WORKER_CONTEXTS[_KEPT_CONTEXTS:]:
            old.record_store.close()
        del _WORKER_CONTEXTS[_KEPT_CONTEXTS:]
        return context
