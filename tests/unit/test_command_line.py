"""The capsule's command line: wrapper flags, one flag per parameter, and nothing from the env."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from analysis_wrapper.config.command_line import (
    RESERVED_FLAGS,
    check_parameter_names,
    parse_command_line,
)
from analysis_wrapper.config.settings import Capsule
from analysis_wrapper.errors import ConfigError, UsageError
from analysis_wrapper.job.parameters import AnalysisParameters


class Params(AnalysisParameters):
    analysis_name: str = "Unit Filtering"
    isi_violations_cutoff: float = Field(default=0.5, description="cutoff")
    unit_ids: list[int] = Field(default_factory=list)


@pytest.fixture
def capsule(tmp_path: Path) -> Capsule:
    """A capsule folder whose default input directory exists."""
    (tmp_path / "data").mkdir()
    return Capsule(tmp_path)


# --- defaults -------------------------------------------------------------------------


def test_defaults(capsule: Capsule) -> None:
    """No flags: dry run on, force/plan/allow_dirty off, folders from the capsule."""
    options, parameters = parse_command_line([], Params, capsule)
    assert options.dry_run is True
    assert options.force is False
    assert options.plan is False
    assert options.allow_dirty is False
    assert options.input_directory == (capsule.root / "data").resolve()
    assert options.results_directory == (capsule.root / "results").resolve()
    assert parameters == {}
    assert options.posting is False


def test_defaults_without_a_model(capsule: Capsule) -> None:
    """Without a parameters model, only the wrapper's flags exist."""
    options, parameters = parse_command_line(["--force", "1"], None, capsule)
    assert options.force is True
    assert parameters == {}


def test_directories_are_absolute(
    capsule: Capsule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative --input_directory and --results_directory are resolved to absolute paths."""
    monkeypatch.chdir(tmp_path)
    options, _ = parse_command_line(
        ["--input_directory", "data", "--results_directory", "out"], None, capsule
    )
    assert options.input_directory == (tmp_path / "data").resolve()
    assert options.results_directory == (tmp_path / "out").resolve()
    assert options.input_directory.is_absolute()


# --- flag values ----------------------------------------------------------------------


def test_dry_run_zero_posts(capsule: Capsule) -> None:
    """--dry_run 0 turns the dry run off, so the run posts."""
    options, _ = parse_command_line(["--dry_run", "0"], None, capsule)
    assert options.dry_run is False
    assert options.posting is True


def test_dry_run_equals_form(capsule: Capsule) -> None:
    """--dry_run=1 and --dry_run=0 work as well as the spaced form."""
    assert parse_command_line(["--dry_run=1"], None, capsule)[0].dry_run is True
    assert parse_command_line(["--dry_run=0"], None, capsule)[0].dry_run is False


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        ("off", False),
        (" 1 ", True),
    ],
)
def test_flag_words(capsule: Capsule, word: str, expected: bool) -> None:
    """0/1, true/false, yes/no and on/off are read in any case, for every wrapper flag."""
    for flag in ("--dry_run", "--force", "--plan", "--allow_dirty"):
        options, _ = parse_command_line([flag, word], None, capsule)
        assert getattr(options, flag.removeprefix("--")) is expected, flag


def test_plan_and_posting(capsule: Capsule) -> None:
    """--plan 1 never posts, even with --dry_run 0."""
    options, _ = parse_command_line(["--dry_run", "0", "--plan", "1"], None, capsule)
    assert options.plan is True
    assert options.posting is False


def test_empty_dry_run_keeps_the_safe_default(capsule: Capsule) -> None:
    """An empty --dry_run (a blank app-panel field) means 'not given': still a dry run."""
    options, _ = parse_command_line(["--dry_run", ""], None, capsule)
    assert options.dry_run is True


@pytest.mark.parametrize("value", ["2", "maybe", "-1", "1.0"])
def test_bad_flag_value_is_a_usage_error(capsule: Capsule, value: str) -> None:
    """A flag value that is not 0/1 (or a word for them) is a UsageError naming it."""
    with pytest.raises(UsageError) as info:
        parse_command_line(["--dry_run", value], None, capsule)
    assert "dry_run" in str(info.value)
    assert "\n" not in str(info.value)


def test_flag_without_value_is_a_usage_error(capsule: Capsule) -> None:
    """--force with no value is a UsageError, not an exit."""
    with pytest.raises(UsageError):
        parse_command_line(["--force"], None, capsule)


def test_unknown_flag_is_a_usage_error(capsule: Capsule) -> None:
    """An unknown flag is a UsageError naming it (exit code 2), not SystemExit."""
    with pytest.raises(UsageError, match="--bogus"):
        parse_command_line(["--bogus", "1"], Params, capsule)


def test_unknown_flag_is_not_a_config_error(capsule: Capsule) -> None:
    """An unknown flag is a usage error of its own kind, not a configuration error."""
    with pytest.raises(UsageError) as info:
        parse_command_line(["--bogus", "1"], Params, capsule)
    assert not isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "argv", [["--dry", "0"], ["--dry_ru", "0"], ["--isi", "0.9"], ["--input", "."]]
)
def test_abbreviations_are_refused(capsule: Capsule, argv: list[str]) -> None:
    """A prefix of a flag is not accepted for it (a typo must not pick a flag)."""
    with pytest.raises(UsageError):
        parse_command_line(argv, Params, capsule)


def test_positional_argument_is_refused(capsule: Capsule) -> None:
    """A stray positional argument is a UsageError."""
    with pytest.raises(UsageError):
        parse_command_line(["stray"], Params, capsule)


# --- parameter flags ------------------------------------------------------------------


def test_parameter_flag_collected_when_given(capsule: Capsule) -> None:
    """--isi_violations_cutoff 0.9 joins the command-line layer as the number 0.9."""
    _, parameters = parse_command_line(["--isi_violations_cutoff", "0.9"], Params, capsule)
    assert parameters == {"isi_violations_cutoff": 0.9}


def test_parameter_flag_equals_form(capsule: Capsule) -> None:
    """--name=value works for parameter flags."""
    _, parameters = parse_command_line(["--isi_violations_cutoff=0.9"], Params, capsule)
    assert parameters == {"isi_violations_cutoff": 0.9}


def test_parameter_flags_absent_when_not_given(capsule: Capsule) -> None:
    """Parameters not on the command line are not in the layer (defaults come from the model)."""
    _, parameters = parse_command_line(["--analysis_name", "x"], Params, capsule)
    assert parameters == {"analysis_name": "x"}
    assert "isi_violations_cutoff" not in parameters


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_parameter_value_means_not_given(capsule: Capsule, empty: str) -> None:
    """An empty (or blank) value, as Code Ocean sends for a blank field, is not a value."""
    _, parameters = parse_command_line(
        ["--isi_violations_cutoff", empty, "--analysis_name", empty], Params, capsule
    )
    assert parameters == {}


def test_text_parameter_kept_raw(capsule: Capsule) -> None:
    """A str field takes the text as given, even if it looks like a number."""
    _, parameters = parse_command_line(["--analysis_name", "0.5"], Params, capsule)
    assert parameters == {"analysis_name": "0.5"}


def test_list_parameter_as_json(capsule: Capsule) -> None:
    """A list parameter is given as JSON."""
    _, parameters = parse_command_line(["--unit_ids", "[1, 2]"], Params, capsule)
    assert parameters == {"unit_ids": [1, 2]}


def test_parameter_flags_mixed_with_wrapper_flags(capsule: Capsule) -> None:
    """Wrapper flags and parameter flags go to their own places."""
    options, parameters = parse_command_line(
        ["--dry_run", "0", "--isi_violations_cutoff", "0.1", "--force", "1"], Params, capsule
    )
    assert (options.dry_run, options.force) == (False, True)
    assert parameters == {"isi_violations_cutoff": 0.1}


# --- name clashes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["force", "workers", "dry_run", "input_directory"])
def test_field_named_like_a_wrapper_flag_is_a_config_error(capsule: Capsule, name: str) -> None:
    """A parameters model field named like a wrapper flag is refused, naming the field."""
    model = type(
        "Clashing",
        (AnalysisParameters,),
        {"__annotations__": {name: int}, name: 0},
    )
    with pytest.raises(ConfigError) as info:
        parse_command_line([], model, capsule)
    assert name in str(info.value)
    assert "Clashing" in str(info.value)


def test_a_field_named_file_location_is_a_config_error() -> None:
    """Records keep the job's file_location among the parameters: no field may take it."""

    class Shadowing(AnalysisParameters):
        file_location: list[str] = Field(default_factory=list)

    with pytest.raises(ConfigError) as info:
        check_parameter_names(Shadowing)
    assert "file_location" in str(info.value)
    assert "rename" in str(info.value)


def test_clash_names_every_clashing_field(capsule: Capsule) -> None:
    """Several clashes are all named in one message."""

    class Two(AnalysisParameters):
        force: int = 0
        plan: int = 0

    with pytest.raises(ConfigError) as info:
        check_parameter_names(Two)
    assert "force" in str(info.value)
    assert "plan" in str(info.value)


def test_reserved_flags_cover_the_wrapper_flags() -> None:
    """Every flag the wrapper has today is reserved."""
    assert {"dry_run", "input_directory", "results_directory", "force", "plan"} <= RESERVED_FLAGS
    assert "allow_dirty" in RESERVED_FLAGS


def test_a_normal_model_passes_the_name_check() -> None:
    """A model without clashing names is accepted."""
    check_parameter_names(Params)


# --- input directory ------------------------------------------------------------------


def test_missing_input_directory_is_a_config_error(capsule: Capsule, tmp_path: Path) -> None:
    """A missing --input_directory is a ConfigError naming it."""
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as info:
        parse_command_line(["--input_directory", str(missing)], None, capsule)
    assert str(missing) in str(info.value)


def test_missing_default_input_directory_is_a_config_error(tmp_path: Path) -> None:
    """Without --input_directory, a capsule with no data/ folder is a ConfigError."""
    with pytest.raises(ConfigError, match="input directory"):
        parse_command_line([], None, Capsule(tmp_path))


def test_input_directory_that_is_a_file_is_a_config_error(capsule: Capsule, tmp_path: Path) -> None:
    """An input directory that is a file is refused."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError):
        parse_command_line(["--input_directory", str(tmp_path / "file")], None, capsule)


# --- the environment (defect D20) -----------------------------------------------------


def test_environment_does_not_set_dry_run(
    capsule: Capsule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DRY_RUN=0 in the environment does not turn the dry run off (D20)."""
    monkeypatch.setenv("DRY_RUN", "0")
    monkeypatch.setenv("dry_run", "0")
    options, _ = parse_command_line([], Params, capsule)
    assert options.dry_run is True
    assert options.posting is False


def test_environment_does_not_set_parameters(
    capsule: Capsule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ISI_VIOLATIONS_CUTOFF=0.9 in the environment is not a parameter (D20)."""
    monkeypatch.setenv("ISI_VIOLATIONS_CUTOFF", "0.9")
    monkeypatch.setenv("isi_violations_cutoff", "0.9")
    monkeypatch.setenv("ANALYSIS_NAME", "from env")
    _, parameters = parse_command_line([], Params, capsule)
    assert parameters == {}


def test_environment_does_not_override_the_command_line(
    capsule: Capsule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both set, the command line's value is the one used, and the env is ignored."""
    monkeypatch.setenv("ISI_VIOLATIONS_CUTOFF", "0.9")
    monkeypatch.setenv("DRY_RUN", "1")
    options, parameters = parse_command_line(
        ["--isi_violations_cutoff", "0.2", "--dry_run", "0"], Params, capsule
    )
    assert parameters == {"isi_violations_cutoff": 0.2}
    assert options.dry_run is False


def test_environment_does_not_set_other_flags(
    capsule: Capsule, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORCE, PLAN and ALLOW_DIRTY in the environment change nothing."""
    for name in ("FORCE", "PLAN", "ALLOW_DIRTY"):
        monkeypatch.setenv(name, "1")
    options, _ = parse_command_line([], Params, capsule)
    assert (options.force, options.plan, options.allow_dirty) == (False, False, False)


# --- --help -----------------------------------------------------------------------------


class HelpParams(AnalysisParameters):
    cutoff: float = Field(default=0.5, ge=0, lt=1, description="The cutoff.")
    label: str | None = Field(default=None, description="A label.")
    unit_ids: list[int] = Field(default_factory=lambda: [1, 2], description="Units.")
    weights: dict[str, float] | None = Field(default=None, description="Weights.")
    count: int = Field(gt=0, description="How many.")


def test_help_shows_defaults_bounds_and_json_only_for_lists_and_dicts(
    capsule: Capsule, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help: each parameter's default and bounds; "(JSON)" for list and dict fields alone."""
    with pytest.raises(SystemExit):
        parse_command_line(["--help"], HelpParams, capsule)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--cutoff VALUE The cutoff. (default 0.5, >= 0, < 1) --label" in text
    assert "--label VALUE A label. (default null) --unit_ids" in text
    assert "--unit_ids VALUE Units. (default [1, 2]) (JSON) --weights" in text
    assert "--weights VALUE Weights. (default null) (JSON) --count" in text
    assert text.endswith("--count VALUE How many. (required, > 0)")
    assert text.count("(JSON)") == 2


def test_verbose_flag(capsule: Capsule) -> None:
    """-v (or --verbose) asks for a line per job on a terminal; off by default."""
    assert parse_command_line([], Params, capsule)[0].verbose is False
    assert parse_command_line(["-v"], Params, capsule)[0].verbose is True
    assert parse_command_line(["--verbose"], Params, capsule)[0].verbose is True
