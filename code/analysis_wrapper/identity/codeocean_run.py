"""What a Code Ocean run was: its computation, capsule, pipeline, release and data assets.

Plain data, kept apart from :mod:`analysis_wrapper.identity.codeocean` (which reads it through the
SDK) so that records and the runner can name these types without importing the client:
outside Code Ocean nothing of the SDK side is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .key import CodeIdentity


@dataclass(frozen=True)
class PipelineInfo:
    """The Code Ocean pipeline a capsule runs in."""

    id: str
    name: str
    url: str


@dataclass(frozen=True)
class CodeOceanRun:
    """What Code Ocean says about the running computation; none of it is in the key.

    Parameters
    ----------
    computation_id : str
        ``CO_COMPUTATION_ID``.
    capsule_id : str
        The capsule that runs (its pipeline process's capsule in a pipeline).
    capsule_name : str
        The capsule's display name (``Code.name``).
    capsule_url : str
        ``<domain>/capsule/<slug>``.
    release : str or None
        ``<major>.<minor>`` of the release that runs; ``None`` for an editable capsule.
    release_url : str or None
        URL of the capsule that holds that release.
    pipeline : PipelineInfo or None
        The pipeline, in a pipeline run.
    data_asset_urls : tuple of str
        Where the data assets attached to the computation live.
    owner_email : str or None
        Who started the computation.
    git_url : str or None
        The Git repository the capsule is linked to, when it is not a duplicate (a
        duplicate inherits its original's link, upstream defect D29).
    """

    computation_id: str
    capsule_id: str
    capsule_name: str
    capsule_url: str
    release: str | None = None
    release_url: str | None = None
    pipeline: PipelineInfo | None = None
    data_asset_urls: tuple[str, ...] = ()
    owner_email: str | None = None
    git_url: str | None = None

    def notes(self) -> list[str]:
        """Lines for the record's notes, naming the computation and its data assets."""
        lines = [f"code ocean computation: {self.computation_id} (capsule {self.capsule_url})"]
        if self.owner_email:
            lines.append(f"code ocean computation owner: {self.owner_email}")
        if self.git_url:
            lines.append(f"code ocean capsule git repository: {self.git_url}")
        if self.data_asset_urls:
            lines.append("code ocean data assets: " + ", ".join(self.data_asset_urls))
        return lines


@dataclass(frozen=True)
class CodeOceanIdentity(CodeIdentity):
    """A code identity, plus the Code Ocean run it was resolved in (not in the key)."""

    codeocean: CodeOceanRun | None = None


def record_notes(run: CodeOceanRun | None) -> Sequence[str]:
    """The record's notes about a Code Ocean run (none outside Code Ocean)."""
    return run.notes() if run else ()
