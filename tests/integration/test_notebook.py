"""The test capsule's notebook runs top to bottom against its posted records."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from conftest import REPO_ROOT, TEST_CAPSULE, CapsuleCopy

NOTEBOOK = Path("example_notebooks") / "querying_results.ipynb"


def test_notebooks_are_committed_without_outputs() -> None:
    """Every notebook of code/ and the test capsule holds no outputs or execution counts."""
    paths = [*(REPO_ROOT / "code").rglob("*.ipynb"), *(TEST_CAPSULE / "code").rglob("*.ipynb")]
    assert TEST_CAPSULE / "code" / NOTEBOOK in paths
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path


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
