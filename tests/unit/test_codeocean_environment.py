"""environment/ and .codeocean/environment.json: one pinned package set, inside pyproject."""

from __future__ import annotations

import json
import re
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "environment" / "Dockerfile").read_text()
ENVIRONMENT = json.loads((REPO_ROOT / ".codeocean" / "environment.json").read_text())
SECRETS = ("CODEOCEAN_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "TOKEN")


def dockerfile_pins() -> dict[str, str]:
    """Map name to version for every ``name==version`` the Dockerfile installs."""
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^\s+([A-Za-z0-9_.\-]+)==([^\s\\]+)", DOCKERFILE, re.M)
    }


def pyproject_requirements() -> dict[str, list[Requirement]]:
    """Every requirement of the package and its extras (installed metadata), by name."""
    found: dict[str, list[Requirement]] = {}
    for text in requires("aind-analysis-wrapper") or []:
        requirement = Requirement(text)
        found.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return found


def test_dockerfile_and_environment_json_pin_the_same_packages() -> None:
    """Code Ocean's editor and the Dockerfile agree, exact version for exact version."""
    listed = {
        canonicalize_name(p["name"]): p["version"]
        for p in ENVIRONMENT["installers"]["pip"]["packages"]
    }
    assert listed == dockerfile_pins()
    assert "codeocean" in listed and "aind-data-schema" in listed


def test_every_pin_is_inside_the_pyproject_ranges() -> None:
    """The image runs the versions the tests allow; a pin outside a range fails here."""
    requirements = pyproject_requirements()
    for name, version in dockerfile_pins().items():
        for requirement in requirements.get(name, []):
            assert requirement.specifier.contains(version), f"{name}=={version} vs {requirement}"
    assert {"pydantic", "aind-data-schema", "codeocean"} <= set(requirements)


def test_environment_variables_agree_and_no_secret_is_baked_in() -> None:
    """ENV lines match env_variables; no secret is a build argument or an ENV value."""
    env_lines = dict(re.findall(r"^ENV (\w+)=(\S+)$", DOCKERFILE, re.M))
    listed = {v["name"]: v["value"] for v in ENVIRONMENT.get("env_variables", [])}
    assert env_lines == listed
    assert listed.get("CODE_VERSION_POLICY") in ("commit", "release")
    build_args = re.findall(r"^ARG (\w+)", DOCKERFILE, re.M)
    for secret in SECRETS:
        assert all(secret not in name for name in [*build_args, *listed])
    assert "args" not in ENVIRONMENT
