"""Where a location of a job's inputs is: its asset, a local path or S3, and its field.

Each ``s3_location`` of a job is an *asset*, a folder or an S3 prefix. A location
inside one is read, in order, from the asset's Code Ocean mount (an S3 asset whose
``asset_name`` is a folder in the input directory), from a local path as it is, or
from S3. ``bucket/key`` (s3fs's form) counts as ``s3://bucket/key`` when it falls in
an S3 asset and no local path of that name exists. Errors name the job-file field
that gave the location, when one did.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from ..errors import JobInputError
from ..job.locations import LocationError, is_s3, normalise_location, resolve_location


class AssetLocations:
    """A job's assets and files, and the resolution of locations inside them.

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
    ) -> None:
        self.job_file = job_file
        self.input_directory = input_directory
        self._locations = locations
        self._names = names
        self._file_locations = file_locations
        for index, location in enumerate(file_locations):
            if self._asset_of(self._as_s3_if_inside(location)) is None:
                raise JobInputError(
                    job_file,
                    f"file_location[{index}]",
                    f"{location!r} is not inside any of the job's assets (s3_location "
                    f"{', '.join(locations) or 'is empty'}); give a file inside one of "
                    "them, or add its asset to s3_location",
                )

    def _place(self, location: str) -> tuple[str, Path | None, str | None]:
        """``(normal form, local path to try first, S3 URL)`` of a location."""
        try:
            normal = normalise_location(location)
        except LocationError as exc:
            raise JobInputError(self.job_file, self._field_of(location), str(exc)) from None
        normal = self._as_s3_if_inside(normal)
        if not is_s3(normal):
            resolved = resolve_location(normal, self.input_directory)
            assert isinstance(resolved, Path)
            return normal, resolved, None
        index = self._asset_of(normal)
        mount = self._mount(index) if index is not None else None
        local = None
        if mount is not None and index is not None:
            relative = normal[len(self._locations[index]) :].strip("/")
            local = mount / relative if relative else mount
        return normal, local, normal

    def _as_s3_if_inside(self, location: str) -> str:
        """Read ``bucket/key`` (s3fs's form) as ``s3://bucket/key`` when inside an S3 asset.

        Only when no local path of that name exists.
        """
        if is_s3(location) or posixpath.isabs(location):
            return location
        candidate = "s3://" + location
        if self._asset_of(candidate) is not None and not (self.input_directory / location).exists():
            return candidate
        return location

    def _asset_of(self, location: str) -> int | None:
        """The index of the asset that holds a normalised location, or ``None``."""
        target = self._comparable(location)
        for index, asset in enumerate(self._locations):
            root = self._comparable(asset)
            if target == root or target.startswith(root.rstrip("/") + "/"):
                return index
            mount = self._mount(index)
            if mount is not None and not is_s3(location):
                mounted = str(mount)
                if target == mounted or target.startswith(mounted + "/"):
                    return index
        return None

    def _comparable(self, location: str) -> str:
        if is_s3(location):
            return location
        return str(resolve_location(location, self.input_directory))

    def _mount(self, index: int) -> Path | None:
        """``<input directory>/<asset name>`` when the asset is on S3 and that is a folder."""
        if not is_s3(self._locations[index]) or index >= len(self._names):
            return None
        name = self._names[index]
        if not name or "/" in name or name in (".", ".."):
            return None
        folder = self.input_directory / name
        return folder if folder.is_dir() else None

    def _field_of(self, location: str) -> str:
        """The job-file field that names ``location``, or ``""``."""
        try:
            normal = normalise_location(location)
        except LocationError:
            return ""
        for field, values in (
            ("s3_location", self._locations),
            ("file_location", self._file_locations),
        ):
            if normal in values:
                return f"{field}[{values.index(normal)}]"
        return ""

    def _missing(self, location: str, normal: str, detail: str) -> JobInputError:
        field = self._field_of(location)
        where = "" if field else f"input {normal!r}: "
        return JobInputError(
            self.job_file,
            field,
            f"{where}{detail}; check the job file, and that the data is where it says",
        )
