"""The framework's test capsule: ISI-violation filtering, run once per job.

A copy of the example (code/ at the repository's top) as the tests were written
against it. The framework's tests copy this capsule (tests/conftest.py), never code/,
so a scientist can replace the example there and keep ``make test`` green; change it
only together with the tests that read its parameters, outputs and data.
"""

from pathlib import Path

from analysis_wrapper import Job, run_analysis_jobs
from example_analysis_model import UnitFilterOutputs, UnitFilterParameters
from example_isi_violations import load_session, plot_units, unit_table, write_csv


def run_analysis(
    job: Job, parameters: UnitFilterParameters, results_dir: Path
) -> UnitFilterOutputs:
    """Filter one session's units by ISI violations; write a table and a figure."""
    # The job's first asset, wherever it lives (data/, an S3 prefix, a Code Ocean mount).
    session = load_session(job.inputs[0].local_path("spike_times.json"))
    # Its metadata record (METADATA_HOST or DOCDB_HOST); None when none is configured.
    record_subject_id = job.asset_records().get("subject.subject_id")

    rows = unit_table(session, parameters.refractory_period_ms, parameters.censored_period_ms)
    for row in rows:
        row["passes"] = (
            row["n_spikes"] >= parameters.min_spikes
            and row["isi_violations_ratio"] < parameters.isi_violations_cutoff
        )
    write_csv(rows, results_dir / "units.csv")
    title = f"{session['session_id']}: cutoff {parameters.isi_violations_cutoff:g}"
    plot_units(rows, parameters.isi_violations_cutoff, title, results_dir / "units.png")

    passing = [row["unit_id"] for row in rows if row["passes"]]
    return UnitFilterOutputs(
        session_id=session["session_id"],
        subject_id=session.get("subject_id"),
        record_subject_id=record_subject_id,
        units_total=len(rows),
        units_passing=len(passing),
        fraction_passing=round(len(passing) / len(rows), 4) if rows else 0.0,
        passing_unit_ids=passing,
    )


if __name__ == "__main__":
    run_analysis_jobs(
        run_analysis,
        parameters_model=UnitFilterParameters,
        outputs_model=UnitFilterOutputs,
    )
