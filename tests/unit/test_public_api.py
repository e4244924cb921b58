"""The package's public surface: what a capsule may import from analysis_wrapper."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import types

import pytest

import analysis_wrapper

INCLUDED_PRIVATE_MEMBERS = {"__version__"}
LAZY_NAMES = {"find_records"}  # provided by the module's __getattr__ on first use


def _exported_names() -> list[str]:
    defined = {
        name
        for name, value in vars(analysis_wrapper).items()
        if (not name.startswith("_") or name in INCLUDED_PRIVATE_MEMBERS)
        and not isinstance(value, types.ModuleType)
    }
    return sorted(defined | LAZY_NAMES)


def test_all_is_the_sorted_set_of_public_names() -> None:
    """__all__ lists every public name the package defines, sorted, with no extras."""
    assert analysis_wrapper.__all__ == _exported_names()


def test_all_has_no_duplicates() -> None:
    """Each name is exported once."""
    assert len(set(analysis_wrapper.__all__)) == len(analysis_wrapper.__all__)


def test_documented_user_imports_are_exported() -> None:
    """The names the package docstring tells a capsule to import are in __all__."""
    for name in ("AnalysisOutputs", "AnalysisParameters", "Job", "run_analysis_jobs"):
        assert name in analysis_wrapper.__all__


@pytest.mark.parametrize("name", analysis_wrapper.__all__)
def test_each_exported_name_is_importable(name: str) -> None:
    """`from analysis_wrapper import <name>` works for every exported name."""
    namespace: dict[str, object] = {}
    exec(f"from analysis_wrapper import {name}", namespace)
    assert namespace[name] is getattr(analysis_wrapper, name)


def test_version_matches_distribution_metadata() -> None:
    """__version__ is the version the installed distribution reports."""
    assert analysis_wrapper.__version__ == importlib.metadata.version("aind-analysis-wrapper")


def test_errors_share_one_base_class() -> None:
    """Every exported error derives from WrapperError."""
    for name in ("ConfigError", "JobInputError", "ProvenanceError", "StoreError", "UsageError"):
        assert issubclass(getattr(analysis_wrapper, name), analysis_wrapper.WrapperError)


def test_star_import_gives_exactly_all() -> None:
    """`from analysis_wrapper import *` binds exactly the names in __all__."""
    namespace: dict[str, object] = {}
    exec("from analysis_wrapper import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(analysis_wrapper.__all__)


# What a capsule does not need before its first job: the record schema (about 1 s),
# the clients of backends it may not use, executors it may not use, and the parts
# of the framework for other moments (Code Ocean's API, queries, the run report).
NOT_ON_THE_START_UP_PATH = (
    "aind_data_schema",
    "boto3",
    "pymongo",
    "s3fs",
    "codeocean",
    "aind_data_access_api",
    "dask",
    "tqdm",
    "multiprocessing",
    "analysis_wrapper.identity.codeocean",
    "analysis_wrapper.identity.codeocean_api",
    "analysis_wrapper.record.query",
    "analysis_wrapper.report.html",
)


def test_import_does_not_load_what_a_run_needs_later() -> None:
    """Importing the package stays cheap: heavy or optional modules load on first use."""
    code = (
        "import sys, json, analysis_wrapper\n"
        f"print(json.dumps([m for m in {list(NOT_ON_THE_START_UP_PATH)!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


def test_find_records_is_importable_from_the_package() -> None:
    """The lazily imported name is the real function, by both import forms."""
    from analysis_wrapper import find_records
    from analysis_wrapper.record.query import find_records as from_module

    assert find_records is from_module
    assert analysis_wrapper.find_records is from_module
    with pytest.raises(AttributeError, match="no_such_name"):
        analysis_wrapper.no_such_name  # noqa: B018
