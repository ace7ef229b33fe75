"""Parameter documentation is generated from the schema and stays current: every parameters-cell line
carries its type and meaning, papermill's own parser reads them, docs/PARAMETERS.md matches the schema."""

from pathlib import Path

import nbformat
import pytest

from workbench.config import Params
from workbench.runs import param_docs

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_every_field_has_a_description_papermill_can_show():
    for name, field in Params.model_fields.items():
        assert field.description, f"{name} has no description in config.py"
        # papermill skips a parameter line holding a second '=' and cuts help at nothing else
        assert "=" not in param_docs.help_text(name) and "#" not in param_docs.help_text(name), name
        assert " " not in param_docs.param_type(name), name


def test_types_are_compact_and_literals_list_their_values():
    assert param_docs.param_type("quant_calib_size") == "int"
    assert param_docs.param_type("quant_eval_windows") == "int|None"
    assert param_docs.param_type("encoder_channels") == "list[int]"
    assert param_docs.param_type("backends") == "list[str]|None"
    assert "one of: random_windows, stratified, gaussian_noise" in param_docs.help_text("quant_calib_strategy")


def test_annotation_keeps_values_and_replaces_old_comments():
    src = 'run_dir = ""\nquant_calib_size = 1024  # an old note\n\n# a comment line stays\nfsq_levels = [8, 6]'
    out = param_docs.annotate_parameters_source(src).splitlines()
    assert out[0].startswith('run_dir = ""  # type: str  ')
    assert out[1] == "quant_calib_size = 1024  " + param_docs.comment_for("quant_calib_size")
    assert out[3] == "# a comment line stays" and out[4].startswith("fsq_levels = [8, 6]  # type: list[int]  ")
    assert param_docs.annotate_parameters_source("\n".join(out)) == "\n".join(out)  # idempotent


def test_notebooks_and_reference_are_current():
    assert param_docs.stale_notebooks() == [], "run: python -m workbench.runs.param_docs --write"
    assert param_docs.REFERENCE.read_text(encoding="utf-8") == param_docs.reference_markdown(), (
        "run: python -m workbench.runs.param_docs --write"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_a_type_and_help_for_every_parameter(path):
    import papermill as pm

    inferred = pm.inspect_notebook(str(path))
    cell = param_docs.parameters_cell(nbformat.read(str(path), as_version=4))
    declared = [ln.split("=")[0].strip() for ln in cell.source.splitlines() if "=" in ln]
    assert list(inferred) == declared
    for name, p in inferred.items():
        assert p["inferred_type_name"] == param_docs.param_type(name), name
        assert p["help"] == param_docs.help_text(name), name
