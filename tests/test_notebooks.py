"""Notebook hygiene: committed without outputs, one `parameters` cell of plain literals whose names
exist in the schema and whose values are the schema's defaults (so a notebook opened in JupyterLab
behaves like `workbench run` with no parameter files)."""
import ast
from pathlib import Path

import nbformat
import pytest

from workbench.config import Params
from workbench.runs import STAGE_NAMES

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXTRA = {"run_dir": "", "runs": []}  # not run parameters: where the notebook reads and writes


def test_one_notebook_per_stage_plus_compare():
    assert [p.stem for p in NOTEBOOKS] == list(STAGE_NAMES.values()) + ["09_compare_runs"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_one_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


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
