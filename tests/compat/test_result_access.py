"""Beside upstream: result-access, the lab's reader of fitting results, reads ours.

aind-analysis-arch-result-access 1.2.0 (from PyPI, in a process of its own) calls its
``get_mle_model_fitting`` as its users do: by subject, by analysis tag, latest version
only or all. Our capsule (``mle_capsule/run_capsule.py``, an "MLE fitting" like the
lab's) posts its records through the AIND DocDB REST API stand-in and its result
folders to moto's S3 server. What is patched in upstream's process, and why:

- ``analysis_docDB_dft``, a ``MetadataDbClient`` made at import with the host
  ``api.allenneuraldynamics.org``: the same client, database and collection
  (``analysis`` / ``dynamic-foraging-model-fitting``), on the stand-in's host.
- Nothing else: its s3fs reads the result files anonymously, as it does in the lab,
  from the endpoint ``AWS_ENDPOINT_URL`` names, with no credentials in its environment.

The results bucket is private: result-access's anonymous reads are refused until the
bucket has the public-read policy the README gives (moto checks a HEAD against the
action name ``s3:HeadObject`` where AWS checks ``s3:GetObject``, so the test's policy
names both; AWS would refuse the first name as an invalid action).

The stand-in evaluates result-access's computed projections (``"$a.b"`` through the
record's lists) as MongoDB documents them; SecantusDB leaves those fields out, as
:func:`test_secantusdb_leaves_out_computed_fields_through_lists` shows.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import boto3
from upstream import run_upstream

from conftest import CapsuleCopy
from standins.docdb_api import DocDbApiStandIn

DATABASE = "analysis"
COLLECTION = "dynamic-foraging-model-fitting"
"""Where result-access looks: hard-coded beside its host."""
MLE_CAPSULE = Path(__file__).parent / "mle_capsule" / "run_capsule.py"
TAG = "aind-analysis-framework v0.2"
SESSIONS = ("ecephys_612345_2025-03-14_10-02-11", "ecephys_612345_2025-03-15_09-48-30")

READ = """
import json, sys
from aind_data_access_api.document_db import MetadataDbClient
import aind_analysis_arch_result_access.df_mle_model_fitting as mle

# The one hard-coded host: the lab's API, here the stand-in (same database and collection).
mle.analysis_docDB_dft = MetadataDbClient(
    host=sys.argv[1], database="analysis", collection="dynamic-foraging-model-fitting"
)
answers = {}
for name, kwargs in json.loads(sys.argv[2]).items():
    try:
        frame = mle.get_mle_model_fitting(**kwargs)
    except PermissionError as error:  # s3fs's answer to a 403
        answers[name] = {"refused": str(error)}
        continue
    answers[name] = None if frame is None else json.loads(frame.to_json(orient="records"))
print("ANSWERS " + json.dumps(answers))
"""


def mle_capsule(capsule: CapsuleCopy) -> CapsuleCopy:
    """The example capsule's copy made an "MLE fitting": one job per example session."""
    shutil.copy(MLE_CAPSULE, capsule.code / "run_capsule.py")
    shutil.rmtree(capsule.job_dir)
    capsule.job_dir.mkdir()
    for session in SESSIONS:
        job = {"s3_location": [f"sessions/{session}"], "asset_name": [session]}
        (capsule.job_dir / f"{session}.json").write_text(json.dumps(job))
    fixed = {"analysis_name": "MLE fitting", "analysis_tag": TAG}
    (capsule.data / "analysis_parameters.json").write_text(json.dumps({"fixed_parameters": fixed}))
    capsule.commit("MLE fitting")
    return capsule


def private_bucket(s3_endpoint: str) -> str:
    """A results bucket, private as a new bucket is."""
    bucket = f"fits-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return bucket


def allow_public_read(s3_endpoint: str, bucket: str) -> None:
    """The README's bucket policy for result-access (and ``s3:HeadObject``, for moto)."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    boto3.client("s3", endpoint_url=s3_endpoint).put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )


def read_fits(
    standin: DocDbApiStandIn, s3_endpoint: str, scratch: Path, **calls: dict[str, Any]
) -> dict[str, Any]:
    """Each of ``calls`` (keyword arguments of ``get_mle_model_fitting``), answered."""
    done = run_upstream(
        READ,
        standin.host,
        json.dumps(calls),
        standin=standin,
        scratch=scratch,
        # Anonymous, as in the lab: no credentials, only where S3 is.
        env={"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers: dict[str, Any] = json.loads(done.stdout.split("ANSWERS ", 1)[1])
    return answers


def test_result_access_reads_our_fits_by_subject_and_tag_latest_only(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    """Two versions of two sessions' fits: latest only gives the newer; figures and q-values."""
    docdb_api.mongo[DATABASE][COLLECTION].drop()
    fits = mle_capsule(capsule)
    bucket = private_bucket(s3_endpoint)
    env = {
        "DOCDB_HOST": docdb_api.host,
        "DOCDB_DATABASE": DATABASE,
        "DOCDB_COLLECTION": COLLECTION,
        "ANALYSIS_BUCKET": f"s3://{bucket}",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    first = fits.run("--dry_run", "0", env=env)
    assert first.returncode == 0, first.stderr
    # A second version of the analysis: every job runs again, the first records stay.
    run_capsule = fits.code / "run_capsule.py"
    run_capsule.write_text(run_capsule.read_text().replace("le=1,", "le=1.0,"))
    fits.commit("second version")
    second = fits.run("--dry_run", "0", env=env)
    assert second.returncode == 0, second.stderr
    records = list(docdb_api.mongo[DATABASE][COLLECTION].find({}))
    assert len(records) == 4
    processes = {r["_id"]: r["processing"]["data_processes"][0] for r in records}
    by_end = sorted(records, key=lambda r: processes[r["_id"]]["end_date_time"])
    newest = {processes[r["_id"]]["output_parameters"]["nwb_name"]: r for r in by_end}

    refused = read_fits(docdb_api, s3_endpoint, tmp_path, latest={"subject_id": "612345"})
    assert refused["latest"] == {"refused": "Forbidden"}
    allow_public_read(s3_endpoint, bucket)
    answers = read_fits(
        docdb_api,
        s3_endpoint,
        tmp_path,
        latest={"subject_id": "612345", "analysis_tag": TAG},
        every={"subject_id": "612345", "only_recent_version": False},
        other_tag={"subject_id": "612345", "analysis_tag": "aind-analysis-framework v0.1"},
        other_subject={"subject_id": "999999"},
    )
    assert answers["other_tag"] is None and answers["other_subject"] is None
    assert sorted(row["_id"] for row in answers["every"]) == sorted(r["_id"] for r in records)
    latest = {row["nwb_name"]: row for row in answers["latest"]}
    assert set(latest) == {f"{session}.nwb" for session in SESSIONS}
    for nwb_name, row in latest.items():
        record = newest[nwb_name]
        process = record["processing"]["data_processes"][0]
        assert row["_id"] == record["_id"]
        assert row["S3_location"] == record["location"]
        assert row["analysis_tag"] == TAG
        assert row["pipeline_source"] == "aind analysis framework"
        assert (row["subject_id"], row["session_date"]) == ("612345", nwb_name.split("_")[2])
        assert row["agent_alias"] == "QLearning_L1F0_softmax"
        assert row["n_trials"] == process["output_parameters"]["fitting_results"]["n_trials"]
        assert row["CO_asset_id"] == [asset["url"] for asset in process["code"]["input_data"]]
        # The latent variables come from the result folder's docDB_mle_fitting.json.
        q_value = row["latent_variables"]["q_value"]
        assert len(q_value) == 2 and len(q_value[0]) == row["n_trials"] + 1
        assert len(row["latent_variables"]["rpe"]) == row["n_trials"]
        assert 0 <= row["qvalue_spread"] <= 1


def test_secantusdb_leaves_out_computed_fields_through_lists(
    docdb_api: DocDbApiStandIn,
) -> None:
    """Where SecantusDB 0.7.0b3 and MongoDB evaluate a field path differently.

    - Through a list, in a find projection: MongoDB returns ``tags: ["v1"]`` here;
      SecantusDB leaves the field out. Hence the stand-in's own evaluation
      (standins/projection.py), which result-access's reads need.
    - A number in a path, in an aggregation: SecantusDB takes ``"$list.0.tag"`` as the
      first element's tag; MongoDB looks for a field named ``0`` in each element and
      finds ``[]`` (its manual says to use ``$arrayElemAt``). Upstream's
      ``get_docdb_records_partial(latest_only=True)`` groups by
      ``"$processing.data_processes.0.code"``: one group per code here, one group for
      all matching records on MongoDB. The stand-in does not emulate this one.

    If this fails, SecantusDB has changed: revisit the stand-in and the README.
    """
    collection = docdb_api.mongo[DATABASE][f"projection_{uuid.uuid4().hex[:8]}"]
    collection.insert_many(
        [{"_id": "r", "top": "t", "list": [{"tag": "v1"}]}, {"_id": "s", "list": [{"tag": "v2"}]}]
    )
    found = list(collection.find({"_id": "r"}, {"_id": 1, "top": "$top", "tags": "$list.tag"}))
    assert found == [{"_id": "r", "top": "t"}]
    groups = collection.aggregate([{"$group": {"_id": "$list.0.tag"}}, {"$sort": {"_id": 1}}])
    assert [group["_id"] for group in groups] == ["v1", "v2"]
