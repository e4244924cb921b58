"""Reading an S3 input: downloaded once into the input cache, or streamed with s3fs.

A download looks the object up (one HEAD), then fetches exactly that version into the
cache shared by jobs and processes (:mod:`analysis_wrapper.inputs.cache`), keyed by the
endpoint, bucket, key and ETag or VersionId; an object replaced between the two is
looked up again, a few times. A stream is opened through fsspec, with the same AWS
settings (``AWS_ENDPOINT_URL``, credentials) as downloads.

A missing object is :class:`MissingInput`, whose message says what is there instead;
the caller names the job file and field. boto3 and s3fs are imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..config.settings import InputSettings
from ..errors import ConfigError, StoreError

if TYPE_CHECKING:
    from .cache import InputCache

_CHANGED_RETRIES = 3


class MissingInput(Exception):
    """The input does not exist on S3; the message says what is there instead."""


def download(url: str, settings: InputSettings) -> Path:
    """A local copy of the object at ``url``, from the cache or downloaded into it.

    Raises
    ------
    MissingInput
        If the object does not exist (or was deleted while being downloaded).
    StoreError
        If S3 denies access or cannot be reached, or the object keeps changing.
    ConfigError
        If the input cache's dependencies are not installed.
    """
    from . import s3 as input_s3

    for _ in range(_CHANGED_RETRIES):
        try:
            info = input_s3.head(url)
        except input_s3.InputNotFound:
            raise MissingInput(_why_missing(url)) from None
        try:
            cached = _cache(settings).fetch(
                (input_s3.endpoint(), info.bucket, info.key, info.version),
                info.key,
                info.size,
                _downloader(info),
            )
        except input_s3.ObjectChanged:
            continue  # replaced between HEAD and GET: look it up again
        except input_s3.InputNotFound:
            raise MissingInput("the object was deleted") from None
        return cached.path
    raise StoreError(
        f"{url} changed {_CHANGED_RETRIES} times while it was being downloaded; run again "
        "once its upload is over",
        transient=True,  # an upload in progress ends
    )


def open_stream(url: str) -> BinaryIO:
    """Open the object at ``url`` for reading over the network, without downloading it.

    Raises
    ------
    MissingInput
        If there is no such object.
    StoreError
        If S3 denies access.
    ConfigError
        If s3fs is not installed (``pip install 'aind-analysis-wrapper[stream]'``).
    """
    from . import s3 as input_s3

    anonymously = input_s3.anonymous()  # as downloads: unsigned when no credentials
    try:
        import fsspec  # type: ignore[import-untyped]

        # The endpoint, when one is configured, is passed on: fsspec keeps one filesystem
        # per set of arguments, which would otherwise outlive a change of endpoint.
        where = input_s3.configured_endpoint()
        options = {"endpoint_url": where} if where else {}
        opened: BinaryIO = fsspec.open(url, "rb", anon=anonymously, **options).open()
    except ImportError as exc:
        raise ConfigError(
            f"streaming {url} needs s3fs ({exc.name} is missing); run: pip install "
            "'aind-analysis-wrapper[stream]', or use local_path to download it"
        ) from exc
    except FileNotFoundError:
        raise MissingInput("no such object on S3") from None
    except PermissionError:
        message = input_s3.denied_message("HTTP 403", "streaming", url, anonymously=anonymously)
        raise StoreError(message) from None
    return opened


def _why_missing(url: str) -> str:
    """Say whether ``url`` is a folder (a prefix with objects) or nothing at all."""
    from . import s3 as input_s3

    try:
        inside = input_s3.list_objects(url)
    except (input_s3.InputNotFound, StoreError):
        inside = []
    if inside:
        return (
            f"{url} is a folder on S3, not a file; list its files with glob(), or "
            "stream it with url()"
        )
    bucket = input_s3.split_url(url)[0]
    return f"no object {url} (or bucket {bucket!r} does not exist)"


def _cache(settings: InputSettings) -> InputCache:
    try:
        from .cache import InputCache
    except ImportError as exc:
        raise ConfigError(
            f"downloading S3 inputs needs {exc.name}, which is not installed; run: "
            "pip install 'aind-analysis-wrapper[s3]'"
        ) from exc
    return InputCache(settings.cache_directory, int(settings.cache_max_size))


def _downloader(info: Any) -> Callable[[BinaryIO], None]:
    """Write the object ``info`` describes into a file (for :meth:`InputCache.fetch`)."""
    from . import s3 as input_s3

    def download(handle: BinaryIO) -> None:
        input_s3.download(info, handle)

    return download
