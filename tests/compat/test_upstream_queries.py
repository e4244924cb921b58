"""Beside upstream: analysis-pipeline-utils' own query helpers find the records we write.

The example capsule posts to the AIND DocDB REST API stand-in; then upstream's
``get_docdb_records_partial`` (0.2.8, from PyPI, unpatched, in a process of its own,
configured by ``DOCDB_HOST``/``DOCDB_DATABASE``/``DOCDB_COLLECTION`` as in a capsule)
looks them up the ways its users do: by input location, and by code url and version.
"""

from __future__ import annotations

import json
from pathlib import Path

from upstream import code_of, docdb_env, post_example, run_upstream

from conftest import CapsuleCopy
from standins.docdb_api import DocDbApiStandIn

QUERIES = """
import json, sys
from analysis_pipeline_utils.metadata import get_docdb_records_partial
location, url, version = sys.argv[1:4]
stored, given = json.loads(sys.argv[4]), json.loads(sys.argv[5])
found = {
    "by_input": get_docdb_records_partial(input_data_locations=[location]),
    "by_code": get_docdb_records_partial(code_url=url, code_version=version),
    "by_stored_parameters": get_docdb_records_partial(parameters=stored),
    "by_job_parameters": get_docdb_records_partial(parameters=given),
}
print(json.dumps({how: sorted(r["_id"] for r in records) for how, records in found.items()}))
"""


def test_upstreams_query_helpers_find_our_records(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """By input location, by code url and version, by parameters: the records that match.

    ``parameters=`` matches the whole ``code.parameters`` sub-document: a record's
    stored parameters find it (and the records with the same values), a job's
    distributed parameters alone find nothing.
    """
    env = docdb_env(docdb_api)
    stored = post_example(capsule, docdb_api, {**env, "ANALYSIS_BUCKET": (tmp_path / "b").as_uri()})
    assert len(stored) == 6
    location = code_of(stored[0])["input_data"][0]["url"]
    url, version = code_of(stored[0])["url"], code_of(stored[0])["version"]
    expected_by_input = sorted(
        r["_id"] for r in stored if location in [d["url"] for d in code_of(r)["input_data"]]
    )
    assert 0 < len(expected_by_input) < len(stored)

    stored_parameters = code_of(stored[0])["parameters"]
    expected_by_parameters = sorted(
        r["_id"] for r in stored if code_of(r)["parameters"] == stored_parameters
    )
    assert 0 < len(expected_by_parameters) < len(stored)
    job_parameters = {"isi_violations_cutoff": stored_parameters["isi_violations_cutoff"]}
    asked = run_upstream(
        QUERIES,
        location,
        url,
        version,
        json.dumps(stored_parameters),
        json.dumps(job_parameters),
        standin=docdb_api,
        scratch=tmp_path,
        env=env,
    )
    assert asked.returncode == 0, asked.stderr
    found = json.loads(asked.stdout.splitlines()[-1])
    assert found["by_input"] == expected_by_input
    assert found["by_code"] == sorted(r["_id"] for r in stored)
    assert found["by_stored_parameters"] == expected_by_parameters
    assert found["by_job_parameters"] == []
