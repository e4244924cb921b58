"""The run's report.html, rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
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
    print(f"screenshot: {shot}")  # shown with pytest -rP; kept with pytest's tmp folders


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


# Appended to a copy of a report: drive the page's own sort and filter as a user would,
# then write what the table showed after each step into the DOM for --dump-dom.
INTERACT = """
<script>
window.addEventListener("load", () => {
  const rows = () => Array.from(document.querySelectorAll("#jobs tbody tr"));
  const shown = () => rows().filter((row) => !row.hidden);
  const headers = Array.from(document.querySelectorAll("#jobs thead th"));
  const column = (name) => headers.findIndex((h) => h.textContent.trim() === name);
  const cells = (list, name) => list.map((row) => row.cells[column(name)].textContent.trim());
  const out = { initial: rows().map((row) => row.className) };
  headers[column("Job file")].click();
  out.byName = cells(rows(), "Job file");
  headers[column("Job file")].click();
  out.byNameDescending = cells(rows(), "Job file");
  headers[column("Seconds")].click();
  out.bySeconds = cells(rows(), "Seconds").map(Number);
  const filter = document.getElementById("filter");
  filter.value = "cutoff-0.10";
  filter.dispatchEvent(new Event("input"));
  out.filtered = cells(shown(), "Job file");
  out.count = document.getElementById("shown").textContent;
  filter.value = "";
  filter.dispatchEvent(new Event("input"));
  const status = document.getElementById("status");
  status.value = "failed";
  status.dispatchEvent(new Event("change"));
  out.failedOnly = cells(shown(), "Job file");
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def probe(page: Path, script: str, profile: Path) -> object:
    """What ``script`` (appended to a copy of ``page``) wrote into ``<pre id="probe">``."""
    probed = page.with_name("probed-" + page.name)
    probed.write_text(page.read_text(encoding="utf-8") + script, encoding="utf-8")
    done = chromium(probed, profile, "--dump-dom")
    assert done.returncode == 0, done.stderr
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, "the probe did not run: " + done.stdout[-500:]
    return json.loads(html_unescape(found.group(1)))


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_failures_first_and_the_page_sorts_and_filters_in_chromium(
    capsule: CapsuleCopy, tmp_path: Path
) -> None:
    """A failed job leads; header clicks sort (text and numbers), the box and status filter."""
    (capsule.job_dir / "broken.json").write_text("{not json", encoding="utf-8")
    done = capsule.run("--dry_run", "1")
    assert done.returncode == 1, done.stderr
    seen = probe(capsule.results / "report.html", INTERACT, tmp_path / "profile")
    assert isinstance(seen, dict)
    assert seen["initial"] == ["job failed"] + ["job succeeded"] * 6
    names = sorted(p.name for p in capsule.job_dir.glob("*.json"))
    assert seen["byName"] == names
    assert seen["byNameDescending"] == names[::-1]
    assert seen["bySeconds"] == sorted(seen["bySeconds"]) and len(seen["bySeconds"]) == 7
    assert sorted(seen["filtered"]) == [n for n in names if "cutoff-0.10" in n]
    assert seen["count"] == "3 of 7 job(s) shown"
    assert seen["failedOnly"] == ["broken.json"]


def test_rows_show_the_varied_parameters_and_link_the_result_folder(
    report_copy: tuple[CapsuleCopy, Path],
) -> None:
    """The cutoff (which varies) is in each row; shared parameters are said once; keys link."""
    capsule, report = report_copy
    html = report.read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="job succeeded">(.*?)</tr>', html, re.S)
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    for row, job in zip(rows, summary["jobs"], strict=True):
        cutoff = "0.1" if "cutoff-0.10" in job["job_file"] else "0.5"
        assert f'<td class="params">isi_violations_cutoff={cutoff}</td>' in row
        assert f'<a href="{job["key"]}/">' in row
        assert (capsule.results / job["key"]).is_dir()
        stored = re.search(r'<a href="(file://[^"]+)">stored result</a>', row)
        assert stored and f"/.analysis_store/results/{job['key']}/" in stored.group(1)
    assert "Parameters every job shares: analysis_name=Unit Filtering" in html


@pytest.fixture(params=["folder", "s3"])
def results_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The result store: the embedded folder, or a fresh bucket on the S3 test server."""
    if request.param == "folder":
        return {}
    import boto3

    env: dict[str, str] = request.getfixturevalue("aws_test_env")
    bucket = f"report-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return {**env, "ANALYSIS_BUCKET": f"s3://{bucket}/results"}


def test_skipped_jobs_show_their_stored_figures(
    capsule: CapsuleCopy, tmp_path: Path, results_store: dict[str, str]
) -> None:
    """report.html keeps the last run that ran; a fresh results folder gets stored figures."""
    assert capsule.run("--dry_run", "0", env=results_store).returncode == 0
    ran = (capsule.results / "report.html").read_bytes()
    again = capsule.run("--dry_run", "0", env=results_store)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "6 job(s): 0 ran, 6 skipped, 0 failed (nothing posted)"
    assert (capsule.results / "report.html").read_bytes() == ran  # not replaced
    assert len(list(capsule.results.glob("report-*.html"))) == 2

    # A new Code Ocean run starts with an empty results folder: nothing of the first run.
    for entry in capsule.results.iterdir():
        if entry.name != ".gitkeep":  # committed: the capsule's tree stays clean
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    fresh = capsule.run("--dry_run", "0", env=results_store)
    assert fresh.returncode == 0, fresh.stderr
    report = capsule.results / "report.html"  # none was there: this run writes it
    html = report.read_text(encoding="utf-8")
    assert html.count('<tr class="job skipped">') == 6
    if results_store:  # an s3:// location is no browser address: named, to copy
        assert html.count(f"stored at {results_store['ANALYSIS_BUCKET']}/") == 6
    else:
        assert html.count(">stored result</a>") == 6
    copies = sorted(capsule.results.glob("report_figures/*/units.png"))
    assert len(copies) == 6
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(report, alone / "report.html")  # embedded (small run): renders alone
    sizes = probe(alone / "report.html", PROBE, tmp_path / "profile")
    assert isinstance(sizes, list) and len(sizes) == 6
    assert all(width > 0 and height > 0 for width, height in sizes), sizes


def test_a_report_of_201_jobs_is_small_and_renders_in_chromium(
    report_copy: tuple[CapsuleCopy, Path], tmp_path: Path
) -> None:
    """201 jobs, each with the example's figure: figures linked, page small, all decode."""
    from analysis_wrapper.report.html import render_report
    from analysis_wrapper.run.context import JobResult, RunSummary, Status

    capsule, _ = report_copy
    figure = next(capsule.results.glob("*/units.png")).read_bytes()
    results = tmp_path / "results"
    summary = RunSummary(dry_run=True)
    parameters = {}
    for index in range(201):
        key = f"{index:064x}"
        (results / key).mkdir(parents=True)
        (results / key / "units.png").write_bytes(figure)
        job_file = f"/data/job_dict/job_{index:03d}.json"
        status = Status.FAILED if index % 50 == 7 else Status.SUCCEEDED
        summary.jobs.append(JobResult(job_file, key, "run", status, seconds=index / 7))
        parameters[job_file] = {"cutoff": index / 200, "min_spikes": 20}
    page = results / "report.html"
    page.write_text(render_report(results, summary, parameters=parameters), encoding="utf-8")
    size = page.stat().st_size
    print(f"report of 201 jobs: {size} bytes ({201 * len(figure)} bytes of figures linked)")
    assert size < 200_000
    sizes = probe(page, PROBE, tmp_path / "profile")
    assert isinstance(sizes, list) and len(sizes) == 201
    # Lazy images below the fold may not have loaded in the window: those that did decoded.
    loaded = [size for size in sizes if size != [0, 0]]
    assert loaded and all(width > 0 and height > 0 for width, height in loaded)
    shot = tmp_path / "report-201.png"
    done = chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")
