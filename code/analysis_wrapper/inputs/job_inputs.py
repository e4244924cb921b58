"""A job's inputs, ready to read wherever they live: a folder, S3, or a Code Ocean mount.

In ``run_analysis``::

    asset = job.inputs[0]                              # the job's first s3_location
    path = asset.local_path("spike_times.json")        # a local file, whatever the source
    with asset.open("units.csv") as handle: ...        # or an open (binary) file
    nwb_files = asset.glob("**/*.nwb")                 # locations, for local_path/open
    zarr.open(asset.url("ephys.zarr"))                 # a URL for streaming readers
    records = job.asset_records()                      # the assets' metadata records

Each ``s3_location`` is an *asset*: a folder or an S3 prefix. Paths given to an asset's
methods are relative to it. ``job.inputs`` has the same methods for whole locations
(``s3://`` or ``file://`` URLs, paths, relative ones under the input directory, and
what ``glob`` returns), so ``job.inputs.local_path(job.file_location[0])`` works too.

Where a file is read from, in order:

1. the Code Ocean mount: an S3 asset whose ``asset_name`` is a folder in the input
   directory (``/data/<asset name>/``) is read there, with no download;
2. a local path, as it is;
3. S3: downloaded once into the input cache (:mod:`analysis_wrapper.inputs.cache`),
   keyed by the object's ETag, shared by jobs and processes; ``url``/``open_stream``
   read over the network instead (s3fs), for formats that stream (Zarr, NWB-Zarr).

Errors name the job file, the field and the remedy: an input that does not exist and a
``file_location`` outside the job's assets are :class:`JobInputError`; denied access is
:class:`StoreError`.

Behind this API: :mod:`.assets` resolves a location (asset, mount, local path,
S3 URL, field), :mod:`.patterns` lists what an asset holds, :mod:`.fetch`
downloads or streams an S3 object, and :mod:`analysis_wrapper.inputs.versions` reads
the inputs' versions for ``INPUT_IDENTITY=content``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydantic import ValidationError

from ..config.settings import InputSettings
from ..errors import ConfigError, JobInputError, StoreError
from ..job.locations import is_s3, resolve_location
from .assets import AssetLocations
from .patterns import folder_paths, glob_pattern, s3_paths

if TYPE_CHECKING:
    from .asset_records import AssetRecords


class InputAsset:
    """One input asset of a job (one ``s3_location``): a folder or an S3 prefix.

    Paths given to its methods are relative to the asset (``"ecephys/units.nwb"``).
    """

    def __init__(self, inputs: JobInputs, index: int) -> None:
        self._inputs = inputs
        self.index = index

    @property
    def location(self) -> str:
        """The asset's location as the job file gives it, normalised."""
        return self._inputs._locations[self.index]

    @property
    def name(self) -> str | None:
        """The asset's name (``asset_name``), when the job gives one."""
        names = self._inputs._names
        return names[self.index] if self.index < len(names) else None

    @property
    def mount(self) -> Path | None:
        """The Code Ocean mount of this S3 asset (``<input directory>/<name>/``), if any."""
        return self._inputs._mount(self.index)

    def location_of(self, path: str = "") -> str:
        """The whole location of ``path`` inside the asset."""
        relative = posixpath.normpath(path) if path else "."
        if posixpath.isabs(path) or "://" in path or relative.split("/")[0] == "..":
            raise JobInputError(
                self._inputs.job_file,
                f"s3_location[{self.index}]",
                f"{path!r} is not a path inside the asset; give one relative to it",
            )
        return self.location if relative == "." else f"{self.location}/{relative}"

    def local_path(self, path: str = "") -> Path:
        """A local copy of a file of the asset (the asset's folder for ``""``, if local)."""
        return self._inputs.local_path(self.location_of(path))

    def open(self, path: str) -> BinaryIO:
        """Open a file of the asset for reading, in binary mode."""
        return self._inputs.open(self.location_of(path))

    def glob(self, pattern: str) -> list[str]:
        """The locations in the asset that match ``pattern`` (``*.nwb``, ``**/*.zarr``)."""
        return self._inputs._glob_asset(self.index, pattern)

    def url(self, path: str = "") -> str:
        """Where a streaming reader (fsspec, zarr) finds ``path``: a local path or s3:// URL."""
        return self._inputs.url(self.location_of(path))

    def open_stream(self, path: str) -> BinaryIO:
        """Open ``path`` for reading over the network (s3fs), without downloading it."""
        return self._inputs.open_stream(self.location_of(path))

    def __repr__(self) -> str:
        return f"InputAsset({self.location!r}, name={self.name!r})"


class JobInputs(AssetLocations):
    """A job's inputs: its assets (``job.inputs[i]``) and methods for whole locations.

    Holds no open client, so a job travels to process-pool and Dask workers as is.

    Parameters
    ----------
    job_file : str
        The job file, named in errors.
    input_directory : Path
        Relative locations resolve here; Code Ocean mounts its data assets here.
    locations : sequence of str
        The job's ``s3_location`` s, normalised.
    names : sequence of str
        The job's ``asset_name`` s.
    file_locations : sequence of str
        The job's ``file_location`` s, normalised.
    record_ids : sequence of str
        The job's ``docdb_record_id`` s.
    settings : InputSettings
        The cache and the record source.

    Raises
    ------
    JobInputError
        If a ``file_location`` is not inside one of the job's assets.
    """

    def __init__(
        self,
        job_file: str,
        input_directory: Path,
        locations: Sequence[str],
        names: Sequence[str],
        file_locations: Sequence[str],
        record_ids: Sequence[str],
        settings: InputSettings,
    ) -> None:
        super().__init__(job_file, input_directory, locations, names, file_locations)
        self._record_ids = record_ids
        self.settings = settings
        self._records: AssetRecords | None = None

    # --- assets --------------------------------------------------------------------

    def __getitem__(self, index: int) -> InputAsset:
        if not -len(self._locations) <= index < len(self._locations):
            raise IndexError(f"the job has {len(self._locations)} input asset(s)")
        return InputAsset(self, index % len(self._locations))

    def __len__(self) -> int:
        return len(self._locations)

    def __iter__(self) -> Iterator[InputAsset]:
        return (InputAsset(self, index) for index in range(len(self._locations)))

    @property
    def files(self) -> list[str]:
        """The job's ``file_location`` s, normalised (give them to :meth:`local_path`)."""
        return list(self._file_locations)

    def records(self) -> AssetRecords:
        """The metadata records of the job's ``docdb_record_id`` s (one query, then kept)."""
        if self._records is None:
            from .asset_records import fetch_asset_records

            self._records = fetch_asset_records(self._record_ids, self.settings, self.job_file)
        return self._records

    # --- whole locations -------------------------------------------------------------

    def local_path(self, location: str) -> Path:
        """A local copy of an input file: mounted, local, or downloaded into the cache.

        Parameters
        ----------
        location : str
            An ``s3://`` or ``file://`` URL, a path (relative ones resolve under the
            input directory), or what :meth:`glob` returned.

        Raises
        ------
        JobInputError
            If the input does not exist, or is a folder on S3 (glob its files, or
            stream it with :meth:`url`).
        StoreError
            If S3 denies access or cannot be reached.
        """
        normal, local, s3_url = self._place(location)
        if local is not None and local.exists():
            return local
        if s3_url is None:
            raise self._missing(location, normal, f"{local} does not exist")
        return self._download(location, s3_url)

    def open(self, location: str) -> BinaryIO:
        """Open an input file for reading, in binary mode (see :meth:`local_path`)."""
        path = self.local_path(location)
        if path.is_dir():
            raise JobInputError(
                self.job_file,
                self._field_of(location),
                f"{location!r} is a folder; open a file inside it (see glob)",
            )
        return path.open("rb")

    def glob(self, pattern: str) -> list[str]:
        """The locations matching ``pattern`` in every asset of the job, sorted.

        ``*`` matches within one folder level, ``**`` any number of levels, ``?`` one
        character. On S3, folders are the prefixes the objects' keys imply, so
        ``**/*.zarr`` finds Zarr stores too. Costs one listing request per 1,000
        objects of each S3 asset (none for a mounted or local one).
        """
        return sorted(
            location for index in range(len(self)) for location in self._glob_asset(index, pattern)
        )

    def url(self, location: str) -> str:
        """Where a streaming reader finds an input: a local path, or the ``s3://`` URL.

        Mounted and local inputs give their path; fsspec, s3fs and zarr read an S3 URL
        with the same AWS settings (``AWS_ENDPOINT_URL``, credentials) as downloads.
        """
        normal, local, s3_url = self._place(location)
        if local is not None and local.exists():
            return str(local)
        if s3_url is None:
            raise self._missing(location, normal, f"{local} does not exist")
        return s3_url

    def open_stream(self, location: str) -> BinaryIO:
        """Open an input for reading over the network (s3fs), without downloading it.

        A mounted or local input is opened as a local file.

        Raises
        ------
        ConfigError
            If s3fs is not installed (``pip install 'aind-analysis-wrapper[stream]'``).
        """
        where = self.url(location)
        if not where.startswith("s3://"):
            return Path(where).open("rb")
        from .fetch import MissingInput, open_stream

        try:
            return open_stream(where)
        except MissingInput as exc:
            raise self._missing(location, where, str(exc)) from None
        except StoreError as exc:
            raise self._within_job(exc) from exc

    # --- S3 and listing ------------------------------------------------------------

    def _download(self, location: str, url: str) -> Path:
        from .fetch import MissingInput, download

        try:
            return download(url, self.settings)
        except MissingInput as exc:
            raise self._missing(location, url, str(exc)) from None
        except StoreError as exc:
            raise self._within_job(exc) from exc

    def _glob_asset(self, index: int, pattern: str) -> list[str]:
        matcher = glob_pattern(pattern)
        location = self._locations[index]
        mount = self._mount(index)
        if is_s3(location) and mount is None:
            try:
                candidates = s3_paths(location)
            except StoreError as exc:
                raise self._within_job(exc) from exc
            if not candidates:
                raise JobInputError(
                    self.job_file,
                    f"s3_location[{index}]",
                    f"{location} holds no objects (or its bucket does not exist); check "
                    "the location, and that the asset was not deleted",
                )
        else:
            root = mount or Path(str(resolve_location(location, self.input_directory)))
            if not root.is_dir():
                raise self._missing(location, location, f"{root} is not a folder")
            candidates = folder_paths(root)
        return sorted(f"{location}/{path}" for path in candidates if matcher.fullmatch(path))

    def _within_job(self, exc: StoreError) -> StoreError:
        """``exc`` with the job file named first; transient as it was."""
        return exc.with_context(self.job_file)


def input_settings() -> InputSettings:
    """The input settings from the environment.

    Raises
    ------
    ConfigError
        Naming the variable and what it accepts, for a value that does not validate.
    """
    try:
        return InputSettings()
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else "an input setting"
        raise ConfigError(
            f"{variable}={error.get('input')!r}: {error['msg']}; see the README's "
            "Configuration table"
        ) from None
