"""The test capsule's science: its data is reproducible and its ISI-violation metric right.

It imports tests/capsule/code/example_isi_violations.py (pytest's pythonpath puts the
test capsule first), never code/'s, which is the scientist's to replace.
"""

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np

import example_isi_violations
from example_isi_violations import isi_violations

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_CAPSULE = REPO_ROOT / "tests" / "capsule"


def test_example_data_is_reproducible(tmp_path: Path) -> None:
    """The generator writes byte-identical copies of the test capsule's data."""
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_example_data.py"), str(tmp_path)],
        check=True,
    )
    committed = TEST_CAPSULE / "data"
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    mismatched = [p for p in made if not filecmp.cmp(tmp_path / p, committed / p, shallow=False)]
    assert mismatched == []


def test_isi_violations_counts_short_intervals() -> None:
    """Intervals shorter than the refractory period count; the ratio follows Hill et al."""
    spikes = np.array([0.0, 0.001, 0.5, 0.5012, 1.0, 2.0])
    count, ratio = isi_violations(spikes, duration_s=10.0, refractory_ms=1.5, censored_ms=0.0)
    assert count == 2
    expected = 2 / (2 * 6**2 * 0.0015 / 10.0)
    assert ratio == expected


def test_isi_violations_censored_period_excludes_duplicates() -> None:
    """Intervals shorter than the censored period are not violations."""
    spikes = np.array([0.0, 0.0001, 0.5, 0.5012])
    count, _ = isi_violations(spikes, duration_s=1.0, refractory_ms=1.5, censored_ms=0.5)
    assert count == 1


def test_isi_violations_of_a_silent_unit() -> None:
    """A unit with fewer than two spikes has no violations."""
    assert isi_violations(np.array([0.3]), 1.0, 1.5, 0.0) == (0, 0.0)


def test_the_science_module_is_the_test_capsules() -> None:
    """The module under test is the test capsule's copy, whatever code/ holds."""
    assert Path(example_isi_violations.__file__).parent == TEST_CAPSULE / "code"
