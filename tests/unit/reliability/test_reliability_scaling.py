"""Vector / matrix scaling and their selection by leaving subjects out (workbench.reliability.scaling)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.reliability import scaling as S
from workbench.reliability.metrics import ReliabilityInputError, expected_calibration_error, softmax


def _data(rng, n=3000, k=5, w=None, b=None):
    """Logits z; labels drawn from softmax(z * w + b): the best vector scaling is (w, b)."""
    z = rng.normal(size=(n, k)) * 2
    w = np.ones(k) if w is None else w
    b = np.zeros(k) if b is None else b
    y = (np.cumsum(softmax(z * w + b), axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    return z, y


def test_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, y = _data(rng, 200, 4)
    w, b = rng.normal(size=(4, 4)), rng.normal(size=4)
    loss, gw, gb = S._nll_and_grad(z, y, w, b)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(torch.tensor(z) @ tw.T + tb, torch.tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-10)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_matrix_scaling_without_penalty_matches_torch_multinomial_regression():
    """lam = 0 matrix scaling is multinomial logistic regression on the logits: fit the same model
    with torch's own optimiser and loss and compare the fitted probabilities."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    z, y = _data(rng, 1500, 4, w=np.array([0.5, 1.0, 1.5, 0.8]), b=np.array([0.3, -0.2, 0.0, 0.1]))
    ours = S.fit_calibrator(z, y, "matrix", lam=0.0)
    lin = torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4, dtype=torch.float64))
        lin.bias.zero_()
    opt = torch.optim.LBFGS(
        lin.parameters(),
        lr=1,
        max_iter=500,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    tz, ty = torch.tensor(z), torch.tensor(y)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(tz), ty)
        loss.backward()
        return loss

    opt.step(closure)
    theirs = torch.softmax(lin(tz), dim=1).detach().numpy()
    np.testing.assert_allclose(ours.probs(z), theirs, atol=2e-4)
    assert ours.nll_fit == pytest.approx(closure().item(), abs=1e-7)


def test_vector_scaling_recovers_per_class_scales_and_lowers_ece():
    rng = np.random.default_rng(2)
    w, b = np.array([0.4, 1.0, 2.0, 0.6, 1.4]), np.array([0.6, -0.4, 0.0, 0.2, -0.3])
    z, y = _data(rng, 8000, 5, w, b)
    cal = S.fit_calibrator(z[:4000], y[:4000], "vector", lam=1e-4)
    np.testing.assert_allclose(np.diag(cal.weight), w, atol=0.12)
    np.testing.assert_allclose(cal.bias - cal.bias.mean(), b - b.mean(), atol=0.12)
    assert np.count_nonzero(cal.weight - np.diag(np.diag(cal.weight))) == 0
    before = expected_calibration_error(softmax(z[4000:]), y[4000:]).value
    after = expected_calibration_error(cal.probs(z[4000:]), y[4000:]).value
    assert after < before / 2


def test_penalty_shrinks_toward_identity_and_handles_separable_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    z = rng.uniform(-1, 1, size=(300, 3))
    z[np.arange(300), y] += 5  # separable: unpenalised scaling would diverge
    strong = S.fit_calibrator(z, y, "vector", lam=10.0)
    weak = S.fit_calibrator(z, y, "vector", lam=1e-3)
    assert np.all(np.isfinite(weak.weight)) and weak.converged
    assert np.abs(np.diag(strong.weight) - 1).max() < np.abs(np.diag(weak.weight) - 1).max()
    t = S.fit_calibrator(z, y, "temperature")
    assert np.allclose(t.weight, np.eye(3)) and "not identifiable" in t.note


def test_selection_uses_held_out_subjects_only_and_can_choose_identity():
    rng = np.random.default_rng(4)
    z, y = _data(rng, 2400, 4)  # already calibrated: nothing should beat identity much
    subject = np.repeat(np.arange(6), 400)
    sel = S.select_calibrator(z, y, subject, backend="ort-int8-emulated")
    names = [c["name"] for c in sel.candidates]
    assert names[0] == "identity" and sum(c["chosen"] for c in sel.candidates) == 1
    best = min(sel.candidates, key=lambda c: c["heldout_nll"])
    assert best["chosen"] and sel.chosen.kind == best["kind"]
    assert sel.folds == [[0], [1], [2], [3], [4], [5]] and sel.heldout_probs.shape == z.shape
    # the held-out probabilities really are out-of-subject: refit without subject 0 and compare
    c0 = S.fit_calibrator(z[subject != 0], y[subject != 0], sel.chosen.kind, sel.chosen.lam)
    np.testing.assert_allclose(sel.heldout_probs[subject == 0], c0.probs(z[subject == 0]), atol=1e-6)
    assert sel.to_dict()["backend"] == "ort-int8-emulated"


def test_selection_finds_miscalibration_shared_by_subjects():
    rng = np.random.default_rng(5)
    z, y = _data(rng, 3000, 4, w=np.array([0.4, 0.4, 1.5, 1.0]))  # class-dependent mis-scaling
    subject = np.repeat(np.arange(5), 600)
    sel = S.select_calibrator(z, y, subject, criterion="ece")
    ident = next(c for c in sel.candidates if c["kind"] == "identity")
    chosen = next(c for c in sel.candidates if c["chosen"])
    assert chosen["kind"] in ("vector", "matrix") and chosen["heldout_ece"] < ident["heldout_ece"] / 2


def test_bad_inputs():
    rng = np.random.default_rng(6)
    z, y = _data(rng, 100, 3)
    with pytest.raises(ReliabilityInputError, match="kind"):
        S.fit_calibrator(z, y, "platt")
    with pytest.raises(ReliabilityInputError, match="lam"):
        S.fit_calibrator(z, y, "vector", lam=-1)
    with pytest.raises(ReliabilityInputError, match="two subjects"):
        S.select_calibrator(z, y, np.zeros(100))
    z[0, 0] = np.nan
    with pytest.raises(ReliabilityInputError, match="NaN"):
        S.fit_calibrator(z, y, "matrix")
