"""The package's layout: no import cycles, seams kept, pure modules pure, README true.

The import graph is read from the source (every ``import``, at the top, inside a
function or under ``TYPE_CHECKING``), so a cycle hidden in a lazy import counts too.
Importing ``a.b.c`` first imports the package ``a.b``: that edge counts as well.
"""

from __future__ import annotations

import ast
import builtins
import graphlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import analysis_wrapper
from analysis_wrapper import CodeIdentity, compute_key, key_preimage
from analysis_wrapper.run.decision import Action, decide
from analysis_wrapper.stores.claims import Claim, Failure, Owner, _process_space

PACKAGE = Path(analysis_wrapper.__file__).parent
ROOT = "analysis_wrapper"


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = (ROOT, *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, in any form and anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # ``from x import y``: y is a module of x, or a name defined in x.
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` imports a.b first: keep every known prefix.
            parts = target.split(".")
            for end in range(2, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if prefix in known and prefix != name:
                    found.add(prefix)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module and the modules it needs loaded first (its parent packages too).

    The top package is left out as a target: it is the public face, which imports the
    rest, and Python loads it before any of its modules anyway.
    """
    known = module_names()
    graph = {}
    for name, path in known.items():
        needed = imported_modules(name, path, known)
        parts = name.split(".")
        needed |= {".".join(parts[:end]) for end in range(2, len(parts))}  # parent packages
        graph[name] = needed - {ROOT}
    return graph


def test_the_graph_sees_every_module_and_their_imports() -> None:
    """The reader is not vacuous: it finds the package's known edges."""
    graph = import_graph()
    assert len(graph) > 40
    assert "analysis_wrapper.errors" in graph["analysis_wrapper.capsule"]
    assert all(target in graph for targets in graph.values() for target in targets)


def test_there_is_no_import_cycle() -> None:
    """The modules form a hierarchy: none needs, through others, itself."""
    try:
        order = list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(name.removeprefix(ROOT + ".") for name in exc.args[1])
        pytest.fail(f"import cycle: {cycle}")
    assert len(order) == len(module_names())


def test_a_cycle_is_reported(tmp_path: Path) -> None:
    """The check fails on a cycle, even one through a lazy import."""
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import y\n")
    known = {"p.a": tmp_path / "a.py", "p.b": tmp_path / "b.py"}
    graph = {name: imported_modules(name, path, known) for name, path in known.items()}
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.a"}}
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


# --- the seams ---------------------------------------------------------------------

# What a store may import of the framework: the other stores, the errors, the shared
# helpers and the settings (the factory reads them). Progress reaches it as a callback.
STORE_MAY_IMPORT = ("stores", "errors", "common", "config")

# The client libraries of the backends and of Code Ocean: only stores/ and the input and
# identity modules that wrap them import these; the runner sees the store interfaces.
CLIENT_LIBRARIES = (
    "boto3",
    "botocore",
    "s3transfer",
    "s3fs",
    "pymongo",
    "bson",
    "requests",
    "codeocean",
    "aind_data_access_api",
)


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports without a leading dot."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_a_store_imports_nothing_of_the_run() -> None:
    """Backends sit below everything else: no run, report, record, job or input module."""
    allowed = tuple(f"{ROOT}.{name}" for name in STORE_MAY_IMPORT)
    for name, needed in import_graph().items():
        if name.startswith(f"{ROOT}.stores"):
            outside = sorted(m for m in needed if not m.startswith(allowed))
            assert outside == [], f"{name} imports {outside}"


def test_the_run_imports_no_client_library() -> None:
    """No module of run/ imports boto3, pymongo, requests or an SDK itself."""
    run_modules = [path for name, path in module_names().items() if name.startswith(f"{ROOT}.run")]
    assert len(run_modules) > 5
    for path in run_modules:
        clients = third_party_imports(path) & set(CLIENT_LIBRARIES)
        assert clients == set(), f"{path.relative_to(PACKAGE)} imports {sorted(clients)}"


def test_every_folder_says_what_it_holds_and_runs_nothing() -> None:
    """Each subpackage's ``__init__.py`` is its docstring alone: importing it costs nothing."""
    inits = [path for path in PACKAGE.rglob("__init__.py") if path.parent != PACKAGE]
    assert len(inits) >= 10
    for init in inits:
        tree = ast.parse(init.read_text(encoding="utf-8"))
        docstring = ast.get_docstring(tree)
        assert docstring and docstring.endswith((".", ".\n")), f"{init}: no docstring"
        assert len(tree.body) == 1, f"{init}: holds code; put it in a module of its own"


# --- the README's map of the code --------------------------------------------------

README = Path(__file__).parents[2] / "README.md"


def readme_layout() -> dict[str, set[str]]:
    """The modules the README's "How the code is laid out" lists, by folder.

    A line ``  name.py  ...`` is a module of the package itself; ``  folder/  a.py, b.py``
    a folder and its modules, which may go on over more deeply indented lines; a folder
    indented two more spaces is inside the one above.
    """
    text = README.read_text(encoding="utf-8")
    section = text.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    block = next(b for b in section.split("```")[1::2] if b.startswith("\nanalysis_wrapper/"))
    listed: dict[str, set[str]] = {}
    folders = [""]  # the folder of each indentation level in turn
    current = None
    for line in block.splitlines()[2:]:
        match = re.match(r"^( +)(\S+)", line)
        if not match:
            continue
        depth, entry = len(match.group(1)) // 2, match.group(2)
        rest = line[match.end() :]
        if entry.endswith("/") and depth <= len(folders):
            del folders[depth:]
            current = folders[-1] + entry
            folders.append(current)
            listed.setdefault(current, set()).update(re.findall(r"\b[a-z0-9_]+\.py\b", rest))
        elif entry.endswith(".py") and depth == 1:
            del folders[1:]
            current = None
            listed.setdefault("", set()).add(entry)
        elif current is not None:  # a folder's list, going on
            listed[current].update(re.findall(r"\b[a-z0-9_]+\.py\b", line))
    return listed


def actual_layout() -> dict[str, set[str]]:
    tree: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent != PACKAGE:
            continue
        folder = path.parent.relative_to(PACKAGE).as_posix()
        tree.setdefault("" if folder == "." else folder + "/", set()).add(path.name)
    return tree


def test_the_readme_maps_every_module() -> None:
    """The README's map of the code names every folder and module there is, and no other."""
    assert readme_layout() == actual_layout()


# --- the pure modules: the key and the run-or-skip decision do no I/O ------------------


class IOAttempted(AssertionError):
    pass


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every way to the file system, processes and the network raises."""
    _process_space()  # cached: the real call is made here, before I/O is forbidden

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise IOAttempted(f"I/O attempted with {args!r}")

    for owner, name in (
        (builtins, "open"),
        (os, "open"),
        (os, "stat"),
        (os, "kill"),
        (os, "listdir"),
        (os, "scandir"),
        (socket, "socket"),
        (socket, "gethostname"),
        (socket, "getaddrinfo"),
        (Path, "open"),
        (Path, "stat"),
        (Path, "read_text"),
        (Path, "read_bytes"),
    ):
        monkeypatch.setattr(owner, name, refuse)
    yield


def test_the_key_does_no_io(no_io: None) -> None:
    """A key from code, inputs and parameters touches nothing outside the process."""
    code = CodeIdentity(url="https://github.com/example-lab/example-capsule.git", version="1")
    preimage = key_preimage(code, ["s3://bucket/asset"], ["s3://bucket/asset/a.nwb"], {"x": 1})
    assert len(compute_key(preimage)) == 64


def test_the_decision_does_no_io(no_io: None) -> None:
    """Every branch of the decision, a claim whose process is on this machine included."""
    now = 1_800_000_000.0
    here = Owner("this-host", 2**22 + 12345, "feedbeef" * 4, _process_space())
    record = {"_id": "a" * 64, "location": "s3://b/p/" + "a" * 64, "processing": {}}
    seen = set()
    for state in ("running", "failed", "done", "released"):
        for lease_left in (-5.0, 60.0):
            for gone in (False, True):
                claim = Claim(
                    "a" * 64,
                    here,
                    2,
                    state,  # type: ignore[arg-type]
                    now - 300,
                    now - 10,
                    now + lease_left,
                    2,
                    Failure("ValueError", "bad") if state == "failed" else None,
                )
                for existing in (None, record):
                    decision = decide(
                        existing, force=False, claim=claim, now=now, claim_owner_gone=gone
                    )
                    seen.add(decision.action)
    assert {Action.RUN, Action.SKIP, Action.IN_PROGRESS, Action.FAILED} <= seen


def test_a_gone_owner_is_the_callers_to_see() -> None:
    """The decision takes a live claim over only when told its owner is gone."""
    now = 1_800_000_000.0
    owner = Owner("this-host", 1, "feedbeef" * 4, _process_space())
    claim = Claim("a" * 64, owner, 1, "running", now - 30, now - 5, now + 60, 1, None)
    assert decide(None, force=False, claim=claim, now=now).action is Action.IN_PROGRESS
    taken = decide(None, force=False, claim=claim, now=now, claim_owner_gone=True)
    assert taken.action is Action.RUN
    assert "that process no longer exists" in taken.reason
