"""Read and validate a result folder's RO-Crate with the RO-Crate community's own tools.

``rocrate`` (ro-crate-py) reads the crate; ``roc-validator`` (rocrate-validator, CRS4)
checks it against the Process Run Crate 0.5 profile and the RO-Crate 1.1 rules it
builds on, through SHACL shapes over the crate's RDF graph.

The validator turns the crate's JSON-LD into RDF with the RO-Crate 1.1 context, which
it fetches from w3id.org; tests reach no network, so they run it offline, with that
context put into its HTTP cache first. The context is the genuine one, from the last
rocrate release that ships it (``make test`` installs it into ``.ci/rocrate-1.1``;
``ANALYSIS_WRAPPER_ROCRATE_CONTEXT`` names the file).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
CONTEXT_FILE = Path(
    os.environ.get(
        "ANALYSIS_WRAPPER_ROCRATE_CONTEXT",
        REPO_ROOT / ".ci" / "rocrate-1.1" / "rocrate" / "data" / "ro-crate.jsonld",
    )
)
PROFILE = "process-run-crate"

NOT_OURS_TO_KNOW = {
    "ro-crate-1.1_22.3": "the publisher (an Organization)",
    "ro-crate-1.1_30.2": "the author's affiliation",
    "ro-crate-1.1_30.3": "the author's affiliation",
    "ro-crate-1.1_28.1": "that an s3:// input is there (the validator reads http only)",
}
"""The RO-Crate 1.1 recommendations (SHOULD) a result's crate cannot meet: a capsule
knows the experimenter's email, not their organisation, and the validator cannot look
an S3 input up. Every Process Run Crate recommendation is met."""


@pytest.fixture(scope="session")
def validator_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A validator HTTP cache holding the RO-Crate 1.1 context (import it to use it)."""
    cache = tmp_path_factory.mktemp("rocrate-validator") / "http-cache"
    seed_context_cache(cache)
    return cache


def seed_context_cache(cache: Path) -> None:
    """Put the RO-Crate 1.1 context into a validator HTTP cache at ``cache`` (.sqlite)."""
    import requests
    import urllib3
    from requests_cache import CachedSession

    if not CONTEXT_FILE.is_file():
        pytest.fail(
            f"{CONTEXT_FILE} is missing: run the tests with `make test`, which installs it "
            "(or set ANALYSIS_WRAPPER_ROCRATE_CONTEXT to the RO-Crate 1.1 context's file)"
        )
    content = CONTEXT_FILE.read_bytes()
    assert json.loads(content)["@id"] == CONTEXT_URL, f"{CONTEXT_FILE} is not RO-Crate 1.1's"
    headers = {"Content-Type": "application/ld+json"}
    response = requests.Response()
    response.status_code = 200
    response.url = CONTEXT_URL
    response.encoding = "utf-8"
    response.headers.update(headers)
    response._content = content
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(content),
        headers=headers,
        status=200,
        preload_content=False,
        request_url=CONTEXT_URL,
    )
    response.request = requests.Request("GET", CONTEXT_URL).prepare()
    session = CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
    try:
        session.cache.save_response(response)
    finally:
        session.close()


def validate(folder: Path, cache: Path, severity: str = "REQUIRED") -> list[tuple[str, str]]:
    """Validate the crate in ``folder``; return each issue as (check id, message).

    Parameters
    ----------
    folder : Path
        A result folder holding ``ro-crate-metadata.json`` and the files it lists.
    cache : Path
        The validator's HTTP cache, seeded by :func:`seed_context_cache`.
    severity : str
        ``REQUIRED`` (MUST) or ``RECOMMENDED`` (MUST and SHOULD).
    """
    from rocrate_validator import models, services

    settings = services.ValidationSettings(
        rocrate_uri=str(folder),
        profile_identifier=PROFILE,
        requirement_severity=models.Severity[severity],
        offline=True,
        cache_path=str(cache),
    )
    with warnings.catch_warnings():
        # rdflib's own deprecations (ConjunctiveGraph), from inside the validator.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"rdflib\.")
        result = services.validate(settings)
    issues = [(issue.check.identifier, issue.message) for issue in result.get_issues()]
    assert result.passed() == (not issues)
    return issues


def read_crate(folder: Path) -> Any:
    """The crate in ``folder``, read with rocrate (ro-crate-py)."""
    from rocrate.rocrate import ROCrate

    return ROCrate(str(folder))


def crate_values(folder: Path) -> dict[str, Any]:
    """What the crate in ``folder`` says, read through rocrate's entities.

    Returns
    -------
    dict
        ``key``, ``inputs`` (each input's ``identifier``, i.e. its location, to its
        name, version and metadata record id), ``parameters`` (name to value, JSON text
        decoded), ``code`` (url, version, commit, tree), ``files`` (path to size and
        sha256), ``agents`` (names), ``start``, ``end`` and ``status``.
    """
    crate = read_crate(folder)
    root = crate.root_dataset
    mentioned = root["mentions"]
    action = mentioned[0] if isinstance(mentioned, list) else mentioned
    assert action.type == "CreateAction"
    objects = as_list(action["object"])
    inputs = {}
    parameters = {}
    for entity in objects:
        if entity.type == "PropertyValue":
            value = entity["value"]
            parameters[entity["name"]] = value
        else:
            record = entity.get("subjectOf")
            inputs[entity["identifier"]] = {
                "type": entity.type,
                "name": entity.get("name"),
                "version": entity.get("version"),
                "record_id": record["identifier"] if record is not None else None,
            }
    application = action["instrument"]
    identifiers = {pv["propertyID"]: pv["value"] for pv in as_list(application.get("identifier"))}
    files = {
        entity.id: {"size": int(entity["contentSize"]), "sha256": entity["sha256"]}
        for entity in as_list(action["result"])
    }
    return {
        "key": root["identifier"],
        "inputs": inputs,
        "parameters": parameters,
        "code": {
            "url": application["url"],
            "version": application["version"],
            "commit": identifiers.get("git commit"),
            "tree": identifiers.get("code tree"),
        },
        "files": files,
        "agents": [agent["name"] for agent in as_list(action["agent"])],
        "start": action["startTime"],
        "end": action["endTime"],
        "status": action["actionStatus"],
    }


def as_list(value: Any) -> list[Any]:
    """A JSON-LD property as a list: none, one value or several."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
