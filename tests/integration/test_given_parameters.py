"""Mistakes every job shares are reported once, before any job, with exit 2.

A misspelt fixed parameter, a command-line value out of bounds or of the wrong type,
a misspelt ``results find --param``: one line naming the file or flag, the field and
the remedy (the valid names, the closest one), and no job is planned.
"""

from __future__ import annotations

import json
import subprocess

from conftest import CapsuleCopy

EXIT_USAGE = 2


def errors_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if " ERROR " in line]


def test_a_misspelt_fixed_parameter_is_one_line_and_exit_2(capsule: CapsuleCopy) -> None:
    parameters = capsule.data / "analysis_parameters.json"
    content = json.loads(parameters.read_text())
    content["fixed_parameters"]["isi_violation_cutoff"] = 0.3
    parameters.write_text(json.dumps(content))
    done = capsule.run("--plan", "1")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert errors_of(done) == [errors_of(done)[0]], done.stderr
    line = errors_of(done)[0]
    assert f"{parameters}: fixed_parameters.isi_violation_cutoff is not a parameter" in line
    assert "did you mean 'isi_violations_cutoff'?" in line
    assert "valid: analysis_name, analysis_tag, censored_period_ms" in line
    assert not (capsule.results / "plan.json").exists()


def test_a_fixed_value_out_of_bounds_names_the_file_and_field(capsule: CapsuleCopy) -> None:
    parameters = capsule.data / "analysis_parameters.json"
    content = json.loads(parameters.read_text())
    content["fixed_parameters"]["min_spikes"] = -1
    parameters.write_text(json.dumps(content))
    done = capsule.run("--plan", "1")
    assert done.returncode == EXIT_USAGE
    assert len(errors_of(done)) == 1, done.stderr
    assert (
        "fixed_parameters.min_spikes=-1: Input should be greater than or equal to 0"
        in (errors_of(done)[0])
    )


def test_a_bad_command_line_value_is_one_line_and_exit_2(capsule: CapsuleCopy) -> None:
    for flag, value, says in (
        ("--min_spikes", "-3", "--min_spikes=-3: Input should be greater than or equal to 0"),
        ("--isi_violations_cutoff", "abc", "--isi_violations_cutoff='abc': Input should be a"),
    ):
        done = capsule.run("--plan", "1", flag, value)
        assert done.returncode == EXIT_USAGE, done.stderr
        assert len(errors_of(done)) == 1 and says in errors_of(done)[0], done.stderr


def test_results_find_refuses_a_misspelt_param(capsule: CapsuleCopy) -> None:
    done = capsule.cli("results", "find", "--param", "min_spike=20")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "--param min_spike: not a parameter of UnitFilterParameters; did you mean " in (
        done.stderr
    )
    found = capsule.cli("results", "find", "--param", "min_spikes=20")
    assert found.returncode == 0, found.stderr
