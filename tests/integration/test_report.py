"""The run's report.html, rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CapsuleCopy, isolated_environment, make_capsule_copy

CHROMIUM = "chromium"
REMEDY = (
    "chromium is not installed: run `make test` (it installs it), or "
    "`apt-get update && apt-get install -y chromium` on Debian"
)

# Appended to a copy of the report, never to the report itself: once every image has
# loaded, write each one's natural size into the DOM, which --dump-dom then prints.
PROBE = """
<script>
window.addEventListener("load", () => {
  const sizes = Array.from(document.images, (img) => [img.naturalWidth, img.naturalHeight]);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script>
"""


def chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Open ``page`` in headless Chromium with ``mode`` (--dump-dom, --screenshot=...)."""
    binary = shutil.which(CHROMIUM)
    if binary is None:
        pytest.fail(REMEDY)
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--window-size=1400,2400",
            "--virtual-time-budget=10000",
            *mode,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def report_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[CapsuleCopy, Path]:
    """Run the example once; copy its report.html ALONE into an empty folder."""
    with isolated_environment():
        capsule = make_capsule_copy(tmp_path_factory.mktemp("report") / "capsule")
        done = capsule.run("--dry_run", "0")
    assert done.returncode == 0, done.stderr
    alone = tmp_path_factory.mktemp("opened_alone")
    shutil.copy(capsule.results / "report.html", alone / "report.html")
    return capsule, alone / "report.html"


def test_report_lists_every_job_with_its_action_and_reason(
    report_copy: tuple[CapsuleCopy, Path], tmp_path: Path
) -> None:
    """Chromium renders one table row per job, with key, action, status and reason."""
    capsule, report = report_copy
    done = chromium(report, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr
    rows = re.findall(r'<tr class="job (\w+)">(.*?)</tr>', done.stdout, re.S)
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert len(rows) == len(summary["jobs"]) == 6
    for (status, row), job in zip(rows, summary["jobs"], strict=True):
        assert status == job["status"] == "succeeded"
        assert Path(job["job_file"]).name in row
        assert job["key"] in row
        assert "no record with this key" in row


def test_report_images_render_when_opened_alone(
    report_copy: tuple[CapsuleCopy, Path], tmp_path: Path
) -> None:
    """Every job's figure decodes in Chromium from a copy of report.html alone."""
    _, report = report_copy
    probed = report.with_name("probed.html")
    probed.write_text(report.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    done = chromium(probed, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, "the probe did not run: " + done.stdout[-500:]
    sizes = json.loads(found.group(1))
    assert len(sizes) == 6  # one units.png per job
    assert all(width > 0 and height > 0 for width, height in sizes), sizes


def test_report_screenshot_is_a_png(report_copy: tuple[CapsuleCopy, Path], tmp_path: Path) -> None:
    """Chromium takes a screenshot of the report (it renders as a page)."""
    _, report = report_copy
    shot = tmp_path / "report.png"
    done = chromium(report, tmp_path / "profile", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dry_run_writes_a_report_and_plan_does_not(capsule: CapsuleCopy) -> None:
    """A dry run writes report.html; --plan 1 writes plan.json and no report."""
    planned = capsule.run("--plan", "1")
    assert planned.returncode == 0, planned.stderr
    assert not (capsule.results / "report.html").exists()
    dry = capsule.run("--dry_run", "1")
    assert dry.returncode == 0, dry.stderr
    html = (capsule.results / "report.html").read_text(encoding="utf-8")
    assert "(dry run)" in html
    assert html.count('<tr class="job succeeded">') == 6


def test_report_shows_a_failed_jobs_error(capsule: CapsuleCopy) -> None:
    """An invalid job file appears as a failed row carrying its error message."""
    (capsule.job_dir / "broken.json").write_text("{not json", encoding="utf-8")
    done = capsule.run("--dry_run", "1")
    assert done.returncode != 0
    html = (capsule.results / "report.html").read_text(encoding="utf-8")
    failed = re.findall(r'<tr class="job failed">(.*?)</tr>', html, re.S)
    assert len(failed) == 1 and "broken.json" in failed[0]
    assert '<td class="message"></td>' not in failed[0]
    assert html.count('<tr class="job succeeded">') == 6
