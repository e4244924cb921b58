"""aind-analysis-wrapper: run an analysis over many data assets, exactly once each.

The user's capsule imports from here only::

    from analysis_wrapper import AnalysisOutputs, AnalysisParameters, Job, run_analysis_jobs
"""

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
from .identity import CodeIdentity, compute_key, key_preimage
from .jobs import Job
from .parameters import AnalysisOutputs, AnalysisParameters
from .query import find_records

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
