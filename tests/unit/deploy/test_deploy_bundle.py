"""Deploy bundles: verification refuses anything changed, missing or unlisted (fast, on a hand-made
bundle); a real bundle from the smoke run carries what stage 08 fitted and reproduces stage 07
in-process (slow); `workbench deploy` never writes into a run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.deploy.bundle import (
    FORMAT,
    FORMAT_VERSION,
    BundleSources,
    build_bundle,
    conformal_predictor,
    load_bundle,
    sources_from_run,
)
from workbench.deploy.predictor import Predictor, choose_backend
from workbench.errors import BackendUnavailable, BundleError, InferenceInputError
from workbench.graph.host import LOGIT_ROW_ULP_TOL, row_scaled_ulp


def _hand_made(folder: Path) -> Path:
    files = {"normalizer.json": b"{}", "split.json": b"{}", "host_weights.npz": b"w", "npu_int8.onnx": b"m"}
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": "r",
        "backends": {"ort-int8-emulated": {"npu_file": "npu_int8.onnx"}},
        "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in files.items()},
    }
    (folder / "deploy.json").write_text(json.dumps(manifest))
    return folder


def test_verification_accepts_an_intact_bundle(tmp_path):
    assert load_bundle(_hand_made(tmp_path / "b")).run_id == "r"


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda b: (b / "npu_int8.onnx").write_bytes(b"M"), "npu_int8.onnx: sha256"),
        (lambda b: (b / "split.json").unlink(), "split.json: missing"),
        (lambda b: (b / "extra.onnx").write_bytes(b"x"), "not listed in deploy.json: ['extra.onnx']"),
        (lambda b: (b / "deploy.json").write_text("{not json"), "not valid JSON"),
        (lambda b: (b / "deploy.json").unlink(), "deploy.json is missing"),
    ],
)
def test_verification_refuses_a_changed_missing_or_unlisted_file(tmp_path, damage, needle):
    b = _hand_made(tmp_path / "b")
    damage(b)
    with pytest.raises(BundleError) as err:
        load_bundle(b)
    assert needle in str(err.value)


def test_verification_refuses_an_unlisted_model_and_another_format(tmp_path):
    b = _hand_made(tmp_path / "b")
    m = json.loads((b / "deploy.json").read_text())
    m["backends"]["ort-fp32"] = {"npu_file": "npu_dynamic.onnx"}
    (b / "deploy.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="does not list"):
        load_bundle(b)
    m["format_version"] = 99
    (b / "deploy.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format_version 99"):
        load_bundle(b)


def test_conformal_predictor_round_trip_keeps_infinite_thresholds():
    from workbench.reliability.conformal import calibrate

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), 3)  # 3 calibration windows at alpha 0.1: k > n, q = inf
    pred = calibrate(p, np.array([0, 1, 2]), alpha=0.1)
    back = conformal_predictor({"method": "LAC marginal", **pred.to_dict()})
    assert np.isinf(back.thresholds).all()
    probe = rng.dirichlet(np.ones(4), 5)
    assert (back.predict_sets(probe) == pred.predict_sets(probe)).all()


# ---- a real bundle -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_stage09_bundle_carries_stage08_calibration(smoke_run):
    b = load_bundle(smoke_run.artifact("deploy_manifest").parent)
    rel = json.loads(smoke_run.artifact("reliability").read_text())["backends"]
    for name in ("ort-int8-emulated", "ort-fp32"):
        entry = b.backend_entry(name)
        assert entry["calibrated_on"] == name and entry["borrowed"] is False
        assert entry["temperature"] == rel[name]["temperature"]["temperature"]
        assert entry["conformal"]["thresholds"] == rel[name]["conformal"]["LAC marginal"]["predictor"]["thresholds"]
    from workbench.data.windowset import WindowSet

    ws, _ = WindowSet.load(smoke_run.artifact("windows"))
    assert b.label_names == ws.label_names and b.input_shape == ws.X.shape[1:]
    assert b.fsq_levels == [8, 6, 5, 5, 4]
    assert "hailo8-device" not in b.backends  # no HEF without the DFC


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ort-int8", "ort-fp32"])
def test_predictor_reproduces_stage07_in_process(smoke_run, backend):
    import torch

    from workbench.data.windowset import WindowSet
    from workbench.model.fsq import FSQ

    b = load_bundle(smoke_run.artifact("deploy_manifest").parent)
    p = Predictor(b, backend)
    with np.load(smoke_run.artifact(f"predictions_{p.backend}"), allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    ws, _ = WindowSet.load(smoke_run.artifact("windows"))
    got = p.predict(ws.X[ref["index"]])
    assert got.levels.tobytes() == np.ascontiguousarray(ref["levels"], np.float32).tobytes()
    assert row_scaled_ulp(got.logits, ref["logits"]).max() <= LOGIT_ROW_ULP_TOL
    # code index cross-checked against the torch FSQ module (an independent implementation)
    assert got.code_index.tolist() == FSQ(b.fsq_levels).codes_to_indices(torch.from_numpy(got.levels)).tolist()
    from scipy.special import softmax

    np.testing.assert_allclose(
        got.probabilities, softmax(ref["logits"].astype(np.float64) / p.temperature, axis=1), rtol=1e-9, atol=1e-15
    )
    q = p.conformal.thresholds
    assert (got.sets == (1.0 - got.probabilities <= q[None, :])).all()  # LAC, recomputed here


@pytest.mark.slow
def test_bad_windows_are_input_errors_naming_the_shape(smoke_run):
    p = Predictor(load_bundle(smoke_run.artifact("deploy_manifest").parent), "ort-int8", max_windows=4)
    good = np.zeros((9, 2, 100), np.float32)
    cases = {
        "shape": good[:, :, :50],
        "dtype": np.zeros((9, 2, 100), bool),
        "empty": np.zeros((0, 9, 2, 100)),
        "too_many": np.zeros((5, 9, 2, 100)),
        "not_finite": np.where(good == 0, np.nan, good),
    }
    for kind, x in cases.items():
        with pytest.raises(InferenceInputError, match=r"\(N, 9, 2, 100\)") as err:
            p.predict(x)
        assert err.value.kind == kind
    assert p.predict(good).logits.shape == (1, 6)


@pytest.mark.slow
def test_without_stage08_probabilities_are_unscaled_and_there_is_no_set(smoke_run, tmp_path):
    src = sources_from_run(smoke_run)
    src = BundleSources(**{**src.__dict__, "reliability_json": None})
    b = load_bundle(build_bundle(src, tmp_path / "b"))
    entry = b.backend_entry("ort-int8-emulated")
    assert entry["temperature"] is None and entry["conformal"] is None and entry["calibrated_on"] is None
    p = Predictor(b, "ort-int8")
    got = p.predict(np.zeros((2, 9, 2, 100), np.float32))
    from scipy.special import softmax

    np.testing.assert_allclose(got.probabilities, softmax(got.logits.astype(np.float64), axis=1), rtol=1e-12)
    assert got.sets is None


@pytest.mark.slow
def test_auto_prefers_the_device_only_with_a_hef_and_a_device(smoke_run, tmp_path):
    b = load_bundle(smoke_run.artifact("deploy_manifest").parent)
    assert choose_backend(b, "auto", lambda: (True, "a device"))[0] == "ort-int8-emulated"  # no HEF
    hef = tmp_path / "model.hef"
    hef.write_bytes(b"\x01HEFfake")
    withhef = load_bundle(build_bundle(sources_from_run(smoke_run, hef_path=hef), tmp_path / "b"))
    assert choose_backend(withhef, "auto", lambda: (True, "a device")) == ("hailo8-device", "a device")
    name, why = choose_backend(withhef, "auto", lambda: (False, "no Hailo device found"))
    assert name == "ort-int8-emulated" and "no Hailo device found" in why
    # hailo8-device borrows the INT8 calibration (stage 08 never saw a device here) and says so
    entry = withhef.backend_entry("hailo8-device")
    assert entry["calibrated_on"] == "ort-int8-emulated" and entry["borrowed"] is True
    with pytest.raises(BundleError, match="no hailo8-device backend"):
        choose_backend(b, "hailo8-device")
    with pytest.raises(BackendUnavailable, match="HailoRT is not installed"):  # asked for, not there
        choose_backend(withhef, "hailo8-device", lambda: (False, "HailoRT is not installed"))
    assert choose_backend(withhef, "hailo8-device", lambda: (True, "1 device"))[0] == "hailo8-device"


@pytest.mark.slow
def test_deploy_cli_writes_a_new_folder_and_never_into_a_run(smoke_run, tmp_path, capsys):
    before = sorted(str(p.relative_to(smoke_run.path)) for p in smoke_run.path.rglob("*"))
    out = tmp_path / "bundle"
    assert main(["deploy", str(smoke_run.path), "--out", str(out)]) == 0
    load_bundle(out)
    assert main(["deploy", str(smoke_run.path), "--out", str(out)]) == 2  # not an empty folder
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["deploy", str(smoke_run.path), "--out", str(smoke_run.path / "artifacts" / "x")]) == 2
    assert "runs are never rewritten" in capsys.readouterr().err
    assert sorted(str(p.relative_to(smoke_run.path)) for p in smoke_run.path.rglob("*")) == before
    shutil.rmtree(out)


def test_service_input_transform_equals_stage05s():
    """The service applies stage 05's host transform with its own numpy lines (no quantization toolchain on
    the Pi); they must compute what workbench.quant.transform.InputTransform computes."""
    from workbench.quant.transform import InputTransform

    x = np.random.default_rng(0).normal(0, 3, size=(5, 3, 2, 11)).astype(np.float32)
    for scale, clip in ([[0.5, 2.0, 1.0], [-1.5, 1.5]], [[0.25, 1.0, 4.0], None], [None, [-0.5, 0.5]], [None, None]):
        p = Predictor.__new__(Predictor)
        p._scale = None if scale is None else np.asarray(scale, np.float32)[None, :, None, None]
        p._clip = clip
        assert p._transform(x).tobytes() == InputTransform(scale=scale, clip=clip).apply(x).tobytes()


@pytest.mark.slow
def test_bundle_of_a_run_with_an_input_transform_reproduces_stage07(smoke_run):
    """A child run whose stage 05 forces the equalize+clip rung: its bundle carries the transform, and the
    served INT8 answers equal stage 07's ort-int8-emulated predictions for the same windows."""
    from workbench.data.windowset import WindowSet
    from workbench.runs import Run

    root = smoke_run.path.parent
    assert (
        main(
            [
                "run",
                "--outputs",
                str(root),
                "-f",
                "params/smoke.yaml",
                "-p",
                "quant_remedy",
                "equalize_clip",
                "-p",
                "run_label",
                "remedy",
                "--from",
                "05",
                "--parent",
                smoke_run.run_id,
                "--no-progress",
            ]
        )
        == 0
    )
    child = next(Run(d) for d in root.iterdir() if d.name.split("-")[2:3] == ["remedy"])
    b = load_bundle(child.artifact("deploy_manifest").parent)
    entry = b.backend_entry("ort-int8-emulated")
    assert entry["input_transform"].get("scale") and entry["input_transform"].get("clip")
    assert not b.backend_entry("ort-fp32")["input_transform"]
    p = Predictor(b, "ort-int8")
    with np.load(child.artifact("predictions_ort-int8-emulated"), allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    ws, _ = WindowSet.load(child.artifact("windows"))
    got = p.predict(ws.X[ref["index"]])
    assert got.levels.tobytes() == np.ascontiguousarray(ref["levels"], np.float32).tobytes()
    assert row_scaled_ulp(got.logits, ref["logits"]).max() <= LOGIT_ROW_ULP_TOL
