"""The Code Ocean app panel (``.codeocean/app-panel.json``), generated, never hand-edited.

It lists the wrapper's own flags (``dry_run``, ``force``, ``plan``, ...; the input and
results folders are fixed in Code Ocean, so they are left out) and one parameter per
field of the user's parameters model, each with its description and value type.

Code Ocean passes named parameters as ``--<param_name> <value>`` strings, the same
command line a clone uses; they are parsed into the model's types (lists and dicts as
JSON) and keyed by ``param_name``, never by the display label (upstream defect D12).
A model field's panel default is empty, which means "not given": only values a user
types join the command-line layer, so ``fixed_parameters`` and each job's own
parameters keep their place in the precedence.

The model is the one ``code/run_capsule.py`` hands to ``run_analysis_jobs`` as
``parameters_model``, found by reading that call and importing the file (its
``if __name__ == "__main__"`` block does not run); failing that, the annotation of
``run_analysis``'s ``parameters`` argument.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..errors import ConfigError
from .command_line import build_parser
from .settings import Capsule

APP_PANEL_PATH = Path(".codeocean") / "app-panel.json"
RUN_SCRIPT_NAME = "run_capsule.py"
# Fixed by Code Ocean (/data, /results): offering them in the panel only invites mistakes.
# A Code Ocean run has no terminal, so --verbose (lines a bar would hide) changes nothing;
# --explain is a question asked at a terminal, of one key a plan printed there.
NOT_IN_PANEL = frozenset({"input_directory", "results_directory", "verbose", "explain"})
WRAPPER_CATEGORY = {
    "id": "wrapper",
    "name": "Run",
    "description": "How the capsule runs: dry run, re-runs, planning.",
}
PARAMETERS_CATEGORY = {
    "id": "parameters",
    "name": "Analysis parameters",
    "description": "Empty means not given: analysis_parameters.json and each job decide.",
}
INSTRUCTIONS = (
    "Runs the analysis once per job file in /data/job_dict. Leave dry run at 1 to post "
    "nothing; set it to 0 to post results and records. An empty analysis parameter is not "
    "given: the value comes from analysis_parameters.json, the job, or the model's default."
)


def build_app_panel(model: type[BaseModel], capsule: Capsule) -> dict[str, Any]:
    """The app panel for ``model`` plus the wrapper's flags, as a JSON-ready dict."""
    parameters = [*_wrapper_parameters(capsule), *_model_parameters(model)]
    return {
        "version": 1,
        "named_parameters": True,
        "general": {"title": model.__name__, "instructions": INSTRUCTIONS},
        "categories": [WRAPPER_CATEGORY, PARAMETERS_CATEGORY],
        "parameters": parameters,
    }


def render_app_panel(panel: dict[str, Any]) -> str:
    """The file's text: tab-indented like the files Code Ocean writes, newline at the end."""
    return json.dumps(panel, indent="\t", ensure_ascii=False) + "\n"


def app_panel_text(capsule: Capsule) -> str:
    """The app panel the capsule's current parameters model calls for.

    Raises
    ------
    ConfigError
        If the parameters model cannot be found (the message says how to fix it).
    """
    return render_app_panel(build_app_panel(find_parameters_model(capsule), capsule))


def _parameter(name: str, label: str, category: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": name,
        "category": category,
        "name": label,
        "param_name": name,
        "type": "text",
        **{key: value for key, value in fields.items() if value is not None},
    }


def _wrapper_parameters(capsule: Capsule) -> list[dict[str, Any]]:
    parser = build_parser(None, capsule)
    group = next(g for g in parser._action_groups if g.title == "wrapper flags")
    panel = []
    for action in group._group_actions:
        name = action.dest
        if name in NOT_IN_PANEL:
            continue
        panel.append(
            _parameter(
                name,
                name.replace("_", " "),
                WRAPPER_CATEGORY["id"],
                description=_flag_description(action),
                **_flag_value(action),
            )
        )
    return panel


def _flag_description(action: argparse.Action) -> str:
    text = (action.help or "").strip()
    if action.choices:
        text += " (one of: " + ", ".join(str(choice) for choice in action.choices) + ")"
    return text[:1].upper() + text[1:]


def _flag_value(action: argparse.Action) -> dict[str, Any]:
    type_name = getattr(action.type, "__name__", "")
    if action.metavar == "0|1":
        return {
            "value_type": "integer",
            "default_value": "1" if action.default else "0",
            "minimum": 0,
            "maximum": 1,
        }
    default = "" if action.default is None else str(action.default)
    if "int" in type_name:
        return {"value_type": "integer", "default_value": default, "minimum": 1}
    if action.choices:
        pattern = "|".join(str(choice) for choice in action.choices)
        return {"value_type": "string", "default_value": default, "pattern": pattern}
    return {"value_type": "string", "default_value": default}


def _model_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    panel = []
    for name, info in model.model_fields.items():
        value_type, how = _value_type(info.annotation)
        default = _default_text(info)
        help_text = (
            "Empty: not given; the value comes from analysis_parameters.json, the job, or "
            + (f"the model's default ({default})." if default else "the model's default.")
        )
        if how:
            help_text += f" {how}"
        minimum, maximum = _bounds(info)
        panel.append(
            _parameter(
                name,
                info.title or name.replace("_", " "),
                PARAMETERS_CATEGORY["id"],
                description=(info.description or name.replace("_", " ")).strip(),
                help_text=help_text,
                value_type=value_type,
                default_value="",
                minimum=minimum,
                maximum=maximum,
            )
        )
    return panel


def _value_type(annotation: Any) -> tuple[str, str]:
    """Code Ocean's value type for a field, and how to type a value when it is not plain."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _value_type(args[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _value_type(args[0])
    if annotation is bool:
        return "string", "Type true or false."
    if annotation is int:
        return "integer", ""
    if annotation is float:
        return "number", ""
    if origin is typing.Literal:
        return "string", "One of: " + ", ".join(str(arg) for arg in args) + "."
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return "string", ""
    return "string", 'Type it as JSON, e.g. [1, 2] or {"a": 1}.'


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return ""
    default = info.get_default(call_default_factory=True)
    if default is None:
        return ""
    return default if isinstance(default, str) else json.dumps(default, default=str)


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    minimum = maximum = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge) and isinstance(item.ge, int | float):
            minimum = item.ge
        if isinstance(item, annotated_types.Le) and isinstance(item.le, int | float):
            maximum = item.le
    return minimum, maximum


# --- finding the model -------------------------------------------------------------------


def find_parameters_model(capsule: Capsule) -> type[BaseModel]:
    """The parameters model ``code/run_capsule.py`` runs with.

    Raises
    ------
    ConfigError
        If the file is missing, does not import, or names no pydantic model.
    """
    script = capsule.code_dir / RUN_SCRIPT_NAME
    if not script.is_file():
        raise ConfigError(f"{script} does not exist; the app panel is built from it")
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    module = _import_script(script)
    expression = _parameters_model_argument(tree)
    if expression is not None:
        found = _resolve(expression, module.__dict__)
        where = f"parameters_model={ast.unparse(expression)} in {script}"
    else:
        found = _annotation_of_parameters(module)
        where = f"the annotation of run_analysis's parameters in {script}"
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ConfigError(
            f"{where} is not a pydantic model; pass your AnalysisParameters subclass as "
            "run_analysis_jobs(..., parameters_model=YourParameters)"
        )
    return found


def _import_script(script: Path) -> types.ModuleType:
    """Import ``run_capsule.py`` under another name, so its ``__main__`` block stays idle."""
    code_dir = str(script.parent)
    spec = importlib.util.spec_from_file_location("_analysis_wrapper_run_capsule", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, code_dir)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error is theirs to see, in one line
        raise ConfigError(
            f"{script} failed to import ({type(exc).__name__}: {exc}); fix it, then run "
            "analysis-wrapper app-panel again"
        ) from None
    finally:
        sys.path.remove(code_dir)
    return module


def _parameters_model_argument(tree: ast.AST) -> ast.expr | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node.func) == "run_analysis_jobs":
            for keyword in node.keywords:
                if keyword.arg == "parameters_model":
                    return keyword.value
    return None


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _resolve(expression: ast.expr, namespace: dict[str, Any]) -> Any:
    """Look up a name or dotted attribute (``Model``, ``models.Model``) in ``namespace``."""
    if isinstance(expression, ast.Name):
        return namespace.get(expression.id)
    if isinstance(expression, ast.Attribute):
        return getattr(_resolve(expression.value, namespace), expression.attr, None)
    return None


def _annotation_of_parameters(module: types.ModuleType) -> Any:
    function = getattr(module, "run_analysis", None)
    if function is None:
        raise ConfigError(
            f"{module.__file__} neither calls run_analysis_jobs(..., parameters_model=...) nor "
            "defines run_analysis; the app panel needs one of them to find the parameters model"
        )
    try:
        return typing.get_type_hints(function).get("parameters")
    except Exception as exc:  # an annotation that does not resolve
        raise ConfigError(
            f"the annotations of run_analysis in {module.__file__} do not resolve ({exc})"
        ) from None
