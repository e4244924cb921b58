"""The example notebook runs top to bottom against the example's posted records."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from conftest import REPO_ROOT, CapsuleCopy

NOTEBOOK = Path("example_notebooks") / "querying_results.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    """The notebook in the repository holds no outputs or execution counts."""
    notebook = nbformat.read(REPO_ROOT / "code" / NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_querying_notebook_runs_and_plots(capsule: CapsuleCopy) -> None:
    """After a posting run, the notebook finds the 6 records and draws a PNG, without errors."""
    done = capsule.run("--dry_run", "0")
    assert done.returncode == 0, done.stderr
    path = capsule.code / NOTEBOOK
    notebook = nbformat.read(path, as_version=4)
    # The kernel starts in the copy's code/example_notebooks: find_records walks up from there.
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "6 record(s), 6 newest per input and parameters" in text
    assert any("image/png" in output.get("data", {}) for output in outputs)
