"""The result folder's RO-Crate: ``ro-crate-metadata.json``, a Process Run Crate.

Platforms that exchange run provenance (WorkflowHub, Galaxy, Nextflow's nf-prov) read
`Workflow Run RO-Crates <https://www.researchobject.org/workflow-run-crate/>`_. Every
published result folder holds one, of the *Process Run Crate* profile (0.5, on RO-Crate
1.1), so a result can be understood without this package::

    ./                     Dataset: the folder, its files (hasPart), the run (mentions)
    #run                   CreateAction: the run of the analysis
        instrument         SoftwareApplication: the code's URL, its version (commit or
                           release), its commit and code tree as identifiers
        object             the inputs (Dataset per s3_location, File per file_location,
                           with asset name, version and metadata record where known),
                           then one PropertyValue per validated parameter
        result             the manifest's files: File with contentSize and sha256
        agent              the experimenter (Person)
        startTime, endTime, actionStatus (CompletedActionStatus)

It is a pure function of the record (:mod:`.metadata`, built from the key's pre-image)
and the manifest's file list, so it can never say something the record does not:
inputs, parameters and code come from the pre-image rebuilt from the record
(:func:`.preimage.record_preimage`), times and experimenters from its data process.

**How it relates to the manifest.** The crate lists the manifest's files; the manifest
lists the crate too. The crate is written after every other file is known and hashed,
and before the manifest, so the manifest covers it like any file (its size and sha256)
and stays the last thing published: "the manifest exists" still means "the upload
finished", and a folder still holds exactly its manifest's files (and the manifest).
Neither file describes ``manifest.json`` itself, which is written last.

Only a folder that is published gets a crate, and only a finished analysis is
published, so its action status is always completed.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..job.locations import is_s3
from .fields import (
    INPUT_ASSET_NAMES,
    INPUT_RECORD_IDS,
    by_input_location,
    record_process,
)
from .preimage import record_preimage

CRATE_NAME = "ro-crate-metadata.json"
"""The crate's file, at the top of every published result folder."""

RO_CRATE = "https://w3id.org/ro/crate/1.1"
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
CONTEXT: list[Any] = [
    f"{RO_CRATE}/context",
    # RO-Crate 1.1's context predates schema.org's sha256; this is how RO-Crate 1.1 says
    # to add a term ("Extending RO-Crate").
    {"sha256": "http://schema.org/sha256"},
]
COMPLETED = "http://schema.org/CompletedActionStatus"
ACTION_ID = "#run"
CODE_ID = "#code"
LICENSE_ID = "#license"
DEFAULT_MEDIA_TYPE = "application/octet-stream"

_SCALARS = (str, bool, int, float)


def build_crate(
    record: Mapping[str, Any],
    files: Iterable[Mapping[str, Any]],
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the Process Run Crate of one result folder.

    Parameters
    ----------
    record : mapping
        The job's record (as :func:`analysis_wrapper.record.metadata.build_record`
        returns it).
    files : iterable of mapping
        The manifest's file entries (``path``, ``size``, ``sha256``), the crate's own
        file not among them.
    descriptions : mapping, optional
        A description per file path, for the files the framework writes.

    Returns
    -------
    dict
        The crate's JSON-LD, ready to be written as ``ro-crate-metadata.json``.
    """
    preimage = record_preimage(record)
    process = record_process(record)
    code: Mapping[str, Any] = process.get("code") or {}
    key = str(record.get("_id") or "")
    code_name = str(code.get("name") or process.get("name") or "the analysis")
    results = [_result_file(entry, (descriptions or {}).get(str(entry["path"]))) for entry in files]
    inputs = _inputs(record, preimage)
    parameters = _parameters(preimage.get("parameters") or {})
    people = _people(process.get("experimenters") or [])
    application, identifiers = _application(code, code_name, preimage)
    start, end = _time(process.get("start_date_time")), _time(process.get("end_date_time"))
    input_names = [str(entity["name"]) for entity, _ in inputs if entity["@type"] == "Dataset"]
    action: dict[str, Any] = {
        "@id": ACTION_ID,
        "@type": "CreateAction",
        "name": f"Run of {code_name} on {', '.join(input_names) or 'no inputs'}",
        "description": (
            f"run_analysis of {code_name} for job key {key}: its inputs and validated "
            "parameters are the objects, the files it wrote (with the framework's "
            "metadata.nd.json and key.json) the results"
        ),
        "instrument": {"@id": application["@id"]},
        **_link("object", [entity for entity, _ in inputs] + parameters),
        **_link("result", results),
        **_link("agent", people),
        **({"startTime": start} if start else {}),
        **({"endTime": end} if end else {}),
        "actionStatus": COMPLETED,
    }
    root: dict[str, Any] = {
        "@id": "./",
        "@type": "Dataset",
        "name": f"{code_name} result {key[:12]}",
        "description": (
            f"The files one run of {code_name} wrote for one job (key {key}), as "
            "published; the record of the same key holds the same values"
        ),
        "identifier": key,
        **({"datePublished": end} if end else {}),
        "license": {"@id": LICENSE_ID},
        **_link("author", people),
        "conformsTo": {"@id": PROCESS_RUN_CRATE},
        **_link("hasPart", results + [entity for entity, _ in inputs]),
        "mentions": {"@id": ACTION_ID},
    }
    graph: list[dict[str, Any]] = [
        {
            "@id": CRATE_NAME,
            "@type": "CreativeWork",
            "conformsTo": {"@id": RO_CRATE},
            "about": {"@id": "./"},
        },
        root,
        {
            "@id": PROCESS_RUN_CRATE,
            "@type": "CreativeWork",
            "name": "Process Run Crate",
            "version": "0.5",
        },
        {
            "@id": LICENSE_ID,
            "@type": "CreativeWork",
            "name": "No license declared",
            "description": (
                "The capsule that made these results declares no license for them; ask "
                "the lab that ran it before reusing them"
            ),
        },
        action,
        application,
        *identifiers,
        *(entity for pair in inputs for entity in (pair[0], *pair[1])),
        *parameters,
        *results,
        *people,
    ]
    return {"@context": CONTEXT, "@graph": graph}


def _link(name: str, entities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: reference(s)}``, a single value for one (as RO-Crate 1.1 prefers), none for none."""
    references = [{"@id": entity["@id"]} for entity in entities]
    if not references:
        return {}
    return {name: references[0] if len(references) == 1 else references}


def _result_file(entry: Mapping[str, Any], description: str | None) -> dict[str, Any]:
    """A manifest entry as a File data entity: its relative path, size and sha256."""
    path = str(entry["path"])
    return {
        # A data entity's @id is its path, URI-escaped (RO-Crate 1.1, "Data entities").
        "@id": quote(path),
        "@type": "File",
        "name": posixpath.basename(path),
        **({"description": description} if description else {}),
        "contentSize": str(entry["size"]),
        "sha256": str(entry["sha256"]),
        "encodingFormat": media_type(path),
    }


def _inputs(
    record: Mapping[str, Any], preimage: Mapping[str, Any]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each input as a data entity, with the contextual entities it refers to.

    An ``s3_location`` is a Dataset, a ``file_location`` a File. ``identifier`` holds
    the location exactly as the key does; ``@id`` is an S3 URL (a folder's ending in
    ``/``), or, for a path, a local identifier: a path would name a file of the crate.
    """
    names = by_input_location(record, INPUT_ASSET_NAMES)
    record_ids = by_input_location(record, INPUT_RECORD_IDS)
    versions: Mapping[str, str] = preimage.get("input_versions") or {}
    found: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for kind, locations in (
        ("Dataset", preimage.get("input_data") or []),
        ("File", preimage.get("file_location") or []),
    ):
        for location in locations:
            entity: dict[str, Any] = {
                "@id": input_id(location, folder=kind == "Dataset"),
                "@type": kind,
                "name": names.get(location) or posixpath.basename(location.rstrip("/")),
                "identifier": location,
            }
            if kind == "File":
                entity["encodingFormat"] = media_type(location)
            if location in versions:
                entity["version"] = versions[location]
            related: list[dict[str, Any]] = []
            if location in record_ids:
                record_id = record_ids[location]
                related.append(
                    {
                        "@id": f"#metadata-record:{quote(record_id, safe='')}",
                        "@type": "CreativeWork",
                        "name": f"metadata record {record_id}",
                        "identifier": record_id,
                        "description": (
                            "The data asset's aind-data-schema metadata record (the job's "
                            "docdb_record_id)"
                        ),
                    }
                )
                entity["subjectOf"] = {"@id": related[0]["@id"]}
            found.append((entity, related))
    return found


def input_id(location: str, *, folder: bool) -> str:
    """The ``@id`` of an input: its S3 URL, URI-escaped, or ``#input:<path>`` for a path."""
    if is_s3(location):
        url = quote(location, safe=":/")
        return url + "/" if folder and not url.endswith("/") else url
    return f"#input:{quote(location, safe='/')}"


def _parameters(parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One PropertyValue per validated parameter, by name.

    A text, number or boolean is the value itself; a list, an object or null is its
    compact JSON text (JSON-LD has no null, and a list would read as several values).
    """
    return [
        {
            "@id": f"#parameter:{quote(name, safe='')}",
            "@type": "PropertyValue",
            "name": name,
            "value": value if isinstance(value, _SCALARS) else compact_json(value),
        }
        for name, value in sorted(parameters.items())
    ]


def compact_json(value: Any) -> str:
    """The compact JSON text a structured parameter's PropertyValue holds."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _application(
    code: Mapping[str, Any], code_name: str, preimage: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The code as a SoftwareApplication, and the PropertyValues that identify it.

    Its ``@id`` is the code's URL when that is a web address (a git remote, a Code
    Ocean capsule), else a local identifier; ``version`` is the record's (a commit, or
    a release); the commit and the code tree the key holds are identifiers.
    """
    url = str(code.get("url") or "")
    key_code: Mapping[str, Any] = preimage.get("code") or {}
    named = (
        ("commit", "git commit", code.get("commit_hash")),
        ("tree", "code tree", key_code.get("tree")),
    )
    identifiers = [
        {
            "@id": f"#code:{part}",
            "@type": "PropertyValue",
            "propertyID": name,
            "name": name,
            "value": str(value),
        }
        for part, name, value in named
        if value
    ]
    application: dict[str, Any] = {
        "@id": url if url.startswith(("https://", "http://")) else CODE_ID,
        "@type": "SoftwareApplication",
        "name": code_name,
        "url": url,
        "version": str(code.get("version") or "unknown"),
        **_link("identifier", identifiers),
    }
    return application, identifiers


def _people(experimenters: Iterable[Any]) -> list[dict[str, Any]]:
    """Each experimenter as a Person: by ``mailto:`` when an email address."""
    people = []
    for experimenter in experimenters:
        name = str(experimenter)
        email = "@" in name and " " not in name
        people.append(
            {
                "@id": f"mailto:{name}" if email else f"#person:{quote(name, safe='')}",
                "@type": "Person",
                "name": name,
                **({"email": name} if email else {}),
            }
        )
    return people


def _time(text: Any) -> str | None:
    """A record's time as the profile writes one: UTC, milliseconds, ``+00:00``."""
    if not isinstance(text, str) or not text:
        return None
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def media_type(path: str) -> str:
    """A file's media type from its name, from Python's own table (not the machine's).

    A compressed file (``units.csv.gz``) is of its compression's type.
    """
    guessed, encoding = _media_types().guess_type(path, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, DEFAULT_MEDIA_TYPE)
    return guessed or DEFAULT_MEDIA_TYPE


@functools.cache
def _media_types() -> mimetypes.MimeTypes:
    # An instance knows only Python's built-in table: the same crate on every machine,
    # whatever /etc/mime.types says.
    return mimetypes.MimeTypes()
