"""Beside upstream: a job analysis-pipeline-utils' wrapper already did is not run again.

Upstream's records are written by its own code (0.2.8, from PyPI, in a process of its
own), the way its ``run_analysis_jobs`` does: ``update_analysis_process`` per job file,
``analysis_pipeline_processing_metadata``, ``create_results_metadata`` (``_id`` = the
sha256 of its ``Code``) and ``write_to_docdb``, through its ``MetadataDbClient``, to the
AIND DocDB REST API stand-in. One call is replaced: ``get_codeocean_process_metadata``,
which asks the Code Ocean API for the capsule's name, url and version; the base process
it would return is built here with this capsule's url and version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from upstream import code_of, docdb_env, post_example, run_upstream

from conftest import CapsuleCopy, git
from standins.docdb_api import DocDbApiStandIn
from standins.docdb_fixtures import DATABASE

WRITE_RECORDS = """
import json, sys
from datetime import datetime
from pathlib import Path
from typing import Any
import aind_data_schema.core.processing as ps
from aind_data_schema.components.identifiers import Code
from aind_data_schema_models.process_names import ProcessName
from analysis_pipeline_utils.analysis_dispatch_model import AnalysisDispatchModel
from analysis_pipeline_utils.metadata import (
    analysis_pipeline_processing_metadata, update_analysis_process, write_to_docdb,
)
from analysis_pipeline_utils.result_files import create_results_metadata

job_dict, url, version, fixed = Path(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
# What get_codeocean_process_metadata() would build from the Code Ocean API.
base = ps.DataProcess(
    process_type=ProcessName.ANALYSIS, stage=ps.ProcessStage.ANALYSIS, name="example-capsule",
    experimenters=["scientist@example.org"], start_date_time=datetime.now(),
    notes=f"Git commit hash: {version}",
    code=Code(name="example-capsule", url=url, version=version, run_script="code/run",
              parameters={}, input_data=[]),
)
processing = analysis_pipeline_processing_metadata(base)
ids = []
for path in sorted(job_dict.glob("*.json")):
    model = AnalysisDispatchModel.model_validate_json(path.read_text())
    process = update_analysis_process(base, model, **fixed)
    process.end_date_time = datetime.now()
    processing.data_processes = [process]
    metadata, docdb_id = create_results_metadata(processing, "upstream-results")
    write_to_docdb(metadata, docdb_id)
    ids.append(docdb_id)
print(json.dumps(ids))
"""


def write_upstream_records(
    capsule: CapsuleCopy,
    standin: DocDbApiStandIn,
    env: dict[str, str],
    scratch: Path,
    **parameters: Any,
) -> list[str]:
    """Upstream's records of the example's jobs, for our code's url and version; their ids.

    ``parameters`` change the App Panel's (the fixed) values upstream's wrapper is given.
    """
    # Our code's url and version, as our records name them: from records of our own.
    code = code_of(post_example(capsule, standin, docdb_env(standin))[0])
    assert code["version"] == git(capsule.root, "rev-parse", "HEAD").strip()
    fixed = json.loads((capsule.data / "analysis_parameters.json").read_text())["fixed_parameters"]
    written = run_upstream(
        WRITE_RECORDS,
        str(capsule.data / "job_dict"),
        code["url"],
        code["version"],
        json.dumps({**fixed, **parameters}),
        standin=standin,
        scratch=scratch,
        env=env,
    )
    assert written.returncode == 0, written.stderr
    ids: list[str] = json.loads(written.stdout.splitlines()[-1])
    return ids


def test_our_plan_skips_what_upstreams_wrapper_recorded(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Same code, inputs and validated parameters: skip, naming upstream's record."""
    env = docdb_env(docdb_api)
    collection = env["DOCDB_COLLECTION"]
    upstream_ids = write_upstream_records(capsule, docdb_api, env, tmp_path)
    assert len(upstream_ids) == 6
    assert {doc["_id"] for doc in docdb_api.mongo[DATABASE][collection].find({})} == set(
        upstream_ids
    )

    results = tmp_path / "plan"
    planned = capsule.run("--plan", "1", "--results_directory", str(results), env=env)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads((results / "plan.json").read_text())
    assert [entry["action"] for entry in plan] == ["skip"] * 6
    reasons = sorted(entry["reason"] for entry in plan)
    assert reasons == sorted(
        f"done by analysis-pipeline-utils, record {record_id}" for record_id in upstream_ids
    )

    forced = tmp_path / "forced"
    again = capsule.run("--plan", "1", "--force", "1", "--results_directory", str(forced), env=env)
    assert again.returncode == 0, again.stderr
    assert [e["action"] for e in json.loads((forced / "plan.json").read_text())] == ["run"] * 6


def test_other_parameters_than_upstreams_record_run(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Upstream's record of other parameter values is not this job's: it runs."""
    env = docdb_env(docdb_api)
    # Not what our jobs validate to.
    write_upstream_records(capsule, docdb_api, env, tmp_path, refractory_period_ms=2.5)
    results = tmp_path / "plan"
    planned = capsule.run("--plan", "1", "--results_directory", str(results), env=env)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads((results / "plan.json").read_text())
    assert [entry["action"] for entry in plan] == ["run"] * 6
    assert all("analysis-pipeline-utils" not in entry["reason"] for entry in plan)
