"""The errors this package raises, and what each one means for the exit code.

::

    WrapperError                      base class; never raised itself
    ├── UsageError        (exit 2)    a wrong invocation or configuration
    │   ├── ConfigError               a setting or flag that cannot work (names the remedy)
    │   └── ProvenanceError           the code identity cannot be trusted (e.g. a dirty tree)
    ├── JobInputError     (job fails) a job file or parameter that is wrong (names file and field)
    ├── KeyComputationError (job fails) a value that has no canonical form (NaN, Inf)
    ├── TransientError    (retried)   raised by an analysis for a failure worth another try
    └── StoreError        (exit 1)    a record or result store cannot be reached or written;
        │                             retried when its ``transient`` flag is set
        ├── RecordExistsError         a record with this key is already stored (never retried)
        └── FencedOutError            the writer's claim epoch is no longer the key's: its
                                      record is refused (never retried)

Every message is one line that names the file, field or store and says what to do.
No message ever contains a secret: stores mask credentials before building one.
"""

from __future__ import annotations

import errno


class WrapperError(Exception):
    """Base class for every error this package raises."""


class UsageError(WrapperError, ValueError):
    """A wrong invocation or configuration: the run stops with exit code 2."""


class ConfigError(UsageError):
    """A setting, flag or environment variable that cannot work as given."""


class ProvenanceError(UsageError):
    """The code identity cannot be established or trusted (e.g. uncommitted changes)."""


class JobInputError(WrapperError, ValueError):
    """A job file, or a parameter it leads to, is wrong.

    Parameters
    ----------
    path : str
        The file the problem was found in, as the user knows it.
    field : str
        The dotted field path inside that file, or ``""`` for the whole file.
    problem : str
        What is wrong and, where there is one, the remedy.
    """

    def __init__(self, path: str, field: str, problem: str) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        where = f"{path}: field {field!r}" if field else path
        super().__init__(f"{where}: {problem}")


class KeyComputationError(WrapperError, ValueError):
    """A value cannot be put into the canonical form the key is computed from."""


class TransientError(WrapperError):
    """A failure worth another try (a flaky service, a busy file server).

    ``run_analysis`` raises it to ask for a retry; the runner also treats
    ``ConnectionError``, ``TimeoutError`` and a :class:`StoreError` whose
    ``transient`` flag is set (a store that was unreachable, timed out or throttled)
    as transient. Any other store error (denied access, a missing bucket, a bad
    setting, a record too large) fails the job at its first try. A job is retried a
    bounded number of times (``--transient_retries``), each try in a fresh folder.
    """


class StoreError(WrapperError, OSError):
    """A record or result store cannot be reached, read or written.

    Parameters
    ----------
    *args : object
        The message (one line that names the store and the remedy).
    transient : bool
        Whether another try may succeed: set by the store that translated the
        backend's error, only for failures that pass by themselves (no connection, a
        timeout, throttling, a 5xx, a busy database). Denied access, something
        missing, a bad setting or a refused record are not transient.

    Notes
    -----
    The flag travels with the error through ``pickle`` (a process pool or Dask
    worker sends it back), as an instance attribute of the exception.
    """

    def __init__(self, *args: object, transient: bool = False) -> None:
        super().__init__(*args)
        self.transient = transient

    def with_context(self, context: str) -> StoreError:
        """The same failure, with ``context`` (a job file, what was being read) first.

        The ``transient`` flag goes with it: whoever adds context cannot lose it.
        """
        return StoreError(f"{context}: {self}", transient=self.transient)


class RecordExistsError(StoreError):
    """A record with the same key already exists in the record store."""


class FencedOutError(StoreError):
    """A fenced record write refused: the writer no longer holds the key's claim.

    Raised by ``RecordStore.put(..., epoch=n)`` when the key's claim is not running at
    epoch ``n`` any more (another worker took it over, or it ended), or when a newer
    worker's record is already stored. Never transient: another try cannot succeed.

    Parameters
    ----------
    *args : object
        The message: names the key, both epochs when known, and whether the record
        was written.
    key : str
        The job key.
    epoch : int or None
        The epoch the writer held.
    current_epoch : int or None
        The epoch the store holds for the key, when known.
    written : bool
        True only where the store cannot refuse atomically (the AIND DocDB REST API)
        and the takeover was seen after the record was written; False means nothing
        was written.
    """

    def __init__(
        self,
        *args: object,
        key: str = "",
        epoch: int | None = None,
        current_epoch: int | None = None,
        written: bool = False,
    ) -> None:
        super().__init__(*args, transient=False)
        self.key = key
        self.epoch = epoch
        self.current_epoch = current_epoch
        self.written = written

    def with_context(self, context: str) -> FencedOutError:
        """The same refusal, with ``context`` first; still a :class:`FencedOutError`."""
        return FencedOutError(
            f"{context}: {self}",
            key=self.key,
            epoch=self.epoch,
            current_epoch=self.current_epoch,
            written=self.written,
        )


# errno values that say "try again" rather than "this cannot work" (a network file
# system that is busy or lost its handle); ConnectionError, TimeoutError,
# BlockingIOError and InterruptedError carry the others.
_TRANSIENT_ERRNOS = frozenset({errno.EBUSY, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN})


def is_transient_os_error(exc: BaseException) -> bool:
    """Tell whether a local I/O error may pass by itself (busy, timed out, interrupted).

    Permission errors, missing files and a full disk are not transient: retrying
    them only delays the error.
    """
    if isinstance(exc, ConnectionError | TimeoutError | BlockingIOError | InterruptedError):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
