"""Parameter documentation generated from the schema (`config.Params`): the trailing comment of every line
of the notebooks' ``parameters`` cells and the reference in docs/PARAMETERS.md.

The comment follows the form papermill's ``--help-notebook`` parses for Python notebooks
(``name = value  # type: T  help``): the type must not contain spaces, and a line holding a second
``=`` is skipped by papermill, so descriptions never contain one. Regenerate after changing the schema:
``python -m workbench.runs.param_docs --write``; tests/unit/test_param_docs.py fails while anything is
stale.
"""

from __future__ import annotations

import ast
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from workbench.config import Params

# Names a parameters cell may hold that are not run parameters: where the notebook reads and writes.
NON_RUN_PARAMETERS: dict[str, tuple[str, str]] = {
    "run_dir": ("str", "run directory the notebook reads and writes (empty: a new or the newest run)"),
    "runs": ("list[str]", "run directories or ids to compare"),
}

PROJECT_ROOT = Path(__file__).resolve().parents[3]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
REFERENCE = PROJECT_ROOT / "docs" / "PARAMETERS.md"


def type_name(annotation: Any) -> str:
    """A compact, space-free type for papermill: ``int``, ``list[int]``, ``str|None``; a Literal is its
    value type (the allowed values go into the help text)."""
    origin = get_origin(annotation)
    if origin is Literal:
        kinds = sorted({type(v).__name__ for v in get_args(annotation)})
        return "|".join(kinds)
    if origin in (Union, getattr(types, "UnionType", Union)):
        return "|".join(type_name(a) for a in get_args(annotation))
    if origin in (list, typing.List):
        return f"list[{type_name(get_args(annotation)[0])}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation)).replace(" ", "")


def choices(annotation: Any) -> list[Any]:
    """Allowed values of a Literal (also inside Optional or list), else []."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    out: list[Any] = []
    for arg in get_args(annotation):
        out += choices(arg)
    return out


def help_text(name: str) -> str:
    """One line: the field's description, plus its allowed values when the schema restricts them."""
    if name in NON_RUN_PARAMETERS:
        return NON_RUN_PARAMETERS[name][1]
    field = Params.model_fields[name]
    text = field.description or ""
    allowed = choices(field.annotation)
    if allowed:
        text += f" (one of: {', '.join(str(v) for v in allowed)})"
    return text


def param_type(name: str) -> str:
    if name in NON_RUN_PARAMETERS:
        return NON_RUN_PARAMETERS[name][0]
    return type_name(Params.model_fields[name].annotation)


def comment_for(name: str) -> str:
    return f"# type: {param_type(name)}  {help_text(name)}"


def annotate_parameters_source(source: str) -> str:
    """The parameters cell with every ``name = literal`` line ending in its generated comment (an old
    trailing comment is replaced; values are kept byte for byte)."""
    out = []
    for line in source.splitlines():
        try:
            node = ast.parse(line).body[0] if line.strip() and not line.lstrip().startswith("#") else None
        except SyntaxError:
            node = None
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            code = line[: node.end_col_offset] if node.end_col_offset is not None else line
            out.append(f"{code}  {comment_for(name)}")
        else:
            out.append(line)
    return "\n".join(out)


def parameters_cell(nb: Any) -> Any:
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def stale_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    import nbformat

    stale = []
    for path in sorted(notebook_dir.glob("*.ipynb")):
        cell = parameters_cell(nbformat.read(str(path), as_version=4))
        if cell.source != annotate_parameters_source(cell.source):
            stale.append(path)
    return stale


def write_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Rewrite the parameters cells whose comments are out of date; returns the notebooks changed."""
    import nbformat

    changed = []
    for path in stale_notebooks(notebook_dir):
        nb = nbformat.read(str(path), as_version=4)
        cell = parameters_cell(nb)
        cell.source = annotate_parameters_source(cell.source)
        nbformat.write(nb, str(path))
        changed.append(path)
    return changed


def _default(value: Any) -> str:
    return "`" + repr(value).replace("|", "\\|") + "`"


def reference_markdown() -> str:
    """docs/PARAMETERS.md: every run parameter with its type, default, constraints and meaning, grouped by
    the first stage notebook that declares it."""
    import nbformat

    declared: dict[str, list[str]] = {}
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        cell = parameters_cell(nbformat.read(str(path), as_version=4))
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                declared.setdefault(node.targets[0].id, []).append(path.stem)
    lines = [
        "# Parameters",
        "",
        "Generated from `src/workbench/config.py` by `python -m workbench.runs.param_docs --write`; do not",
        "edit by hand. Set them in a params file (`-f params/x.yaml`), one at a time (`-p name value`), or",
        "in a notebook's `parameters` cell. `papermill --help-notebook notebooks/<stage>.ipynb` shows the",
        "same types and meanings for the parameters one notebook declares.",
        "",
        "| parameter | type | default | constraints | meaning | notebooks |",
        "|---|---|---|---|---|---|",
    ]
    for name, field in Params.model_fields.items():
        limits = []
        for meta in field.metadata:
            for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >=")):
                if getattr(meta, attr, None) is not None:
                    limits.append(f"{sym} {getattr(meta, attr)}")
        nbs = ", ".join(declared.get(name, [])) or "(pipeline only)"
        kind = param_type(name).replace("|", "\\|")
        lines.append(
            f"| `{name}` | `{kind}` | {_default(field.default)} | "
            f"{', '.join(limits)} | {help_text(name).replace('|', '/')} | {nbs} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if "--write" in argv:
        changed = write_notebooks()
        REFERENCE.write_text(reference_markdown(), encoding="utf-8")
        print("updated: " + ", ".join(p.name for p in changed) + (", " if changed else "") + str(REFERENCE))
        return 0
    stale = stale_notebooks()
    current = REFERENCE.exists() and REFERENCE.read_text(encoding="utf-8") == reference_markdown()
    for p in stale:
        print(f"stale parameter comments: {p}")
    if not current:
        print(f"stale: {REFERENCE}")
    return 1 if stale or not current else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
