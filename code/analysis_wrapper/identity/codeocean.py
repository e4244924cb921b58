"""Code Ocean metadata through the ``codeocean`` SDK: which capsule, pipeline and release ran.

What a Code Ocean run exposes of the code that runs (read from the SDK's models, the
API documentation and the ``main.nf`` files Code Ocean generates for pipelines):

- Environment: ``CO_COMPUTATION_ID``, ``CO_CAPSULE_ID`` (each pipeline process exports
  its own) and, in a pipeline, ``CO_PIPELINE_ID``. No variable holds a commit.
- Files: in a pipeline each process clones the capsule's repository, checks out the
  commit pinned in the pipeline's ``main.nf``, moves ``code/`` out and deletes the
  clone, ``.git`` included; so ``/code`` is not a git work tree.
- API: a computation has no commit field. The run of a released capsule carries the
  release's *major* version (``version`` on the computation, ``processes[].version``
  in a pipeline), and a capsule lists its releases (``versions``: major, minor,
  release time). The commit of a run is recorded only afterwards, on a result data
  asset made from it (``provenance.commit``).

So the commit that ran is known only from git; the release that ran, from the API.
:func:`resolve_codeocean_identity` applies the version policy (``CODE_VERSION_POLICY``)
to that, and refuses to post when the version cannot be established.

The API is read through :class:`~analysis_wrapper.identity.codeocean_api.CodeOceanClient`,
which imports the SDK on first use and translates its errors at the boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config.settings import CodeOceanSettings, VersionPolicy
from .codeocean_api import (
    INSTALL_HINT,
    MIN_SERVER_VERSION_HEADER,
    TIMEOUT_SECONDS,
    UNKNOWN_VERSION,
    CodeOceanClient,
    CodeOceanError,
    CodeOceanUnavailableError,
    base_url,
)
from .codeocean_run import CodeOceanIdentity, CodeOceanRun, PipelineInfo, record_notes
from .key import CodeIdentity

__all__ = [
    "INSTALL_HINT",
    "MIN_SERVER_VERSION_HEADER",
    "TIMEOUT_SECONDS",
    "UNKNOWN_VERSION",
    "CodeOceanClient",
    "CodeOceanError",
    "CodeOceanIdentity",
    "CodeOceanRun",
    "CodeOceanUnavailableError",
    "PipelineInfo",
    "base_url",
    "data_asset_url",
    "read_run",
    "record_notes",
    "resolve_codeocean_identity",
]

log = logging.getLogger(__name__)


def read_run(settings: CodeOceanSettings, client: CodeOceanClient | None = None) -> CodeOceanRun:
    """Read the running computation, its capsule, pipeline, release and data assets.

    Raises
    ------
    CodeOceanError, CodeOceanUnavailableError
        When a lookup fails; the message names the remedy.
    """
    computation_id = (settings.computation_id or "").strip()
    capsule_id = (settings.capsule_id or "").strip()
    if not computation_id or not capsule_id:
        raise CodeOceanError(
            "CO_COMPUTATION_ID and CO_CAPSULE_ID must both be set to read Code Ocean "
            "(Code Ocean sets them in every run)"
        )
    client = client or CodeOceanClient(settings)
    computation, raw = client.computation(computation_id)
    pipeline: PipelineInfo | None = None
    major = raw.get("version")
    pipeline_id = (settings.pipeline_id or "").strip()
    if pipeline_id:
        found = client.pipeline(pipeline_id)
        pipeline = PipelineInfo(pipeline_id, found.name, client.web_url("capsule", found.slug))
        major = _own_process_version(computation, capsule_id, pipeline.name)
    capsule = client.capsule(capsule_id)
    release, release_url = (None, None)
    if isinstance(major, int):
        release, release_url = _release(client, capsule, major, int(computation.created))
    original = getattr(capsule, "original_capsule", None)
    return CodeOceanRun(
        computation_id=computation_id,
        capsule_id=capsule_id,
        capsule_name=capsule.name,
        capsule_url=client.web_url("capsule", capsule.slug),
        release=release,
        release_url=release_url,
        pipeline=pipeline,
        data_asset_urls=tuple(
            data_asset_url(client, asset.id) for asset in (computation.data_assets or [])
        ),
        owner_email=getattr(computation, "owner_email", None),
        git_url=None if original is not None else getattr(capsule, "cloned_from_url", None),
    )


def _own_process_version(computation: Any, capsule_id: str, pipeline_name: str) -> int | None:
    """The release major of this capsule's process in the pipeline (``None``: unreleased).

    Processes are matched by capsule id, exactly (upstream matched a substring of the
    process name, defect D16).

    Raises
    ------
    CodeOceanError
        If no process runs this capsule, or several run it at different versions.
    """
    matches = [p for p in (computation.processes or []) if p.capsule_id == capsule_id]
    if not matches:
        raise CodeOceanError(
            f"no process of pipeline {pipeline_name!r} runs capsule {capsule_id} "
            "(CO_CAPSULE_ID); check that the pipeline's main.nf exports this capsule's id"
        )
    versions = {p.version for p in matches}
    if len(versions) > 1:
        names = ", ".join(sorted(p.name for p in matches))
        raise CodeOceanError(
            f"pipeline {pipeline_name!r} runs capsule {capsule_id} in several processes "
            f"({names}) at different versions, so the version of this one is ambiguous; pin "
            "one version for all of them"
        )
    (version,) = versions
    return version if isinstance(version, int) else None


def _field(item: Any, name: str) -> Any:
    """Read ``name`` from an SDK object or a plain dict (SDK 0.15/0.16 give dicts)."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _release(client: CodeOceanClient, capsule: Any, major: int, started: int) -> tuple[str, str]:
    """``<major>.<minor>`` of the release that runs, and the URL of its capsule.

    Code Ocean says only the major version that runs. The minor is the latest release
    of that major made before the computation started.

    Raises
    ------
    CodeOceanError
        If the capsule lists no such release.
    """
    owner = capsule
    versions = list(_field(capsule, "versions") or [])
    release_capsule = _field(capsule, "release_capsule")
    if not versions and release_capsule:
        owner = client.capsule(release_capsule)
        versions = list(_field(owner, "versions") or [])
    minors = [
        int(_field(v, "minor_version") or 0)
        for v in versions
        if _field(v, "major_version") == major and int(_field(v, "release_time") or 0) <= started
    ]
    if not minors:
        raise CodeOceanError(
            f"capsule {capsule.name!r} runs release {major}, but Code Ocean lists no release "
            f"{major}.x made before this run; check the capsule's releases"
        )
    return f"{major}.{max(minors)}", client.web_url("capsule", owner.slug)


def data_asset_url(client: CodeOceanClient, data_asset_id: str) -> str:
    """Where a data asset lives: its bucket (``s3://``, ``gs://``) or its Code Ocean page."""
    asset = client.data_asset(data_asset_id)
    bucket = getattr(asset, "source_bucket", None)
    name = getattr(bucket, "bucket", None) if bucket is not None else None
    if name:
        origin = str(getattr(bucket, "origin", "") or "").lower()
        scheme = "gs" if origin.endswith("gcp") else "s3"
        prefix = (getattr(bucket, "prefix", None) or "").strip("/")
        return f"{scheme}://{name}/{prefix}" if prefix else f"{scheme}://{name}"
    return f"{client.base_url}/data-assets/{data_asset_id}"


# --- the version policy ------------------------------------------------------------------


def resolve_codeocean_identity(
    settings: CodeOceanSettings,
    git_identity: Callable[[], CodeIdentity | None],
    *,
    posting: bool,
    code_dir: Path,
    client: CodeOceanClient | None = None,
) -> CodeOceanIdentity:
    """Apply the version policy inside Code Ocean (or with ``CODE_VERSION_POLICY=release``).

    ``commit``: the commit from git, when ``code/`` is in a work tree; Code Ocean does
    not tell a running computation its commit, so without a work tree the version is
    unknown. ``release``: the capsule release that runs, from Code Ocean.

    Parameters
    ----------
    settings : CodeOceanSettings
        The Code Ocean environment.
    git_identity : callable
        Returns the git identity of ``code/`` (``None`` outside a work tree); it applies
        the dirty-tree policy itself.
    posting : bool
        True with ``--dry_run 0``: then every failure is an error, never a silent change
        of version. In a dry run a failure is a warning and the version is ``unknown``.
    code_dir : Path
        The capsule's ``code/`` folder.
    client : CodeOceanClient, optional
        A client to read with (tests); one is made from ``settings`` otherwise.

    Raises
    ------
    ProvenanceError
        (``CodeOceanError`` included) when posting and the version cannot be established.
    CodeOceanUnavailableError
        When posting and Code Ocean cannot be reached.
    """
    run: CodeOceanRun | None = None
    if settings.in_codeocean:
        try:
            run = read_run(settings, client)
        except (CodeOceanError, CodeOceanUnavailableError) as exc:
            if posting:
                raise
            log.warning("%s; the dry run goes on without Code Ocean metadata", exc)
    if settings.version_policy is VersionPolicy.RELEASE:
        identity = _release_identity(run, settings, posting, code_dir)
    else:
        identity = git_identity() or _no_commit(run, posting, code_dir)
    if run is not None:
        log.info(
            "Code Ocean: capsule %r%s, computation %s",
            run.capsule_name,
            f" in pipeline {run.pipeline.name!r}" if run.pipeline else "",
            run.computation_id,
        )
    return CodeOceanIdentity(
        url=identity.url,
        version=identity.version,
        commit=identity.commit,
        name=run.capsule_name if run else identity.name,
        dirty=identity.dirty,
        tree=identity.tree,
        paths=identity.paths,
        pushed=identity.pushed,
        codeocean=run,
    )


def _release_identity(
    run: CodeOceanRun | None, settings: CodeOceanSettings, posting: bool, code_dir: Path
) -> CodeIdentity:
    if run is not None and run.release is not None:
        return CodeIdentity(url=run.release_url or run.capsule_url, version=run.release)
    if run is not None:
        problem = (
            "CODE_VERSION_POLICY=release, but this run is of an unreleased version of capsule "
            f"{run.capsule_name!r} (Code Ocean gives it no release version); run a released "
            "version (Capsule > Release, then run the release or pin it in the pipeline), or set "
            "CODE_VERSION_POLICY=commit"
        )
    elif settings.in_codeocean:
        problem = "CODE_VERSION_POLICY=release, but the capsule's release could not be read"
    else:
        problem = (
            "CODE_VERSION_POLICY=release names a Code Ocean capsule release, and this is not "
            "a Code Ocean run (CO_COMPUTATION_ID is not set); unset CODE_VERSION_POLICY "
            "(commit) outside Code Ocean"
        )
    return _unknown(problem, run, posting, code_dir)


def _no_commit(run: CodeOceanRun | None, posting: bool, code_dir: Path) -> CodeIdentity:
    problem = (
        f"{code_dir} is not in a git work tree, and Code Ocean does not tell a running "
        "computation which commit it runs, so the exact commit is unknown; to post from "
        "Code Ocean, set CODE_VERSION_POLICY=release and run a released capsule version"
    )
    return _unknown(problem, run, posting, code_dir)


def _unknown(problem: str, run: CodeOceanRun | None, posting: bool, code_dir: Path) -> CodeIdentity:
    if posting:
        raise CodeOceanError(problem)
    log.warning("%s; dry run: code version %r", problem, UNKNOWN_VERSION)
    url = run.capsule_url if run else code_dir.resolve().as_posix()
    return CodeIdentity(url=url, version=UNKNOWN_VERSION)
