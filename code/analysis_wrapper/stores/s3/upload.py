"""A result folder's files, checked and uploaded: small ones by PUT, large ones in parts.

Every file is checked readable before anything remote changes. Then all go up at
once: a file below the multipart threshold as one PUT from a pool of threads sharing
the store's client, a larger one through boto3's transfer manager, in parts,
themselves in parallel. A small file's PUT is made from the client's parts
(:mod:`~analysis_wrapper.stores.s3.direct_put`), not by ``put_object``, whose own
machinery costs the client more CPU than the request. (The transfer manager would take
the small files too, but its futures, subscribers and chunked reads cost about 0.4 ms
of CPU a file beyond the PUT itself, measured: a fifth of the client's work for a
16 KiB file.)
A round that ends with transient failures is run again for the files that did not
arrive, and only for them. How many bytes are up shows as a bar on a terminal (for
64 MiB or more), else as a log line every few seconds, when the run passes a
progress display (:class:`~analysis_wrapper.stores.base.UploadProgress`); a file whose
upload failed gives its bytes back, so the count never runs ahead of what arrived.
"""

from __future__ import annotations

import mimetypes
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import (  # type: ignore[import-untyped]
    TransferConfig,
    create_transfer_manager,
)
from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]

from ...errors import StoreError
from ..base import ByteCounter, UploadProgress
from ..manifest import MANIFEST_NAME
from .client import is_transient
from .direct_put import DirectPuts

MiB = 1024 * 1024


@dataclass(frozen=True)
class TransferSettings:
    """How uploads go through boto3's transfer manager.

    Parameters
    ----------
    max_concurrency : int
        Requests in flight at once: whole small files (a pool of that many threads),
        and parts of large ones (the transfer manager's as many again).
    multipart_threshold : int
        Files of at least this many bytes go up as multipart uploads.
    multipart_chunksize : int
        The size of each part (S3 needs at least 5 MiB, except for the last one).
    io_chunksize : int
        How much of a file is read at a time.
    progress_bar_min_bytes : int
        On a terminal, a publish of at least this many bytes shows a bar over bytes.
    progress_interval_s : float
        Without a bar, a line says how far a publish is at most this often.
    direct_puts : bool
        Send small files' PUTs from the client's parts, not through boto3's
        ``put_object`` (:mod:`~analysis_wrapper.stores.s3.direct_put`): half the
        client's CPU a file. ``False`` sends every one through ``put_object``.
    """

    max_concurrency: int = 10
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 16 * MiB
    io_chunksize: int = 1 * MiB
    progress_bar_min_bytes: int = 64 * MiB
    progress_interval_s: float = 10.0
    direct_puts: bool = True


@dataclass(frozen=True)
class LocalFile:
    """A file to upload: where it is, its path relative to the result folder, its size."""

    path: Path
    relative: str
    size: int = 0


class ProgressSubscriber(BaseSubscriber):  # type: ignore[misc]
    """Passes the transfer manager's progress events to a publish's byte counter.

    A file whose upload failed gives its bytes back: the next round sends it again.
    (A small file, sent whole by one PUT, counts its bytes once it arrived.)
    """

    def __init__(self, progress: ByteCounter) -> None:
        self._progress = progress
        self._sent: dict[Any, int] = {}
        self._lock = threading.Lock()

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        """Count bytes sent (a negative count when a request rewinds)."""
        with self._lock:
            transfer = future.meta.transfer_id
            self._sent[transfer] = self._sent.get(transfer, 0) + bytes_transferred
        self._progress.update(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        """Forget a finished file; take back the bytes of one that failed."""
        with self._lock:
            sent = self._sent.pop(future.meta.transfer_id, 0)
        try:
            future.result()  # done already: returns at once, or raises its error
        except Exception:
            self._progress.update(-sent)


def local_files(folder: Path) -> list[LocalFile]:
    """Every regular file under ``folder`` but a top-level manifest, checked readable.

    Raises
    ------
    StoreError
        If ``folder`` is not a folder, or holds something that is not a readable
        regular file (a broken link, a socket): before anything remote changes.
    """
    if not folder.is_dir():
        raise StoreError(f"cannot publish {folder}: not a folder")
    files: list[LocalFile] = []
    for path in sorted(folder.rglob("*")):
        try:
            info = path.stat()
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise StoreError(f"cannot publish {path}: not a regular file")
            with path.open("rb"):
                pass
        except OSError as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot publish {path}: {exc.strerror or exc}; fix or remove it"
            ) from exc
        relative = path.relative_to(folder).as_posix()
        if relative != MANIFEST_NAME:
            files.append(LocalFile(path, relative, info.st_size))
    return files


def upload_files(
    client: Any,
    bucket: str,
    base: str,
    files: list[LocalFile],
    transfer: TransferSettings,
    retried: Callable[[Callable[[], None], str], object],
    *,
    progress: UploadProgress | None = None,
) -> None:
    """Upload ``files`` under ``s3://<bucket>/<base>/`` in rounds.

    Parameters
    ----------
    client : boto3 S3 client
        The store's client.
    bucket, base : str
        Where the files go: ``<base>/<relative path>`` in ``bucket``.
    files : list of LocalFile
        What to upload (see :func:`local_files`).
    transfer : TransferSettings
        Concurrency, multipart sizes and progress reporting.
    retried : callable
        Runs a round under the store's retry policy: ``retried(round, what)``; each
        retry resends only the files that have not arrived.
    progress : UploadProgress, optional
        Makes the counter the bytes sent are shown on; none by default.
    """
    pending = {file.relative: file for file in files}
    if not pending:
        return
    config = TransferConfig(
        max_concurrency=transfer.max_concurrency,
        multipart_threshold=transfer.multipart_threshold,
        multipart_chunksize=transfer.multipart_chunksize,
        io_chunksize=transfer.io_chunksize,
        preferred_transfer_client="classic",
    )
    manager = create_transfer_manager(client, config)
    pool = ThreadPoolExecutor(transfer.max_concurrency, thread_name_prefix="s3-put")
    failed = True
    counter = (progress or _Uncounted)(
        sum(file.size for file in files),
        f"s3://{bucket}/{base}/",
        interval_s=transfer.progress_interval_s,
        bar_min_bytes=transfer.progress_bar_min_bytes,
    )
    direct = DirectPuts.for_bucket(client, bucket) if transfer.direct_puts else None
    sender = _Sender(
        client, direct, manager, pool, bucket, base, transfer.multipart_threshold, counter
    )
    try:
        with counter:
            retried(lambda: _upload_round(sender, pending), f"uploading to s3://{bucket}/{base}/")
        failed = False
    finally:
        pool.shutdown(wait=True, cancel_futures=failed)
        manager.shutdown(cancel=failed)


class _Uncounted:
    """The byte counter of a publish that shows no progress."""

    def __init__(self, total: int, label: str, *, interval_s: float, bar_min_bytes: int) -> None:
        pass

    def __enter__(self) -> _Uncounted:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def update(self, count: int) -> None:
        pass


class _Sender:
    """Starts one file's upload: a PUT from the pool, or the transfer manager's parts."""

    def __init__(
        self, client: Any, direct: DirectPuts | None, manager: Any, pool: ThreadPoolExecutor,
        bucket: str, base: str, threshold: int, counter: ByteCounter,
    ) -> None:  # fmt: skip
        self.client, self.direct, self.manager, self.pool = client, direct, manager, pool
        self.bucket, self.base, self.threshold = bucket, base, threshold
        self.counter = counter
        self.subscriber = ProgressSubscriber(counter)

    def start(self, file: LocalFile) -> Any:
        """A future of ``file``'s upload (``result()`` raises its error)."""
        key = f"{self.base}/{file.relative}"
        if file.size >= self.threshold:
            return self.manager.upload(
                str(file.path), self.bucket, key, _extra(file), subscribers=[self.subscriber]
            )
        return self.pool.submit(self._put, file, key)

    def _put(self, file: LocalFile, key: str) -> None:
        if self.direct is not None:
            self.direct.put(key, file.path, _content_type(file))
        else:
            with file.path.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **_extra(file))
        self.counter.update(file.size)


def _upload_round(sender: _Sender, pending: dict[str, LocalFile]) -> None:
    """Upload every pending file at once; drop each that arrived from ``pending``.

    Raises the first transient error once every upload has ended, so that the next
    round resends only what failed; a permanent error cancels the rest at once.
    """
    futures: list[tuple[LocalFile, Future[None]]] = [
        (file, sender.start(file)) for file in pending.values()
    ]
    transient: BaseException | None = None
    for file, future in futures:
        try:
            future.result()
        except Exception as exc:
            if not is_transient(exc):
                for _, other in futures:
                    other.cancel()
                raise
            transient = transient or exc
        else:
            del pending[file.relative]
    if transient is not None:
        raise transient


def _content_type(file: LocalFile) -> str | None:
    """The object's Content-Type, when the file name tells it."""
    kind, _ = mimetypes.guess_type(file.relative)
    return kind


def _extra(file: LocalFile) -> dict[str, str]:
    """The object's Content-Type as boto3's parameters, when the file name tells it."""
    kind = _content_type(file)
    return {"ContentType": kind} if kind else {}
