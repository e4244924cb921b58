"""The inputs' versions, for the key under ``INPUT_IDENTITY=content`` (the I/O half).

The key's pure half is :func:`analysis_wrapper.identity.key.key_preimage`, which adds
``"input_versions"`` to the pre-image only when given them, so default keys never
change. What is read, per plan:

- each ``file_location``: S3, one HEAD (its VersionId, else its ETag); local, one
  ``stat`` (size and modification time in nanoseconds);
- each asset that holds no ``file_location``: S3, one listing request per 1,000 objects
  (a digest of every key, ETag and size); local, one ``stat`` per file (a digest of
  every path, size and modification time).

An asset shared by many jobs of a plan is read once. S3 inputs are asked of S3 even
when Code Ocean mounts them, so a job has one key in and out of Code Ocean.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.settings import InputIdentity, InputSettings
from ..errors import StoreError
from ..job.job_file import bind_inputs
from ..job.locations import is_s3, resolve_location
from .job_inputs import JobInputs, input_settings

if TYPE_CHECKING:
    from ..job.job_file import Job


class InputVersions:
    """The input half of a plan's keys: ``None`` by default, versions when opted in.

    Made once per plan (it reads ``INPUT_IDENTITY`` once), then called per job::

        versions = InputVersions()
        preimage = key_preimage(code, inputs, files, parameters, versions(job))

    Parameters
    ----------
    settings : InputSettings, optional
        Read from the environment by default.

    Raises
    ------
    ConfigError
        If an input setting in the environment does not validate.
    """

    def __init__(self, settings: InputSettings | None = None) -> None:
        self.settings = settings or input_settings()
        self.enabled = self.settings.input_identity is InputIdentity.CONTENT
        self.memo: dict[str, str] = {}

    def __call__(self, job: Job) -> dict[str, str] | None:
        """The job's input versions under ``INPUT_IDENTITY=content``, else ``None``.

        Raises
        ------
        JobInputError
            If an input does not exist (the job is invalid).
        StoreError
            If S3 denies access or cannot be reached.
        """
        if not self.enabled:
            return None
        if job._inputs is None:
            bind_inputs(job, settings=self.settings)
        return input_versions(job, self.memo)


def input_versions(job: Job, memo: dict[str, str] | None = None) -> dict[str, str]:
    """Each input's version, for the key under ``INPUT_IDENTITY=content``.

    Each ``file_location`` is versioned by itself (S3: one HEAD; local: size and
    mtime); each asset that holds no ``file_location`` by its whole content (S3: one
    listing per 1,000 objects, a digest of every key, ETag and size; local: a digest of
    every file's path, size and mtime). S3 inputs are always asked of S3, even when
    mounted, so a job has the same key in and out of Code Ocean.

    Parameters
    ----------
    job : Job
        The job (bound to its input directory by loading).
    memo : dict, optional
        Versions already read in this plan, by location; shared across its jobs so an
        asset used by many jobs is read once.

    Raises
    ------
    JobInputError
        If an input does not exist.
    StoreError
        If S3 denies access or cannot be reached.
    """
    inputs = job.inputs
    memo = {} if memo is None else memo
    files = [inputs._as_s3_if_inside(location) for location in inputs.files]
    holding = {inputs._asset_of(location) for location in files}
    wanted = files + [
        location for index, location in enumerate(inputs._locations) if index not in holding
    ]
    versions: dict[str, str] = {}
    for location in wanted:
        memo_key = location if is_s3(location) else f"{inputs.input_directory}|{location}"
        if memo_key not in memo:
            memo[memo_key] = _version_of(inputs, location, is_file=location in files)
        versions[location] = memo[memo_key]
    return versions


def _version_of(inputs: JobInputs, location: str, *, is_file: bool) -> str:
    if is_s3(location):
        from . import s3 as input_s3

        try:
            if is_file:
                return input_s3.head(location).version
            objects = input_s3.list_objects(location)
        except input_s3.InputNotFound:
            if is_file:
                bucket = input_s3.split_url(location)[0]
                detail = f"no object {location} (or bucket {bucket!r} does not exist)"
                raise inputs._missing(location, location, detail) from None
            objects = []
        except StoreError as exc:
            raise exc.with_context(inputs.job_file) from exc
        if not objects:
            raise inputs._missing(location, location, f"{location} holds no objects")
        lines = sorted(f"{item.key}\t{item.etag}\t{item.size}" for item in objects)
        return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    path = Path(str(resolve_location(location, inputs.input_directory)))
    if path.is_file():
        stat = path.stat()
        return f"size:{stat.st_size},mtime_ns:{stat.st_mtime_ns}"
    if not path.is_dir():
        raise inputs._missing(location, location, f"{path} does not exist")
    lines = []
    for folder, _, names in os.walk(path):
        for name in names:
            stat = (Path(folder) / name).stat()
            relative = (Path(folder) / name).relative_to(path).as_posix()
            lines.append(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return "sha256:" + hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
