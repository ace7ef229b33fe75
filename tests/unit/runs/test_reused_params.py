"""`--from NN --parent R` refuses parameters that the reused stages used with other values, and only those:
stage 01 reads quant_calib_size and cut for quantization-aware fine-tuning alone."""

import json

from workbench.config import Params
from workbench.runs.pipeline import reused_param_differences
from workbench.runs.store import Run


def _parent(tmp_path, **params) -> Run:
    run = Run.create("parent", root=tmp_path)
    (run.path / "manifest.json").write_text(json.dumps({"params": Params(**params).model_dump()}))
    return run


def test_calibration_size_may_change_when_the_parent_trained_without_qat(tmp_path):
    parent = _parent(tmp_path)
    reused = ["01", "02", "03", "04"]
    assert reused_param_differences(Params(quant_calib_size=256), parent, reused) == {}


def test_calibration_size_is_refused_when_the_parent_fine_tuned_with_it(tmp_path):
    parent = _parent(tmp_path, qat_epochs=2)
    diffs = reused_param_differences(Params(qat_epochs=2, quant_calib_size=256), parent, ["01", "02", "03", "04"])
    assert diffs == {"quant_calib_size": (1024, 256)}


def test_architecture_and_cut_changes_are_refused(tmp_path):
    parent = _parent(tmp_path)
    diffs = reused_param_differences(
        Params(fsq_levels=[8, 5], cut="after_projection"), parent, ["01", "02", "03", "04"]
    )
    assert set(diffs) == {"fsq_levels", "cut"}  # cut through stage 04, which always uses it
