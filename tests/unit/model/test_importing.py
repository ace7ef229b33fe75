"""Bring your own model: stage 01's import of ONNX files and PyTorch factories written elsewhere."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from support import byom_models as bm  # models written outside the workbench
from workbench.config import load_params
from workbench.data.prepare import prepare_data
from workbench.errors import ModelImportError, ParamError, SplitError
from workbench.graph.fsq_detect import FsqNotFound
from workbench.model import importing as im


@pytest.fixture(scope="module")
def data():
    return prepare_data(load_params([], {"synthetic_subjects": 10, "synthetic_windows_per_class": 3}))


@pytest.fixture(scope="module")
def author(tmp_path_factory, data):
    tr = data.splits.train
    return bm.author_files(tmp_path_factory.mktemp("author"), "predecessor", data.windows.X[tr], data.windows.y[tr])


def _params(**over):
    return load_params([], {"mode": "import", **over})


def test_model_path_forms_and_their_errors(tmp_path, author):
    assert im.parse_model_path(str(author["onnx"])) == ("onnx", author["onnx"])
    assert im.parse_model_path("support.byom_models:build_predecessor") == (
        "factory",
        ("support.byom_models", "build_predecessor"),
    )
    with pytest.raises(ModelImportError, match="does not exist"):
        im.parse_model_path(str(tmp_path / "missing.onnx"))
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ModelImportError, match="not .onnx"):
        im.parse_model_path(str(tmp_path / "m.txt"))
    with pytest.raises(ModelImportError, match="neither"):
        im.parse_model_path("no colon here")
    with pytest.raises(ModelImportError, match="cannot import 'no_such_pkg_xyz'"):
        im.load_factory(("no_such_pkg_xyz", "f"))
    with pytest.raises(ParamError, match="mode 'import' needs model_path"):
        load_params([], {"mode": "import"})


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"mean": [0, 0], "std": [1, 1]}', "has shape \\(2,\\)"),
        ('{"mean": [0, 0, 0], "std": [1, 0, 1]}', "'std' must be > 0"),
        ('{"mean": [0, NaN, 0], "std": [1, 1, 1]}', "NaN"),
        ('{"mean": ["<script>", 0, 0], "std": [1, 1, 1]}', "not a list of numbers"),
        ('{"avg": [0, 0, 0]}', 'must hold \\{"mean"'),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_normaliser_file_errors_name_the_problem(tmp_path, text, match):
    p = tmp_path / "n.json"
    p.write_text(text)
    with pytest.raises(ModelImportError, match=match):
        im.load_normalizer_json(p, channels=3, sites=2)


def test_normaliser_per_channel_or_per_channel_and_site(tmp_path):
    p = tmp_path / "n.json"
    p.write_text(json.dumps({"mean": [1.0, 2.0, 3.0], "std": [1.0, 2.0, 4.0]}))
    n = im.load_normalizer_json(p, channels=3, sites=2)
    assert n.mean.shape == (3, 2, 1) and np.all(n.mean[:, 0, 0] == n.mean[:, 1, 0])
    p.write_text(json.dumps({"mean": [[1, 2], [3, 4], [5, 6]], "std": [[1, 1], [2, 2], [3, 3]]}))
    n = im.load_normalizer_json(p, channels=3, sites=2)
    assert n.mean[2, 1, 0] == 6 and n.std[1, 0, 0] == 2


@pytest.mark.parametrize("layout", ["NCT", "NTC"])
def test_one_d_layouts_are_mapped_explicitly(tmp_path, layout):
    """The adapted graph on (N, C, S, T) windows equals the author's graph on their own layout, with
    channel k = c * S + s; non-square sizes so a swapped axis cannot pass."""
    import torch

    c, s, t = 3, 2, 11
    torch.manual_seed(0)
    enc = bm.TcnEncoder(in_channels=c * s, time_major=layout == "NTC")
    shape = (1, c * s, t) if layout == "NCT" else (1, t, c * s)
    bm.export(enc, tmp_path / "e.onnx", shape, ["codes", "idx"])
    proto = onnx.load(str(tmp_path / "e.onnx"))
    adapted = im.with_batch(im.adapt_input_layout(proto, layout, c, s, t), "batch")
    x = np.random.default_rng(1).normal(size=(5, c, s, t)).astype(np.float32)
    got = im.run_outputs(adapted, x)["codes"]
    want = im.run_outputs(proto, bm.to_layout(x, layout))["codes"]
    assert np.array_equal(got, want)
    with pytest.raises(ModelImportError, match="model_input_layout 'NCST'.*\\(N, 3, 2, 11\\)"):
        im.adapt_input_layout(proto, "NCST", c, s, t)
    with pytest.raises(ModelImportError, match="one of"):
        im.adapt_input_layout(proto, "NHWC", c, s, t)


def test_onnx_import_accuracy_equals_the_authors_evaluation(tmp_path, data, author):
    p = _params(model_path=str(author["onnx"]), normalizer_path=str(author["normalizer"]))
    assert "normaliser from" in im.first_line(p)
    rec, torch_model = im.import_into_stage(p, data, tmp_path)
    assert torch_model is None and rec.kind == "onnx" and rec.logits_output == "logits"
    assert rec.fsq_levels == [8, 6, 5, 5, 4] and rec.fsq["round_node"] == "/fsq_model/fsq/Round"
    assert rec.files["onnx"]["sha256"] == im.sha256_file(author["onnx"])
    assert (tmp_path / im.IMPORT_ONNX).read_bytes() == author["onnx"].read_bytes()
    assert json.loads((tmp_path / im.IMPORT_RECORD).read_text())["source"] == str(author["onnx"])
    for split in ("val", "test"):
        res = im.evaluate_split_import(tmp_path, rec, data, split)
        idx = getattr(data.splits, split)
        own = bm.author_accuracy(author["model"], data.windows.X[idx], data.windows.y[idx], author["norm"])
        assert res["backend"] == "ort-fp32" and res["accuracy"] == own
    run_model = im.load_run_model(tmp_path)
    assert run_model.reference_backend == "ort-fp32" and not run_model.has_torch
    assert "torch" not in run_model.origin


def test_fitted_normaliser_is_said_and_near_chance_is_warned(tmp_path, data, author):
    p = _params(model_path=str(author["onnx"]))
    assert "FITTED ON THE TRAINING SPLIT" in im.first_line(p)
    rec, _ = im.import_into_stage(p, data, tmp_path)
    assert rec.normalizer_source.startswith("fitted") and any("fitted" in n for n in rec.notes)
    # a wildly wrong normaliser (the author's std times 1e4) feeds the model near-constant input
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"mean": author["norm"]["mean"], "std": (np.asarray(author["norm"]["std"]) * 1e4).tolist()})
    )
    (tmp_path / "b").mkdir()
    rec, _ = im.import_into_stage(
        _params(model_path=str(author["onnx"]), normalizer_path=str(bad)), data, tmp_path / "b"
    )
    res = im.evaluate_split_import(tmp_path / "b", rec, data, "val")
    assert len(np.unique(res["pred"])) == 1  # one class for everything: accuracy near chance
    assert res["near_chance"] and "WARNING" in im.near_chance_warning("val", res, rec)
    assert "normaliser (file" in im.near_chance_warning("val", res, rec)
    assert im.near_chance_warning("val", {**res, "near_chance": False}, rec) is None


def test_factory_import_exports_and_torch_bound_matches_ort(tmp_path, data, author):
    p = _params(
        model_path="support.byom_models:build_predecessor",
        weights_path=str(author["weights"]),
        normalizer_path=str(author["normalizer"]),
    )
    rec, model = im.import_into_stage(p, data, tmp_path)
    assert rec.kind == "torch-factory" and model is not None and (tmp_path / im.IMPORT_WEIGHTS).is_file()
    X, _ = data.arrays("val")
    rounds, logits = im.torch_round_inputs(model, X)
    ort = im.run_outputs(
        im.with_batch(im.adapted_graph(tmp_path, rec, *X.shape[1:]), "batch"),
        X,
        [rec.fsq["bound_tensor"], rec.logits_output],
    )
    assert np.array_equal(np.rint(rounds[0]), np.rint(ort[rec.fsq["bound_tensor"]]))
    assert np.array_equal(logits.argmax(1), ort[rec.logits_output].argmax(1))
    assert im.load_run_model(tmp_path).reference_backend == "torch-fp32"
    with pytest.raises(ModelImportError, match="weights_only=True|do not fit"):
        bad = tmp_path / "bad.pt"
        import torch

        torch.save({"not": torch.zeros(1)}, bad)
        im.load_torch_model(("support.byom_models", "build_predecessor"), bad)


def test_preflight_refuses_wrong_levels_and_non_fsq_round(tmp_path, data, author):
    with pytest.raises(SplitError, match=r"encodes levels \[8, 6, 5, 5, 4\].*fsq_levels is \[8, 5, 5, 5\]"):
        im.preflight_import(_params(model_path=str(author["onnx"]), fsq_levels=[8, 5, 5, 5]))
    tr = data.splits.train
    rounder = bm.author_files(tmp_path, "rounder", data.windows.X[tr], data.windows.y[tr], steps=2)
    with pytest.raises(FsqNotFound, match=r"(?s)'/Round'.*cut_tensor"):
        im.preflight_import(_params(model_path=str(rounder["onnx"])))
    with pytest.raises(ModelImportError, match="normalizer_path"):
        im.preflight_import(_params(model_path=str(author["onnx"]), normalizer_path=str(tmp_path / "none.json")))


def test_static_batch_export_is_made_batch_dynamic(tmp_path, data):
    """A batch-1 export of vector-quantize-pytorch's FSQ hard-codes the batch in its Reshapes; the import
    frees them so evaluation can batch, and the batched graph equals the batch-1 graph window by window."""
    tr = data.splits.train
    f = bm.author_files(tmp_path / "a", "lucidrains", data.windows.X[tr], data.windows.y[tr], steps=10)
    bm.export(f["model"], tmp_path / "static.onnx", (1, 9, 2, 100), ["logits", "indices"], dynamic=False)
    p = _params(model_path=str(tmp_path / "static.onnx"), normalizer_path=str(f["normalizer"]), fsq_levels=[8, 5, 5, 5])
    (tmp_path / "s").mkdir()
    rec, _ = im.import_into_stage(p, data, tmp_path / "s")
    res = im.evaluate_split_import(tmp_path / "s", rec, data, "val")
    idx = data.splits.val
    assert res["accuracy"] == bm.author_accuracy(f["model"], data.windows.X[idx], data.windows.y[idx], f["norm"])
    X, _ = data.arrays("test")
    im.write_import_graphs(tmp_path / "s", rec, X.shape[1:], tmp_path / "m.onnx", tmp_path / "md.onnx")
    par = im.import_parity(rec, tmp_path / "m.onnx", tmp_path / "md.onnx", X)
    assert par["model_dynamic.onnx"]["passed"] and par["model_dynamic.onnx"]["reference_backend"].startswith("ort")
    assert par["model_dynamic.onnx"]["max_abs_diff"] < 1e-5
