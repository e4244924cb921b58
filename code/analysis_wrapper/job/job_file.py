"""Job files: the unit of work a dispatcher writes, in both upstream shapes.

A job file is ``<input_directory>/job_dict/<name>.json``. The current upstream shape
has ``s3_location``, ``asset_name``, ``docdb_record_id``, ``file_location``,
``distributed_parameters``, ``group_metadata``, ``query`` and ``analysis_code``; the
older one has ``asset_id`` and no ``docdb_record_id``. Both load into :class:`Job`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import JobInputError, UsageError
from .locations import LocationError, normalise_location, resolve_location

if TYPE_CHECKING:  # the input modules load on first use of job.inputs
    from ..config.settings import InputSettings
    from ..inputs.asset_records import AssetRecords
    from ..inputs.job_inputs import JobInputs

log = logging.getLogger(__name__)

JOB_DIR_NAME = "job_dict"


def _normalised(value: str) -> str:
    try:
        return normalise_location(value)
    except LocationError as exc:
        raise ValueError(str(exc)) from None


Location = Annotated[str, AfterValidator(_normalised)]
"""A location, normalised on load (errors name the list item, e.g. ``s3_location[1]``)."""


class AnalysisCode(BaseModel):
    """The ``analysis_code`` block a dispatcher may attach (an aind ``Code``, loosely).

    Only ``parameters`` is used: it is one layer of the parameter merge. The rest is
    kept as written.
    """

    model_config = ConfigDict(extra="allow")

    url: str | None = None
    version: str | None = None
    parameters: dict[str, Any] | None = None


class Job(BaseModel):
    """One unit of work: which inputs, which parameters.

    Locations are normalised on load (see :mod:`analysis_wrapper.job.locations`); use
    :attr:`input_paths` and :attr:`file_paths` to read them in this run.
    """

    model_config = ConfigDict(extra="allow")

    s3_location: list[Location] = Field(description="Input assets: s3:// URLs or paths.")
    asset_name: list[str] = Field(default_factory=list)
    docdb_record_id: list[str] = Field(default_factory=list)
    asset_id: list[str] | None = Field(default=None, description="Older job shape only.")
    file_location: list[Location] | None = None
    distributed_parameters: dict[str, Any] | None = None
    group_metadata: dict[str, Any] | None = None
    query: str | dict[str, Any] | None = None
    analysis_code: AnalysisCode | None = None

    # None defaults: pydantic deep-copies a private default for every job, and a Path
    # default made that the slowest part of loading a job file.
    _source_file: Path | None = PrivateAttr(default=None)
    _input_directory: Path | None = PrivateAttr(default=None)
    _inputs: JobInputs | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        """The job file's name without ``.json``."""
        return self.source_file.stem

    @property
    def source_file(self) -> Path:
        """The job file this job was read from (``<memory>`` for one built in code)."""
        return self._private("_source_file") or Path("<memory>")

    @property
    def input_directory(self) -> Path:
        """The run's input directory, against which relative locations resolve."""
        return self._private("_input_directory") or Path(".")

    def _private(self, name: str) -> Any:
        # Reading a private attribute as ``self._x`` goes through pydantic's
        # ``__getattr__`` (about 2.5 us); a plan reads these for every job.
        return (self.__pydantic_private__ or {}).get(name)

    @property
    def input_paths(self) -> list[str | Path]:
        """``s3_location`` resolved for this run: S3 URLs as ``str``, paths as ``Path``."""
        return [resolve_location(loc, self.input_directory) for loc in self.s3_location]

    @property
    def file_paths(self) -> list[str | Path]:
        """``file_location`` resolved for this run, like :attr:`input_paths`."""
        return [resolve_location(loc, self.input_directory) for loc in self.file_location or []]

    @property
    def inputs(self) -> JobInputs:
        """The job's inputs, ready to read wherever they live (S3, a mount, a folder).

        ``job.inputs[0].local_path("file.json")``, ``.open(...)``, ``.glob("*.nwb")``
        and ``.url(...)`` (for streaming readers); see :mod:`analysis_wrapper.inputs.job_inputs`.
        """
        if self._inputs is None:
            bind_inputs(self, self.input_directory)
            assert self._inputs is not None
        return self._inputs

    def asset_records(self) -> AssetRecords:
        """The metadata records of the job's ``docdb_record_id`` s, one batched query.

        One entry per id, ``None`` for an id not found (listed in ``.missing``) or when
        no record source is configured (``METADATA_HOST``, else ``DOCDB_HOST``).
        """
        return self.inputs.records()

    def bind(self, source_file: Path, input_directory: Path) -> Job:
        """Attach where the job came from; returns ``self``."""
        self._source_file = source_file
        self._input_directory = input_directory
        return self


def bind_inputs(
    job: Job, input_directory: Path | None = None, settings: InputSettings | None = None
) -> Job:
    """Give ``job`` its input access (``job.inputs``, ``job.asset_records()``); return it.

    The runner calls it before ``run_analysis``; ``job.inputs`` also binds itself on
    first use with the settings from the environment.

    Parameters
    ----------
    job : Job
        The job; changed in place.
    input_directory : Path, optional
        Where relative locations resolve and Code Ocean mounts assets; the job's own
        input directory by default.
    settings : InputSettings, optional
        The cache and record source; read from the environment by default.

    Raises
    ------
    JobInputError
        If a ``file_location`` is not inside one of the job's assets.
    """
    from ..inputs.job_inputs import JobInputs, input_settings  # the input modules load on first use

    # Tuples: the inputs keep the job's lists as they were bound (an empty one costs
    # nothing, and a plan binds every job).
    job._inputs = JobInputs(
        str(job.source_file),
        input_directory or job.input_directory,
        tuple(job.s3_location),
        tuple(job.asset_name),
        tuple(job.file_location or ()),
        tuple(job.docdb_record_id),
        settings or input_settings(),
    )
    return job


def find_job_files(input_directory: Path) -> list[Path]:
    """Return the job files of ``<input_directory>/job_dict/``, sorted by path.

    A job file is a ``*.json`` in ``job_dict/`` or in a folder of it: analysis-pipeline-utils'
    dispatcher writes ``job_dict/<n>/<uuid>.json``. A missing or empty ``job_dict``
    means no jobs. Other files are ignored with a warning naming them (hidden ones
    silently), since a dispatcher writes only JSON.

    Raises
    ------
    UsageError
        If ``job_dict`` holds files but none of them is a job file: whatever wrote them
        did not write jobs where this capsule looks.
    """
    job_dir = input_directory / JOB_DIR_NAME
    if not job_dir.is_dir():
        log.warning("%s does not exist: there are no jobs to run", job_dir)
        return []
    jobs: list[str] = []
    ignored: list[str] = []
    for name, kind in _visible_entries(job_dir):
        if kind == "file":
            (jobs if name.endswith(".json") else ignored).append(name)
        elif kind == "dir":
            for inner, inner_kind in _visible_entries(job_dir / name):
                if inner_kind == "file" and inner.endswith(".json"):
                    jobs.append(f"{name}/{inner}")
                elif inner_kind == "file":
                    ignored.append(f"{name}/{inner}")
                elif inner_kind == "dir" and _holds_files(job_dir / name / inner):
                    ignored.append(f"{name}/{inner}/")
    if ignored and not jobs:
        raise UsageError(
            f"{job_dir} holds no job file, only: {_listing(ignored)}; job files are "
            "job_dict/*.json or job_dict/*/*.json"
        )
    if ignored:
        log.warning("%s: ignoring what is not a job file: %s", job_dir, _listing(ignored))
    return [job_dir / relative for relative in sorted(jobs)]


def _visible_entries(folder: Path) -> list[tuple[str, str]]:
    """The names in ``folder`` not starting with a dot, each ``file``, ``dir`` or ``other``.

    One listing, no extra stat per entry.
    """
    with os.scandir(folder) as entries:
        return [
            (entry.name, "file" if entry.is_file() else "dir" if entry.is_dir() else "other")
            for entry in entries
            if not entry.name.startswith(".")
        ]


def _holds_files(folder: Path) -> bool:
    return any(path.is_file() for path in folder.rglob("*"))


def _listing(names: list[str], most: int = 5) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def read_json_file(path: Path) -> Any:
    """Read a JSON file, turning every way it can be unreadable into one clear error.

    Raises
    ------
    JobInputError
        If the file cannot be read, is not UTF-8, or is not valid JSON.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JobInputError(str(path), "", f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobInputError(
            str(path),
            "",
            f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobInputError(
            str(path),
            "",
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None


def _read_bytes(path: Path) -> bytes:
    """Read a whole file with bare system calls: twice as fast as ``Path.read_bytes``.

    A plan reads thousands of small job files, and the buffered file object that
    ``read_bytes`` builds and closes for each cost more than the read itself.
    """
    descriptor = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(descriptor, _READ_SIZE):
            chunks.append(chunk)
    finally:
        os.close(descriptor)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_READ_SIZE = 64 * 1024

# Errors of the JSON text itself, which read_json_file explains better than pydantic.
_JSON_ERRORS = frozenset({"json_invalid", "json_type", "model_type"})


def load_job(path: Path, input_directory: Path) -> Job:
    """Load and validate one job file.

    Unknown top-level fields are kept but logged as a warning (a typo is the usual
    cause).

    Raises
    ------
    JobInputError
        If the file is unreadable, not JSON, or does not fit the job model; the
        message names the file and the field.
    """
    try:
        raw = _read_bytes(path)
    except OSError:
        raw = b""  # read_json_file below reports why
    try:
        # pydantic's own JSON parser: the fast path for the thousands of good files.
        job = Job.model_validate_json(raw)
    except ValidationError as exc:
        if any(error["type"] not in _JSON_ERRORS for error in exc.errors()):
            raise validation_error_to_input_error(str(path), exc) from None
        # Not JSON, not UTF-8, or not an object: let the careful reader say which.
        data = read_json_file(path)
        if not isinstance(data, dict):
            raise JobInputError(
                str(path), "", f"must hold a JSON object, not a {type(data).__name__}"
            ) from None
        try:
            job = Job.model_validate(data)
        except ValidationError as again:
            raise validation_error_to_input_error(str(path), again) from None
    if job.model_extra:
        log.warning(
            "%s: unknown field(s) %s ignored; known fields are %s",
            path,
            ", ".join(repr(name) for name in sorted(job.model_extra)),
            ", ".join(sorted(Job.model_fields)),
        )
    return job.bind(path, input_directory)


def validation_error_to_input_error(
    path: str, exc: ValidationError, prefix: str = "", sources: dict[str, str] | None = None
) -> JobInputError:
    """Turn a pydantic ``ValidationError`` into one line naming file and fields.

    Parameters
    ----------
    path : str
        The file the values came from.
    exc : ValidationError
        The error pydantic raised.
    prefix : str
        Put before each field path (e.g. ``"parameters."``).
    sources : dict, optional
        For each top-level field, where its value came from; named in the message.
    """
    errors = exc.errors(include_url=False)
    problems = []
    first_field = ""
    for error in errors:
        field = _field_path(error["loc"])
        qualified = (prefix + field) if field else prefix.rstrip(".")
        first_field = first_field or qualified
        message = error["msg"]
        if error["type"] not in ("missing", "extra_forbidden"):
            message += f" (got {_short(error.get('input'))})"
        top = str(error["loc"][0]) if error["loc"] else ""
        if sources and top in sources:
            message += f" [from {sources[top]}]"
        problems.append(f"{qualified}: {message}" if len(errors) > 1 else message)
    if len(problems) == 1:
        return JobInputError(path, first_field, problems[0])
    combined = JobInputError(path, "", "; ".join(problems))
    combined.field = first_field
    return combined


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
