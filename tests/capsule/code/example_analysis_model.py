"""Test capsule: the analysis's parameters and outputs.

Every field of the parameters model is a flag (``--isi_violations_cutoff 0.3``), an
app-panel parameter in Code Ocean, and part of each result's identity: change a value
and the job runs again. The outputs model is stored in each result's record.
"""

from pydantic import Field, model_validator

from analysis_wrapper import AnalysisOutputs, AnalysisParameters


class UnitFilterParameters(AnalysisParameters):
    """Parameters of ISI-violation unit filtering."""

    analysis_name: str = Field(default="Unit Filtering", description="Name of the analysis.")
    isi_violations_cutoff: float = Field(
        default=0.5, ge=0, description="A unit passes when its ISI-violation ratio is below this."
    )
    refractory_period_ms: float = Field(
        default=1.5, gt=0, description="Inter-spike intervals shorter than this are violations."
    )
    censored_period_ms: float = Field(
        default=0.0, ge=0, description="Intervals shorter than this are not counted (duplicates)."
    )
    min_spikes: int = Field(default=20, ge=0, description="Units with fewer spikes never pass.")

    @model_validator(mode="after")
    def _censored_below_refractory(self) -> "UnitFilterParameters":
        if self.censored_period_ms >= self.refractory_period_ms:
            raise ValueError("censored_period_ms must be shorter than refractory_period_ms")
        return self


class UnitFilterOutputs(AnalysisOutputs):
    """What one job found; stored in the record's output_parameters."""

    session_id: str
    subject_id: str | None = None
    record_subject_id: str | None = None  # from the asset's metadata record, if configured
    units_total: int
    units_passing: int
    fraction_passing: float
    passing_unit_ids: list[str]
