"""Notebook hygiene, the one test of it: committed without outputs, markdown first and the `parameters`
cell second, plain literals whose names exist in the schema and whose values are the schema's defaults
(so a notebook opened in JupyterLab behaves like `workbench run` with no parameter files), and no logic
or raw figure code in cells (functions, classes and figures live in the package)."""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from workbench.config import Params
from workbench.runs import STAGE_NAMES

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
EXTRA = {"run_dir": "", "runs": []}  # not run parameters: where the notebook reads and writes


def test_one_notebook_per_stage_plus_compare():
    assert [p.stem for p in NOTEBOOKS] == list(STAGE_NAMES.values()) + ["compare_runs"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_one_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown" and nb.cells[1] is tagged[0]


FORBIDDEN_IN_CELLS = {
    "a function definition": re.compile(r"^\s*(async\s+)?def\s", re.M),
    "a class definition": re.compile(r"^\s*class\s", re.M),
    "raw figure code (plt.subplots / plt.figure)": re.compile(r"\bplt\.(subplots|figure)\("),
    "the old Params(**globals()) idiom (use workbench.notebook.stage_params)": re.compile(r"Params\(\*\*"),
    "a private workbench helper": re.compile(r"from workbench[\w.]* import .*\b_[a-z]"),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_hold_no_logic_or_raw_figures(path):
    nb = nbformat.read(str(path), as_version=4)
    found = [(i, what) for i, c in enumerate(nb.cells) if c.cell_type == "code"
             for what, pattern in FORBIDDEN_IN_CELLS.items() if pattern.search(c.source)]
    assert not found, f"{path.stem}: " + "; ".join(f"cell {i} holds {what}" for i, what in found)


def test_the_hygiene_rules_catch_what_they_name():
    bad = ["def f():\n    pass", "class A:\n    pass", "fig, ax = plt.subplots()", "P = Params(**globals())",
           "from workbench.reliability.metrics import _jsonable"]
    for source, pattern in zip(bad, FORBIDDEN_IN_CELLS.values()):
        assert pattern.search(source), source
    assert not any(p.search("show(fig)  # define nothing here") for p in FORBIDDEN_IN_CELLS.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_schema_defaults_as_literals(path):
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults = Params().model_dump()
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        name = node.targets[0].id
        value = ast.literal_eval(node.value)  # raises on anything but a plain literal
        if name in EXTRA:
            assert value == EXTRA[name]
            continue
        assert name in defaults, f"{path.stem}: {name} is not a Params field"
        assert value == defaults[name], f"{path.stem}: {name} = {value!r}, schema default {defaults[name]!r}"
