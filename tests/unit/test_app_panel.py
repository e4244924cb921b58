"""The app panel generated from the parameters model and the wrapper's flags."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from analysis_wrapper.config.app_panel import (
    build_app_panel,
    find_parameters_model,
    render_app_panel,
)
from analysis_wrapper.config.command_line import RESERVED_FLAGS, parse_command_line
from analysis_wrapper.config.settings import Capsule
from analysis_wrapper.errors import ConfigError
from analysis_wrapper.job.parameters import AnalysisParameters

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_CAPSULE = REPO_ROOT / "tests" / "capsule"


class PanelParameters(AnalysisParameters):
    """Every kind of field the panel maps."""

    threshold: float = Field(default=0.5, ge=0, le=1, description="A ratio.")
    count: int = Field(default=3, description="How many.")
    flag: bool = Field(default=False, description="On or off.")
    channels: list[int] = Field(default_factory=list, description="Channel numbers.")
    mode: Literal["fast", "slow"] = Field(default="fast", description="Speed.")


@pytest.fixture
def capsule(tmp_path: Path) -> Capsule:
    """An empty capsule folder with code/ and data/."""
    (tmp_path / "code").mkdir()
    (tmp_path / "data" / "job_dict").mkdir(parents=True)
    return Capsule(tmp_path)


def by_name(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel's parameters keyed by param_name."""
    return {p["param_name"]: p for p in panel["parameters"]}


def test_model_fields_default_to_empty_with_types(capsule: Capsule) -> None:
    """Each field is a text parameter with its value type, description and an empty default."""
    params = by_name(build_app_panel(PanelParameters, capsule))
    assert {name: params[name]["value_type"] for name in PanelParameters.model_fields} == {
        "analysis_name": "string",
        "analysis_tag": "string",
        "threshold": "number",
        "count": "integer",
        "flag": "string",
        "channels": "string",
        "mode": "string",
    }
    assert all(params[name]["default_value"] == "" for name in PanelParameters.model_fields)
    assert params["threshold"]["description"] == "A ratio."
    assert (params["threshold"]["minimum"], params["threshold"]["maximum"]) == (0, 1)
    assert "0.5" in params["threshold"]["help_text"]
    assert "JSON" in params["channels"]["help_text"]
    assert "fast, slow" in params["mode"]["help_text"]


def test_wrapper_flags_keep_their_defaults_and_paths_are_left_out(capsule: Capsule) -> None:
    """dry_run defaults to 1, force and plan to 0; the fixed folders are not offered."""
    params = by_name(build_app_panel(PanelParameters, capsule))
    assert params["dry_run"]["default_value"] == "1"
    assert params["force"]["default_value"] == "0"
    assert params["plan"]["default_value"] == "0"
    assert params["dry_run"]["value_type"] == "integer"
    assert "input_directory" not in params
    assert "results_directory" not in params
    wrapper = {p["param_name"] for p in build_app_panel(PanelParameters, capsule)["parameters"]}
    assert wrapper - set(PanelParameters.model_fields) <= RESERVED_FLAGS


def test_param_names_are_the_keys_and_labels_are_only_labels(capsule: Capsule) -> None:
    """param_name is the flag name and the id; the label may differ (D12)."""
    panel = build_app_panel(PanelParameters, capsule)
    names = [p["param_name"] for p in panel["parameters"]]
    assert len(names) == len(set(names))
    assert all(p["id"] == p["param_name"] for p in panel["parameters"])
    assert by_name(panel)["dry_run"]["name"] == "dry run"


def test_panel_defaults_as_code_ocean_passes_them_change_nothing(capsule: Capsule) -> None:
    """`--name default` for every parameter parses, and no model field joins the layer."""
    panel = build_app_panel(PanelParameters, capsule)
    argv = [
        arg for p in panel["parameters"] for arg in (f"--{p['param_name']}", p["default_value"])
    ]
    options, layer = parse_command_line(argv, PanelParameters, capsule)
    assert layer == {}
    assert (options.dry_run, options.force, options.plan) == (True, False, False)


def test_typed_values_arrive_as_strings_and_are_parsed_into_the_model_types(
    capsule: Capsule,
) -> None:
    """Named parameters are strings; lists as JSON, numbers as numbers, keyed by param_name."""
    argv = shlex.split("--threshold 0.25 --count 7 --channels '[1, 2]' --flag true --mode slow")
    _, layer = parse_command_line(argv, PanelParameters, capsule)
    assert layer == {
        "threshold": 0.25,
        "count": 7,
        "channels": [1, 2],
        "flag": True,
        "mode": "slow",
    }


def test_render_is_tab_indented_json_ending_in_a_newline(capsule: Capsule) -> None:
    """The file's form is stable, so --check compares text."""
    text = render_app_panel(build_app_panel(PanelParameters, capsule))
    assert text.endswith("}\n")
    assert '\n\t"version": 1,' in text
    assert json.loads(text)["named_parameters"] is True


def write_run_capsule(capsule: Capsule, body: str) -> None:
    """Put a run_capsule.py and a model module in the capsule's code/."""
    (capsule.code_dir / "panel_model.py").write_text(
        "from pydantic import Field\n"
        "from analysis_wrapper import AnalysisParameters\n\n"
        "class MyParameters(AnalysisParameters):\n"
        "    width: int = Field(default=2, description='Width.')\n\n"
        "class OtherParameters(AnalysisParameters):\n"
        "    height: int = Field(default=2, description='Height.')\n"
    )
    (capsule.code_dir / "run_capsule.py").write_text(body)


def test_model_comes_from_the_run_analysis_jobs_call(capsule: Capsule) -> None:
    """parameters_model= wins over a stale annotation; the __main__ block does not run."""
    write_run_capsule(
        capsule,
        "import panel_model\n"
        "from panel_model import OtherParameters\n"
        "from analysis_wrapper import run_analysis_jobs\n\n"
        "def run_analysis(job, parameters: OtherParameters, results_dir):\n"
        "    return None\n\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('must not run')\n"
        "    run_analysis_jobs(run_analysis, parameters_model=panel_model.MyParameters)\n",
    )
    assert find_parameters_model(capsule).__name__ == "MyParameters"


def test_model_falls_back_to_the_parameters_annotation(capsule: Capsule) -> None:
    """Without a run_analysis_jobs call, run_analysis's annotation names the model."""
    write_run_capsule(
        capsule,
        "from panel_model import OtherParameters\n\n"
        "def run_analysis(job, parameters: OtherParameters, results_dir):\n"
        "    return None\n",
    )
    assert find_parameters_model(capsule).__name__ == "OtherParameters"


def test_no_model_is_a_config_error_naming_the_remedy(capsule: Capsule) -> None:
    """An unannotated run_analysis and no call: say how to name the model."""
    write_run_capsule(capsule, "def run_analysis(job, parameters, results_dir):\n    return None\n")
    with pytest.raises(ConfigError, match="parameters_model=YourParameters"):
        find_parameters_model(capsule)


def test_broken_run_capsule_is_one_line(capsule: Capsule) -> None:
    """An import error in the user's file is reported, naming the file."""
    write_run_capsule(capsule, "import not_a_module_anywhere\n")
    with pytest.raises(ConfigError, match=r"run_capsule\.py failed to import"):
        find_parameters_model(capsule)


def app_panel_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``analysis-wrapper app-panel`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "analysis_wrapper", "app-panel", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("root", [REPO_ROOT, TEST_CAPSULE], ids=["code", "test-capsule"])
def test_committed_app_panel_is_current(root: Path) -> None:
    """`analysis-wrapper app-panel --check` passes on this repository and the test capsule."""
    done = app_panel_cli("--check", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_check_fails_on_a_stale_panel_and_regenerating_fixes_it(tmp_path: Path) -> None:
    """A panel that lags the model fails --check (exit 1); app-panel rewrites it."""
    root = tmp_path / "capsule"
    (root / ".codeocean").mkdir(parents=True)
    (root / "data").mkdir()
    for name in ("run_capsule.py", "example_analysis_model.py", "example_isi_violations.py"):
        (root / "code").mkdir(exist_ok=True)
        (root / "code" / name).write_text((TEST_CAPSULE / "code" / name).read_text())
    panel = root / ".codeocean" / "app-panel.json"
    panel.write_text((TEST_CAPSULE / ".codeocean" / "app-panel.json").read_text())
    model = root / "code" / "example_analysis_model.py"
    model.write_text(
        model.read_text().replace(
            "    min_spikes: int",
            "    max_units: int = Field(default=100, description='At most.')\n    min_spikes: int",
        )
    )
    stale = app_panel_cli("--check", cwd=root / "code")
    assert stale.returncode == 1
    assert "is stale" in stale.stderr and "analysis-wrapper app-panel" in stale.stderr
    written = app_panel_cli("--capsule", str(root), cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "max_units" in by_name(json.loads(panel.read_text()))
    assert app_panel_cli("--check", cwd=root).returncode == 0
