r"""``analysis-wrapper dispatch``: write job files from inputs and a parameter grid.

::

    analysis-wrapper dispatch --input sessions/a --input sessions/b
    analysis-wrapper dispatch --csv assets.csv --location-column s3_location \
        [--group-by subject_id] [--parameters FILE] [--dir DIR] [--skip-done]

Jobs go to ``<dir>/job_dict/`` (``<dir>`` is the capsule's ``data/`` by default), the
grid is the ``distributed_parameters`` list of ``--parameters`` (by default
``<dir>/analysis_parameters.json``). ``--skip-done`` computes each job's key exactly as
a run would (the capsule's parameters model, ``<dir>/analysis_parameters.json``'s
``fixed_parameters``, the code's current version, no command-line parameters) and
leaves out the jobs whose key has a record, looked up in one batch.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config.app_panel import find_parameters_model
from ..config.project import project_settings
from ..config.settings import StoreSettings
from ..errors import JobInputError, KeyComputationError, UsageError
from ..identity.key import CodeIdentity, compute_key, key_preimage
from ..identity.provenance import resolve_code_identity
from ..inputs.versions import InputVersions
from ..job.grid import (
    InputGroup,
    build_jobs,
    distributed_parameters,
    groups_from_locations,
    groups_from_rows,
    job_file_name,
)
from ..job.job_file import JOB_DIR_NAME, Job, bind_inputs, read_json_file
from ..job.parameters import (
    PARAMETERS_FILE_NAME,
    job_layers,
    load_fixed_parameters,
    merge_layers,
    validate_parameters,
)
from ..record.query import locate_capsule
from ..stores.factory import open_record_store
from .common import capsule_option

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``dispatch`` to the command parsers."""
    parser = commands.add_parser(
        "dispatch",
        parents=[capsule_option()],
        help="write job files from input locations crossed with distributed_parameters",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="a CSV file with one input location a row")
    source.add_argument(
        "--input",
        action="append",
        metavar="LOCATION",
        help="an input location (s3:// URL or path); repeatable, one job each",
    )
    parser.add_argument(
        "--location-column",
        default="s3_location",
        help="the CSV column holding the input locations (default: s3_location)",
    )
    parser.add_argument("--group-by", metavar="COLUMN", help="one job per value of this CSV column")
    parser.add_argument(
        "--parameters",
        type=Path,
        help=f"the file with distributed_parameters (default: <dir>/{PARAMETERS_FILE_NAME})",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="the input directory; jobs go to <dir>/job_dict (default: the capsule's data/)",
    )
    parser.add_argument(
        "--skip-done",
        action="store_true",
        help="leave out jobs whose key already has a record",
    )
    parser.set_defaults(handler=dispatch_command)


def dispatch_command(args: argparse.Namespace) -> int:
    """Build the jobs, drop the done ones with ``--skip-done``, write the rest."""
    capsule = locate_capsule(args.capsule)
    directory: Path = (args.dir or capsule.data_dir).resolve()
    if args.csv is not None:
        groups = groups_from_rows(
            read_csv_rows(args.csv), args.location_column, args.group_by, str(args.csv)
        )
    else:
        if args.group_by:
            raise UsageError("--group-by needs --csv: it names a CSV column")
        groups = groups_from_locations(args.input)
    jobs = build_jobs(groups, read_grid(args.parameters or directory / PARAMETERS_FILE_NAME))
    skipped = 0
    if args.skip_done and jobs:
        code = resolve_code_identity(
            capsule.code_dir,
            posting=False,
            allow_dirty=True,
            paths=project_settings(capsule.root).code_paths,
        )
        model = find_parameters_model(capsule)
        fixed = load_fixed_parameters(directory)
        versions = InputVersions()  # INPUT_IDENTITY=content: the inputs' versions, as a run
        keys = [job_key(job, model, fixed, code, versions, directory) for job in jobs]
        store = open_record_store(StoreSettings(), capsule, read_only=True)
        try:
            done = store.get_many(keys)
        finally:
            store.close()
        kept = [job for job, key in zip(jobs, keys, strict=True) if key not in done]
        skipped = len(jobs) - len(kept)
        jobs = kept
    written = write_jobs(jobs, directory / JOB_DIR_NAME)
    note = f"; {skipped} left out (already done)" if args.skip_done else ""
    print(f"wrote {len(written)} job file(s) to {directory / JOB_DIR_NAME}{note}")
    for path in written:
        print(f"  {path.name}")
    return EXIT_OK


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Read a CSV file with a header row.

    Raises
    ------
    UsageError
        If the file cannot be read or has no header.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [dict(row) for row in reader]
            if not reader.fieldnames:
                raise UsageError(f"--csv {path}: the file is empty; it needs a header row")
    except OSError as exc:
        raise UsageError(f"--csv {path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"--csv {path}: not a UTF-8 CSV file ({exc})") from None
    return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in rows]


def read_grid(path: Path) -> list[dict[str, Any]]:
    """The ``distributed_parameters`` of ``path``; an absent file means no grid.

    Raises
    ------
    ConfigError
        If the file is not JSON or its list is malformed.
    """
    if not path.exists():
        return []
    try:
        data = read_json_file(path)
    except JobInputError as exc:
        raise UsageError(str(exc)) from None
    return distributed_parameters(data, str(path))


def job_key(
    job: Mapping[str, Any],
    model: type[BaseModel],
    fixed: Mapping[str, Any],
    code: CodeIdentity,
    versions: InputVersions | None = None,
    input_directory: Path | None = None,
) -> str:
    """The key a run would compute for ``job`` (as :func:`planning.prepare_job` does).

    Parameters
    ----------
    versions : InputVersions, optional
        Under ``INPUT_IDENTITY=content`` the key holds the inputs' versions, read as a
        run reads them; without it, locations only.
    input_directory : Path, optional
        Where the job's relative locations resolve (the capsule's data folder).

    Raises
    ------
    UsageError
        If the job's parameters do not validate, naming the parameter and its source,
        or if an input it names does not exist (under ``INPUT_IDENTITY=content``).
    StoreError
        If S3 cannot be read for an input's version.
    """
    name = job_file_name(job)
    try:
        loaded = Job.model_validate(dict(job))
        merged, sources = merge_layers(job_layers(fixed, loaded, {}))
        parameters = validate_parameters(model, merged, sources, name)
        if versions is not None and versions.enabled:
            bind_inputs(loaded, input_directory, settings=versions.settings)
        preimage = key_preimage(
            code,
            loaded.s3_location,
            loaded.file_location or [],
            parameters.model_dump(mode="json"),
            versions(loaded) if versions is not None else None,
        )
        return compute_key(preimage)
    except (JobInputError, KeyComputationError) as exc:
        raise UsageError(f"job {name} would not run: {exc}") from None
    except ValueError as exc:  # pydantic's ValidationError on the job itself
        raise UsageError(f"job {name} is not a valid job: {exc}") from None


def write_jobs(jobs: Sequence[Mapping[str, Any]], job_dir: Path) -> list[Path]:
    """Write each job to ``job_dir/<job_file_name>``; an identical file is left as is."""
    job_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for job in jobs:
        path = job_dir / job_file_name(job)
        text = json.dumps(job, indent=2, ensure_ascii=False) + "\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


__all__ = ["InputGroup", "dispatch_command", "job_key", "register"]
