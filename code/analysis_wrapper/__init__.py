"""aind-analysis-wrapper: run an analysis over many data assets, exactly once each.

The user's capsule imports from here only::

    from analysis_wrapper import AnalysisOutputs, AnalysisParameters, Job, run_analysis_jobs
"""

import typing

from .capsule import run_analysis_jobs
from .errors import (
    ConfigError,
    JobInputError,
    ProvenanceError,
    StoreError,
    TransientError,
    UsageError,
    WrapperError,
)
from .identity.key import CodeIdentity, compute_key, key_preimage
from .job.job_file import Job
from .job.parameters import AnalysisOutputs, AnalysisParameters

if typing.TYPE_CHECKING:
    from .record.query import find_records

__version__ = "0.1.0"

__all__ = [
    "AnalysisOutputs",
    "AnalysisParameters",
    "CodeIdentity",
    "ConfigError",
    "Job",
    "JobInputError",
    "ProvenanceError",
    "StoreError",
    "TransientError",
    "UsageError",
    "WrapperError",
    "__version__",
    "compute_key",
    "find_records",
    "key_preimage",
    "run_analysis_jobs",
]


def __getattr__(name: str) -> typing.Any:
    # find_records serves notebooks and scripts, not a run: a capsule starting up
    # does not pay for its import.
    if name == "find_records":
        from .record.query import find_records

        return find_records
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
