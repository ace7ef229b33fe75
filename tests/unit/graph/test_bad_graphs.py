"""Parity never passes on non-finite outputs, and a damaged ONNX file is named in the error."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.graph.export import ExportError, ParityError, load_onnx, parity_metrics


def _ref(n=6, k=4, d=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    bound = rng.uniform(-2, 2, size=(n, d)).astype(np.float32)
    return logits, np.rint(bound), bound


@pytest.mark.parametrize("where", ["logits", "bound", "ref_logits", "ref_bound"])
def test_nan_anywhere_fails_parity(where):
    logits, levels, bound = _ref()
    arrays = {"logits": logits.copy(), "bound": bound.copy(), "ref_logits": logits.copy(), "ref_bound": bound.copy()}
    arrays[where][2, 1] = np.nan
    with pytest.raises(ParityError, match=r"non-finite outputs, parity cannot pass: .*1 non-finite values in 1 of 6"):
        parity_metrics(arrays["ref_logits"], levels, arrays["logits"], arrays["bound"], arrays["ref_bound"])


def test_cosine_of_a_zero_vector_against_a_nonzero_one_is_zero():
    logits, levels, bound = _ref()
    cand = logits.copy()
    cand[0] = 0.0
    m = parity_metrics(logits, levels, cand, bound, bound)
    assert m["cosine_min"] == 0.0
    both = logits.copy()
    both[0] = 0.0
    assert parity_metrics(both, levels, both, bound, bound)["cosine_min"] == pytest.approx(1.0)


def test_corrupt_onnx_names_the_path(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\xff\xff corrupt")
    with pytest.raises(ExportError, match=rf"{bad} is not a readable ONNX model"):
        load_onnx(bad)
    with pytest.raises(ExportError, match="ONNX model not found"):
        load_onnx(tmp_path / "missing.onnx")
