"""Files named by parameters that other domains own are checked before a run directory exists."""

from __future__ import annotations

import pytest

from workbench.config import load_params
from workbench.errors import HefImportError
from workbench.runs.preflight import check_inputs as preflight


def test_hef_path_missing_or_not_a_hef(tmp_path):
    with pytest.raises(HefImportError, match="is not a file"):
        preflight(load_params([], {"hef_path": str(tmp_path / "nope.hef"), "quant_calib_size": 64}))
    fake = tmp_path / "model.hef"
    fake.write_bytes(b"ONNX not a hef")
    with pytest.raises(HefImportError, match="does not start with the HEF magic"):
        preflight(load_params([], {"hef_path": str(fake), "quant_calib_size": 64}))
    real_magic = tmp_path / "ok.hef"
    real_magic.write_bytes(bytes.fromhex("01484546") + b"\0" * 60)
    notes = preflight(load_params([], {"hef_path": str(real_magic), "quant_calib_size": 64})).notes
    assert any("hailo8-device cannot run it" in n for n in notes)  # HailoRT is not installed here


def test_reused_stage_01_keeps_the_parents_sample_rate():
    child = load_params([], {"quant_calib_size": 64})  # sample_rate_hz unset
    checked = preflight(child, ["05", "06"], parent_params={"sample_rate_hz": 100.0})
    assert checked.params.sample_rate_hz == 100.0
