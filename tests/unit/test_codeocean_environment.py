"""One locked package set: uv.lock, the Code Ocean image and the venv agree.

The lock (uv.lock) is read here with tomllib and walked by hand, so these tests check
uv's export and ``scripts/pin_environment.py`` rather than reuse them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import tomllib
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "environment" / "Dockerfile").read_text()
REQUIREMENTS = (REPO_ROOT / "environment" / "requirements.txt").read_text()
ENVIRONMENT = json.loads((REPO_ROOT / ".codeocean" / "environment.json").read_text())
LOCK = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
IMAGE_EXTRAS = ("example", "backends", "codeocean")
"""What the image holds beside the framework's own requirements (Makefile RUN_EXTRAS)."""
SECRETS = ("CODEOCEAN_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "TOKEN")


def image_python() -> str:
    """The image's Python version, from the Dockerfile's ``FROM`` line."""
    found = re.search(r"^FROM \S*python(\d+\.\d+\.\d+)", DOCKERFILE, re.M)
    assert found, "the Dockerfile's FROM names no python<version> base image"
    return found.group(1)


def image_environment() -> dict[str, str]:
    """Marker values of the Code Ocean image: its Python on Linux x86_64."""
    full = image_python()
    return {
        **default_environment(),
        "python_full_version": full,
        "python_version": full.rsplit(".", 1)[0],
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def locked_closure(environment: dict[str, str], extras: tuple[str, ...]) -> dict[str, str]:
    """``name -> version`` of every package uv.lock installs for the project + ``extras``."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in LOCK["package"]:
        by_name.setdefault(package["name"], []).append(package)

    def pick(name: str, pinned: str | None) -> dict[str, Any]:
        candidates = [p for p in by_name[name] if pinned in (None, p.get("version"))]
        if len(candidates) > 1:  # a fork: the one whose resolution markers hold here
            candidates = [
                p
                for p in candidates
                if any(Marker(m).evaluate(environment) for m in p["resolution-markers"])
            ]
        assert len(candidates) == 1, f"{name}: {len(candidates)} locked versions apply"
        return candidates[0]

    root = pick(PROJECT, None)
    pending = [*root.get("dependencies", [])]
    for extra in extras:
        pending += root["optional-dependencies"][extra]
    found: dict[str, str] = {}
    while pending:
        dependency = pending.pop()
        if "marker" in dependency and not Marker(dependency["marker"]).evaluate(environment):
            continue
        package = pick(dependency["name"], dependency.get("version"))
        for extra in dependency.get("extra", []):
            pending += package["optional-dependencies"][extra]
        if package["name"] not in found and package["name"] != PROJECT:
            found[package["name"]] = package["version"]
            pending += package.get("dependencies", [])
    return found


def requirement_pins(environment: dict[str, str]) -> dict[str, str]:
    """``name -> version`` of requirements.txt's lines whose marker holds in ``environment``."""
    pins = {}
    for line in REQUIREMENTS.splitlines():
        if not line or line[0] in " #":
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_the_lock_was_made_from_this_pyproject() -> None:
    """uv.lock records the requirements it resolved: they are pyproject.toml's today.

    ``make run`` syncs with ``--locked`` and would refuse a stale lock; this says so
    first, with the remedy.
    """
    (root,) = [p for p in LOCK["package"] if p["name"] == PROJECT]
    locked = {
        (
            canonicalize_name(r["name"]),
            str(SpecifierSet(r.get("specifier", ""))),
            r.get("marker", ""),
            tuple(sorted(r.get("extras", []))),
        )
        for r in root["metadata"]["requires-dist"]
    }
    declared = set()
    project = PYPROJECT["project"]
    groups = [(None, project["dependencies"]), *project["optional-dependencies"].items()]
    for extra, texts in groups:
        for text in texts:
            requirement = Requirement(text)
            marker = f"extra == '{extra}'" if extra else ""
            name = canonicalize_name(requirement.name)
            extras = tuple(sorted(requirement.extras))
            declared.add((name, str(requirement.specifier), marker, extras))
    assert declared == locked, "uv.lock is stale: run `make lock`"
    assert LOCK["manifest"]["constraints"] == [
        {"name": Requirement(c).name, "specifier": str(Requirement(c).specifier)}
        for c in PYPROJECT["tool"]["uv"]["constraint-dependencies"]
    ]


def test_the_image_installs_exactly_the_lock() -> None:
    """requirements.txt is uv.lock's package set for the image's Python and extras."""
    environment = image_environment()
    assert requirement_pins(environment) == locked_closure(environment, IMAGE_EXTRAS)
    installs = re.findall(r"^RUN pip install .*$", DOCKERFILE, re.M)
    assert installs == ["RUN pip install --no-cache-dir -r /requirements.txt"]
    assert "COPY requirements.txt /" in DOCKERFILE.splitlines()
    assert "==" not in DOCKERFILE.replace("codeocean==0.15.0", "")  # pins live in the lock


def test_environment_json_lists_the_locked_versions() -> None:
    """Code Ocean's editor shows the image's direct packages at the lock's versions."""
    pins = requirement_pins(image_environment())
    listed = {
        canonicalize_name(p["name"]): p["version"]
        for p in ENVIRONMENT["installers"]["pip"]["packages"]
    }
    assert {name: pins.get(name) for name in listed} == listed
    direct = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    for extra in IMAGE_EXTRAS:
        for text in PYPROJECT["project"]["optional-dependencies"][extra]:
            direct.append(Requirement(text))
    wanted = {canonicalize_name(r.name) for r in direct} - {PROJECT}
    wanted |= {
        canonicalize_name(Requirement(text).name)
        for extra in ("s3", "stream", "mongo", "docdb")  # what backends names
        for text in PYPROJECT["project"]["optional-dependencies"][extra]
    }
    assert wanted <= set(listed), f"not in environment.json: {sorted(wanted - set(listed))}"
    assert ENVIRONMENT["base_image"] in DOCKERFILE
    assert image_python() in ENVIRONMENT["base_image"]


def test_pin_script_agrees() -> None:
    """``make lock``'s last step would leave environment.json as it is."""
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "pin_environment.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_this_venv_runs_the_locked_versions() -> None:
    """The venv running the tests was synced from the lock: every pin is what is installed.

    On the image's Python that is the image's package set, version for version.
    """
    environment = {**default_environment(), "extra": ""}
    wrong = {}
    for name, pinned in requirement_pins(environment).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert wrong == {}, "the venv is not the lock's; run `make test` (it syncs .venv)"


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
