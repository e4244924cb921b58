"""Which failures earn a job another try: the ``transient`` flag of store errors.

A store error is transient only when the store that raised it says so (it was
unreachable, timed out or throttled); the flag survives the trip back from a worker
process. The stores' own classification is tested with each store, against its server.
"""

from __future__ import annotations

import errno
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from analysis_wrapper import TransientError
from analysis_wrapper.errors import RecordExistsError, StoreError, is_transient_os_error
from analysis_wrapper.run.job import is_transient


def fail_in_worker(transient: bool) -> None:
    """Raise a store error in a worker process (for the process pool test)."""
    raise StoreError("record store x: no server answered", transient=transient)


def test_a_store_error_is_permanent_unless_its_store_says_otherwise() -> None:
    """``StoreError("...")`` still works and is not transient; the flag is a keyword."""
    plain = StoreError("results store s3://b: access denied")
    assert plain.transient is False
    assert str(plain) == "results store s3://b: access denied"
    flagged = StoreError("results store s3://b: cannot reach S3", transient=True)
    assert flagged.transient is True
    assert str(flagged) == "results store s3://b: cannot reach S3"
    assert RecordExistsError("a record with _id k already exists").transient is False


@pytest.mark.parametrize("transient", [True, False])
def test_the_flag_and_message_survive_pickling(transient: bool) -> None:
    """A pickled store error (as a pool or Dask worker sends it back) keeps both."""
    error = StoreError("cannot read record store mongodb://***@db: no server", transient=transient)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StoreError
    assert copy.transient is transient
    assert str(copy) == str(error)
    exists = pickle.loads(pickle.dumps(RecordExistsError("a record with _id k exists")))
    assert type(exists) is RecordExistsError and exists.transient is False


def test_the_flag_comes_back_from_a_process_pool_worker() -> None:
    """Raised in a spawned worker, the error reaches the parent transient as it was."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        for transient in (True, False):
            with pytest.raises(StoreError, match="no server answered") as raised:
                pool.submit(fail_in_worker, transient).result()
            assert raised.value.transient is transient


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransientError("busy"), True),
        (ConnectionError("reset by peer"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True),
        (TimeoutError("timed out"), True),
        (StoreError("cannot reach S3", transient=True), True),
        (StoreError("access denied (HTTP 403)"), False),
        (StoreError("bucket 'b' does not exist"), False),
        (RecordExistsError("a record with _id k already exists"), False),
        (ValueError("no spikes in this session"), False),
        (PermissionError(errno.EACCES, "denied"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_which_failures_the_runner_tries_again(error: BaseException, retried: bool) -> None:
    """TransientError, lost connections, timeouts and transient store errors; nothing else."""
    assert is_transient(error) is retried


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OSError(errno.EBUSY, "Device or resource busy"), True),
        (OSError(errno.ESTALE, "Stale file handle"), True),
        (OSError(errno.ETIMEDOUT, "Connection timed out"), True),
        (OSError(errno.EAGAIN, "Resource temporarily unavailable"), True),
        (OSError(errno.EINTR, "Interrupted system call"), True),
        (ConnectionResetError("reset"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (OSError(errno.ENOENT, "No such file or directory"), False),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (OSError(errno.ENOTDIR, "Not a directory"), False),
        (ValueError("embedded null byte"), False),
    ],
    ids=str,
)
def test_which_local_io_errors_are_transient(error: BaseException, transient: bool) -> None:
    """A busy, stale or timed-out file system may recover; denial or a full disk does not."""
    assert is_transient_os_error(error) is transient


@pytest.mark.parametrize("transient", [True, False])
def test_context_goes_first_and_the_flag_stays(transient: bool) -> None:
    """with_context names the job (or what was read) first and keeps ``transient``."""
    error = StoreError("S3 still failing after 3 attempts", transient=transient)
    wrapped = error.with_context("data/job_dict/a.json")
    assert str(wrapped) == "data/job_dict/a.json: S3 still failing after 3 attempts"
    assert wrapped.transient is transient
    assert isinstance(wrapped, StoreError)
