"""``analysis-wrapper init``: reset data/ and the app panel to a new parameters model.

::

    analysis-wrapper init [--input LOCATION ...] [--capsule DIR]

After a scientist replaces the example's two files, the example's parameters file and
job files name parameters the new model rejects, so every job would be invalid. This
writes, for the model ``code/run_capsule.py`` runs with:

- ``data/analysis_parameters.json``: no ``distributed_parameters`` and, as
  ``fixed_parameters``, only what the model cannot do without (``analysis_name``
  when the model has no default for it), so the model's defaults keep deciding;
- ``data/job_dict/``: emptied, then one job per input and no parameters of its own.
  The inputs are ``--input``'s, or else those the old jobs read (each set once), so
  the new analysis runs over the same assets;
- ``.codeocean/app-panel.json``, regenerated from the model.

Input data under ``data/`` is left as it is. The job files come from the same code as
``analysis-wrapper dispatch``, which can then cross the inputs with a parameter grid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config.app_panel import APP_PANEL_PATH, app_panel_text, find_parameters_model
from ..errors import JobInputError, UsageError
from ..job.grid import InputGroup, build_jobs, groups_from_locations
from ..job.job_file import JOB_DIR_NAME, Job, read_json_file
from ..job.parameters import PARAMETERS_FILE_NAME
from ..record.query import locate_capsule
from .common import capsule_option
from .dispatch import write_jobs

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``init`` to the command parsers."""
    parser = commands.add_parser(
        "init",
        parents=[capsule_option()],
        help="reset data/analysis_parameters.json, data/job_dict and the app panel "
        "to the parameters model (after replacing the example)",
    )
    parser.add_argument(
        "--input",
        action="append",
        metavar="LOCATION",
        help="an input location (s3:// URL or a path under data/); repeatable, one job "
        "each (default: the inputs of the job files there now)",
    )
    parser.set_defaults(handler=init_command)


def init_command(args: argparse.Namespace) -> int:
    """Write the parameters file, the job files and the app panel; say what is left to do."""
    capsule = locate_capsule(args.capsule)
    model = find_parameters_model(capsule)
    data = capsule.data_dir
    job_dir = data / JOB_DIR_NAME
    groups = groups_from_locations(args.input) if args.input else groups_of_jobs(job_dir)

    fixed = required_fixed_parameters(model, capsule.root.name)
    parameters_path = data / PARAMETERS_FILE_NAME
    parameters_path.parent.mkdir(parents=True, exist_ok=True)
    document = {"fixed_parameters": fixed, "distributed_parameters": []}
    parameters_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {parameters_path}")

    removed = [path for path in sorted(job_dir.rglob("*.json")) if path.is_file()]
    for path in removed:
        path.unlink()
    written = write_jobs(build_jobs(groups, []), job_dir)
    print(f"removed {len(removed)} job file(s); wrote {len(written)} to {job_dir}")

    panel = capsule.root / APP_PANEL_PATH
    panel.parent.mkdir(parents=True, exist_ok=True)
    panel.write_text(app_panel_text(capsule), encoding="utf-8")
    print(f"wrote {panel}")

    missing = missing_parameters(model, fixed)
    if missing:
        print(
            f"every job is invalid until {parameters_path.name}'s fixed_parameters gives "
            f"{', '.join(missing)} (the model has no default)"
        )
    if not written:
        print("no jobs: write them with `analysis-wrapper dispatch --input LOCATION ...`")
    print("next: `python code/run_capsule.py --plan 1`, then commit code/, data/ and .codeocean/")
    return EXIT_OK


def groups_of_jobs(job_dir: Path) -> list[InputGroup]:
    """The distinct inputs of the job files in ``job_dir``, in file order.

    Raises
    ------
    UsageError
        If a job file cannot be read as a job: name it, rather than drop its inputs.
    """
    groups: dict[tuple[str, ...], InputGroup] = {}
    for path in sorted(job_dir.rglob("*.json")) if job_dir.is_dir() else []:
        try:
            job = Job.model_validate(read_json_file(path))
        except JobInputError as exc:
            raise UsageError(f"{exc}; fix or remove it, or give --input") from None
        except ValidationError as exc:
            problem = f"is not a job ({exc.error_count()} error(s))"
            raise UsageError(f"{path} {problem}; fix or remove it, or give --input") from None
        locations = tuple(str(location) for location in job.s3_location)
        groups.setdefault(
            locations,
            InputGroup(
                list(locations),
                list(job.asset_name),
                list(job.docdb_record_id),
                job.group_metadata,
            ),
        )
    return list(groups.values())


def required_fixed_parameters(model: type[BaseModel], capsule_name: str) -> dict[str, Any]:
    """The fixed parameters the model needs: ``analysis_name`` if it has no default."""
    field = model.model_fields.get("analysis_name")
    if field is not None and field.is_required():
        return {"analysis_name": capsule_name}
    return {}


def missing_parameters(model: type[BaseModel], fixed: dict[str, Any]) -> list[str]:
    """The model's fields that neither have a default nor a value in ``fixed``."""
    return [
        name
        for name, field in model.model_fields.items()
        if field.is_required() and name not in fixed
    ]


__all__ = ["init_command", "register"]
