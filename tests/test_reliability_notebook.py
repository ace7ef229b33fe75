"""Notebook 08 is committed clean and its parameters cell matches the schema; sources' consistency check."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import numpy as np
import pytest

from workbench.config import Params
from workbench.reliability.report import SplitLogits
from workbench.reliability.sources import check_consistent

NB = Path(__file__).resolve().parents[1] / "notebooks" / "08_reliability.ipynb"


def test_notebook_structure_and_parameters():
    nb = nbformat.read(NB, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# 08")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged == [1]
    values = {}
    for node in ast.parse(nb.cells[1].source).body:
        assert isinstance(node, ast.Assign), "parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert values.pop("run_dir") == ""
    defaults = Params().model_dump()
    assert values and all(values[k] == defaults[k] for k in values), \
        {k: (values[k], defaults.get(k)) for k in values if values[k] != defaults.get(k)}
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, "commit the notebook without outputs"


def _s(backend, split, y, subj):
    return SplitLogits(backend, split, np.zeros((len(y), 3)), np.asarray(y), np.asarray(subj))


def test_check_consistent():
    ok = {b: {s: _s(b, s, [0, 1], [1, 1]) for s in ("val", "conformal", "test")} for b in ("a", "b")}
    check_consistent(ok)
    ok["b"]["test"] = _s("b", "test", [0, 2], [1, 1])
    with pytest.raises(RuntimeError, match="test windows differ between a"):
        check_consistent(ok)
