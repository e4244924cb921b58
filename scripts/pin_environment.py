"""Write the lock's versions into .codeocean/environment.json (``make lock`` runs it).

Code Ocean's environment editor shows the pip packages of ``environment.json``; the
image itself installs ``environment/requirements.txt`` (the lock, exported). This sets
each listed package's version to the one the lock gives the image's Python, so the two
never disagree. ``--check`` writes nothing and exits 1 when the file is out of date.

    python scripts/pin_environment.py [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "environment" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "environment" / "requirements.txt"
ENVIRONMENT_JSON = REPO_ROOT / ".codeocean" / "environment.json"


def image_environment(dockerfile: str) -> dict[str, str]:
    """The marker environment of the image: its Python (from ``FROM``), Linux x86_64."""
    found = re.search(r"^FROM \S*python(\d+\.\d+\.\d+)", dockerfile, re.M)
    if found is None:
        raise SystemExit(f"{DOCKERFILE}: no python<version> in its FROM line")
    version = found.group(1)
    return {
        "python_full_version": version,
        "python_version": version.rsplit(".", 1)[0],
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def requirement_pins(text: str, environment: dict[str, str]) -> dict[str, str]:
    """``name -> version`` of each ``name==version [; marker]`` line true in ``environment``."""
    pins = {}
    for line in text.splitlines():
        found = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.+))?$", line.strip())
        if found is None:
            continue
        name, version, marker = found.groups()
        if marker is None or Marker(marker).evaluate(environment):
            pins[canonicalize_name(name)] = version
    return pins


def pinned_environment(text: str, pins: dict[str, str]) -> str:
    """``environment.json``'s text with each pip package's version set to its pin.

    The text is edited in place (one ``"version"`` value per package), so the file keeps
    the layout Code Ocean's editor writes.
    """
    packages = json.loads(text)["installers"]["pip"]["packages"]
    missing = [p["name"] for p in packages if canonicalize_name(p["name"]) not in pins]
    if missing:
        raise SystemExit(f"{ENVIRONMENT_JSON}: not in {REQUIREMENTS}: {', '.join(missing)}")
    for package in packages:
        name, version = package["name"], pins[canonicalize_name(package["name"])]
        entry = re.compile(r'(\{\s*"name":\s*"' + re.escape(name) + r'",\s*"version":\s*")[^"]*"')
        text, count = entry.subn(lambda m, v=version: f'{m.group(1)}{v}"', text)
        if count != 1:
            raise SystemExit(f"{ENVIRONMENT_JSON}: cannot find {name}'s version")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    pins = requirement_pins(REQUIREMENTS.read_text(), image_environment(DOCKERFILE.read_text()))
    current = ENVIRONMENT_JSON.read_text()
    wanted = pinned_environment(current, pins)
    if args.check:
        if wanted != current:
            print(f"{ENVIRONMENT_JSON} is stale: run `make lock`", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        ENVIRONMENT_JSON.write_text(wanted)
        print(f"wrote {ENVIRONMENT_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
