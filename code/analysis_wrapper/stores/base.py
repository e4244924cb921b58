"""The two store interfaces the runner sees: records and results.

The runner never imports a database or cloud client. It talks to a
:class:`RecordStore` (where a record's existence means "done") and a
:class:`ResultStore` (where each job's files are published, manifest last). Each
backend is a module of its own, chosen by :func:`analysis_wrapper.stores.open_stores`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import StoreError
from .claims import ClaimStore

Record = dict[str, Any]
"""A stored record: an aind-data-schema ``Metadata`` document plus ``_id``."""

PARAMETERS_PATH = ("processing", "data_processes", 0, "code", "parameters")
FILE_LOCATION_PARAMETER = "file_location"
"""The job's ``file_location`` s, kept among a record's parameters as upstream keeps them."""
"""Where a record keeps the validated parameters."""

INPUT_URL_PATH = "processing.data_processes.0.code.input_data.url"
"""The dotted path of a record's input URLs: document stores index it (multikey)."""

CLAIMS_SUFFIX = "_claims"
"""A document store keeps its claims in the records collection's name + this suffix."""


@dataclass(frozen=True)
class RecordQuery:
    """A store-neutral filter on records; every given condition must hold.

    Backends may push some conditions to the server as a prefilter (one that never
    drops a matching record), then keep the records :meth:`matches` accepts.

    Parameters
    ----------
    parameters : mapping
        Parameter name to value; a record matches when its stored parameter equals
        the value (numbers compare by value, so ``1`` matches ``1.0``).
    input_data : tuple of str
        Normalised input locations; a record matches when its
        ``code.input_data`` URLs include every one.
    code_version : str or None
        The exact ``code.version`` a record must have.
    analysis_name : str or None
        The ``analysis_name`` parameter a record must have.
    analysis_tag : str or None
        The ``analysis_tag`` parameter a record must have.
    """

    parameters: Mapping[str, Any] = field(default_factory=dict)
    input_data: tuple[str, ...] = ()
    code_version: str | None = None
    analysis_name: str | None = None
    analysis_tag: str | None = None

    def matches(self, record: Record) -> bool:
        """Tell whether ``record`` satisfies every condition (the reference semantics)."""
        stored = record_parameters(record)
        wanted = [*self.parameters.items()]
        if self.analysis_name is not None:
            wanted.append(("analysis_name", self.analysis_name))
        if self.analysis_tag is not None:
            wanted.append(("analysis_tag", self.analysis_tag))
        if not all(name in stored and _same_value(stored[name], value) for name, value in wanted):
            return False
        code = record_code(record)
        if self.code_version is not None and code.get("version") != self.code_version:
            return False
        return set(self.input_data) <= set(record_input_urls(record))


def record_code(record: Record) -> dict[str, Any]:
    """Return the ``code`` block of a record's first data process, or ``{}``."""
    value: Any = record
    for step in PARAMETERS_PATH[:-1]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return {}
    return value if isinstance(value, dict) else {}


def record_input_urls(record: Record) -> list[str]:
    """Return the URLs of a record's ``code.input_data`` assets, as stored."""
    assets = record_code(record).get("input_data")
    if not isinstance(assets, list):
        return []
    return [a["url"] for a in assets if isinstance(a, dict) and isinstance(a.get("url"), str)]


def input_set_key(urls: Iterable[str]) -> tuple[str, ...]:
    """The key :meth:`RecordStore.find_by_inputs` answers under: the sorted, unique URLs."""
    return tuple(sorted(set(urls)))


def group_by_inputs(
    records: Iterable[Record], input_sets: Iterable[Iterable[str]]
) -> dict[tuple[str, ...], list[Record]]:
    """Keep the records whose input URL set equals one of ``input_sets``, grouped by it.

    The reference semantics of :meth:`RecordStore.find_by_inputs`: a backend fetches
    the records holding any of the URLs through an index, then calls this. Every asked
    set gets an entry (maybe empty); records keep the order they came in; a record is
    never listed twice.
    """
    grouped: dict[tuple[str, ...], list[Record]] = {
        key: [] for key in map(input_set_key, input_sets) if key
    }
    seen: set[str] = set()
    for record in records:
        key = input_set_key(record_input_urls(record))
        if key in grouped and record["_id"] not in seen:
            seen.add(record["_id"])
            grouped[key].append(record)
    return grouped


def record_parameters(record: Record) -> dict[str, Any]:
    """Return the analysis parameters a record stores, or ``{}`` when it has none.

    The job's ``file_location`` s, which the record keeps among them, are not one.
    """
    value: Any = record
    for step in PARAMETERS_PATH:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return {}
    if not isinstance(value, dict):
        return {}
    if FILE_LOCATION_PARAMETER in value:
        return {name: v for name, v in value.items() if name != FILE_LOCATION_PARAMETER}
    return value


def _same_value(stored: Any, wanted: Any) -> bool:
    """JSON equality as a document store sees it: ``1 == 1.0``, but ``True != 1``."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(stored, list) and isinstance(wanted, list):
        return len(stored) == len(wanted) and all(map(_same_value, stored, wanted))
    if isinstance(stored, dict) and isinstance(wanted, dict):
        return stored.keys() == wanted.keys() and all(
            _same_value(stored[name], wanted[name]) for name in stored
        )
    return bool(stored == wanted)


def read_only_error(display_url: str) -> StoreError:
    """The error every record store raises when asked to write while open read-only."""
    return StoreError(f"record store {display_url} is open read-only")


class RecordStore(ClaimStore, Protocol):
    """Records keyed by ``_id`` (the job key). A record is written last: it means done.

    Every record store also keeps the claims (:mod:`analysis_wrapper.stores.claims`), in a
    table or collection of their own.
    """

    @property
    def display_url(self) -> str:
        """Where the records are, for messages; never holds a secret."""
        ...

    def get(self, key: str) -> Record | None:
        """Return the record with ``_id == key``, or ``None``."""
        ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Return the records among ``keys`` that exist, by key, in few round trips."""
        ...

    def put(self, record: Record, *, replace: bool = False, epoch: int | None = None) -> None:
        """Store ``record`` (which has ``_id``).

        Parameters
        ----------
        record : Record
            The record; its ``_id`` is the key.
        replace : bool
            Overwrite a record stored under the key (otherwise insert-if-absent).
        epoch : int or None
            The writer's claim epoch: the write is *fenced* (see
            :mod:`analysis_wrapper.stores.fencing`). It happens only while the key's
            claim is ``running`` at this epoch, and never replaces a record written at
            a newer epoch. ``None`` writes unconditionally (subject to ``replace``).

        Raises
        ------
        RecordExistsError
            If a record with that ``_id`` exists and ``replace`` is false.
        FencedOutError
            If ``epoch`` is given and the claim at that epoch is no longer held.
        """
        ...

    def find(self, query: RecordQuery) -> list[Record]:
        """Return the records matching ``query``, oldest first."""
        ...

    def find_by_inputs(
        self, input_sets: Iterable[Iterable[str]]
    ) -> dict[tuple[str, ...], list[Record]]:
        """Return, per input set, the records whose ``code.input_data`` URLs are that set.

        Answered through an index on the input URLs (never a scan of the collection),
        in few round trips for all sets at once; see :func:`group_by_inputs` for the
        exact semantics. Keys are :func:`input_set_key` of each non-empty asked set;
        records come in the order :meth:`find` would list them (oldest first).
        """
        ...

    def close(self) -> None:
        """Release connections; the store may not be used afterwards."""
        ...


@dataclass(frozen=True)
class Published:
    """One folder of a results store, as :meth:`ResultStore.list_published` finds it.

    Parameters
    ----------
    key : str
        The job key the folder belongs to.
    location : str
        The folder's URL, as a record's ``location`` would name it (no trailing slash).
    complete : bool
        Whether the folder has its ``manifest.json`` (a staging leftover never does).
    modified : float
        Unix seconds: when its newest file was written (the folder's own time if empty).
    size : int
        The bytes of all its files, manifest included.
    files : int
        How many files it holds, manifest included.
    """

    key: str
    location: str
    complete: bool
    modified: float
    size: int
    files: int


class ByteCounter(Protocol):
    """Counts the bytes one publish sends: a context manager, updated from many threads."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: Any) -> Any: ...

    def update(self, count: int) -> None:
        """Add ``count`` bytes sent (negative when a transfer gives bytes back)."""
        ...


class UploadProgress(Protocol):
    """Makes the counter of one publish; the run passes one, and a store imports none.

    Called as ``progress(total_bytes, label, interval_s=..., bar_min_bytes=...)``;
    :class:`analysis_wrapper.report.progress.ByteProgress` is one.
    """

    def __call__(
        self, total: int, label: str, *, interval_s: float, bar_min_bytes: int
    ) -> ByteCounter:
        """The counter of a publish of ``total`` bytes, named ``label``."""
        ...


class ResultStore(Protocol):
    """Folders of result files, one per publish attempt, each with ``manifest.json`` last.

    An attempt of key ``K`` is published to ``<url>/<K>/<attempt>/``, so two attempts
    (two workers, or a retry) never mix files. The record, written after the manifest,
    names the one attempt that is the result. Records written before attempt folders
    existed name ``<url>/<K>``, whose files sit directly in the key's folder; every
    method taking a location reads both.
    """

    @property
    def url(self) -> str:
        """The store's base URL (``file:///...`` or ``s3://bucket/prefix``)."""
        ...

    def location(self, key: str, attempt: str) -> str:
        """Return ``<url>/<key>/<attempt>``: where that attempt is (or will be) published.

        Raises
        ------
        ValueError
            If ``key`` is not 64 lowercase hex digits or ``attempt`` is not a name made
            of ``[A-Za-z0-9._-]`` starting with a letter or digit.
        """
        ...

    def publish(
        self,
        key: str,
        attempt: str,
        folder: Path,
        manifest: Mapping[str, Any],
        *,
        progress: UploadProgress | None = None,
    ) -> str:
        """Copy every file under ``folder`` to the attempt's folder, the manifest last.

        Other attempts of ``key`` are never touched. Publishing the same attempt again
        (a retry) replaces its folder's content, so it holds exactly the given files.
        A ``manifest.json`` at the top of ``folder`` is not copied: ``manifest`` is.
        A store that sends bytes over a network counts them on ``progress``, if given.

        Returns
        -------
        str
            ``location(key, attempt)``.

        Raises
        ------
        StoreError
            If a file cannot be read or the store cannot be written; no manifest is
            then in the attempt's folder.
        """
        ...

    def read_manifest(self, location: str) -> dict[str, Any] | None:
        """Return ``<location>/manifest.json``, or ``None`` if there is none.

        ``location`` is a record's location (either layout), possibly in another store
        of the same kind. A location of another kind of store gives ``None``.

        Raises
        ------
        StoreError
            If the manifest exists but cannot be read or is not JSON.
        """
        ...

    def has_manifest(self, location: str) -> bool | None:
        """Tell whether ``<location>/manifest.json`` exists (one cheap request).

        ``location`` is a record's location, possibly in another store of the same
        kind (an older bucket or folder). Returns ``None`` when this store cannot
        look there (another kind of store): the caller then trusts the record.
        """
        ...

    def has_manifests(self, locations: Iterable[str]) -> dict[str, bool | None]:
        """Tell for each location what :meth:`has_manifest` would, in few requests.

        A plan checks the manifest of every record it finds at once: a remote store
        answers many locations per request, or keeps several requests in flight,
        never one round trip after the other per location.

        Parameters
        ----------
        locations : iterable of str
            Records' locations (either layout, possibly in other stores of the same
            kind); a location given twice is checked once.

        Returns
        -------
        dict
            Each given location to ``True`` or ``False``, or ``None`` when this store
            cannot look there (another kind of store: the caller trusts the record).

        Raises
        ------
        StoreError
            When :meth:`has_manifest` would raise for one of the locations.
        """
        ...

    def download(self, location: str, relative_path: str, target: Path) -> bool:
        """Copy ``<location>/<relative_path>`` to the local file ``target``.

        ``location`` is a record's location, possibly in another store of the same
        kind. ``target``'s folder must exist; ``target`` is overwritten.

        Returns
        -------
        bool
            False when this store cannot read ``location`` (another kind of store).

        Raises
        ------
        StoreError
            If the file is missing or cannot be read.
        """
        ...

    def list_folder(self, location: str) -> dict[str, int] | None:
        """Every file under the folder at ``location``, with its size, from one listing.

        ``location`` is a record's location (either layout), possibly in another store
        of the same kind. S3 lists the prefix ``<location>/`` (paginated, up to 1,000
        keys a request); a local folder is walked. Never a request per file.

        Returns
        -------
        dict or None
            Each file's POSIX path relative to the folder (its ``manifest.json``
            included, when there) to its size in bytes; ``{}`` when nothing is there.
            For an old-layout ``<url>/<key>``, the files of the attempt folders inside
            it are listed too. ``None`` when this store cannot look there (another
            kind of store).

        Raises
        ------
        StoreError
            If the folder cannot be listed.
        """
        ...

    def file_sha256(self, location: str, relative_path: str) -> str | None:
        """The sha256 hex digest of ``<location>/<relative_path>``, streamed.

        The file is read in chunks, never whole into memory. Safe to call from several
        threads at once, which is how many files are checked together.

        Returns
        -------
        str or None
            The digest, or ``None`` when no such file is there.

        Raises
        ------
        StoreError
            If the file cannot be read, ``relative_path`` leaves the folder, or
            ``location`` is of another kind of store.
        """
        ...

    def list_published(self) -> Iterator[Published]:
        """Yield every published folder of this store, complete or not.

        That is each attempt folder ``<key>/<attempt>/``, each old-layout folder
        ``<key>/`` holding files directly (location ``<url>/<key>``), and each staging
        leftover of a publish that crashed (incomplete, located at its own path). Keys
        are the top-level folders named by 64 hex digits; anything else at the top of
        the store (other files, other folders) is not the store's and is ignored. See
        :mod:`analysis_wrapper.stores.layout` for how a key's folder is split.

        Raises
        ------
        StoreError
            If the store cannot be listed.
        """
        ...

    def delete(self, location: str) -> int:
        """Delete the folder at ``location``: exactly the files ``list_published`` counts.

        The manifest goes first, so a folder half deleted is never taken for complete.
        For an old-layout ``<url>/<key>``, attempt folders inside it are kept.

        Returns
        -------
        int
            How many files were deleted (0 when nothing was there).

        Raises
        ------
        StoreError
            If ``location`` is not a published folder's location in this store, or a
            file cannot be deleted (the message names it).
        """
        ...
