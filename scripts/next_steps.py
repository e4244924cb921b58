"""What to do after ``make run``: the venv's commands, and where the run left things.

``make run`` prints this last, because everything the README does next runs in
``.venv`` (``analysis-wrapper`` and the example's libraries are installed nowhere else).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

NEXT_STEPS = """
Next steps (see README, "After make run"):
  source .venv/bin/activate       then `analysis-wrapper` and `python` are the venv's;
                                  or call .venv/bin/analysis-wrapper, .venv/bin/python
  results/report.html             this run's report: one row per job, its reason, figures
  results/<key>/                  each job's files, as your run_analysis wrote them
  .analysis_store/results/        the published copies (the embedded results store)
  .analysis_store/records.sqlite  the records (embedded); list them from the venv:
                                    analysis-wrapper results find
  cd code && python run_capsule.py --plan 1    what would run now, and why
  Make it yours: edit code/run_capsule.py and code/example_analysis_model.py, then
                 `make init` (README, "Make it yours", lists every step)"""


def main() -> None:
    print(NEXT_STEPS)
    report = REPO_ROOT / "results" / "report.html"
    if report.is_file():
        print(f"\nReport: {report.as_uri()}")


if __name__ == "__main__":
    main()
