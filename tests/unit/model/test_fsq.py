"""FSQ against REFERENCE.md section 1 and an independent implementation (vector-quantize-pytorch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.model.fsq import FSQ, codebook_usage, fsq_numpy_constants, perplexity

LEVEL_SETS = [[8, 6, 5, 5, 4], [8, 5, 5, 5], [7, 5, 5, 5, 5], [2, 3, 4], [8, 6, 5], [3, 9, 10, 2]]


def _dense(levels: list[int], n: int = 20001, span: float = 12.0) -> torch.Tensor:
    """Every dimension sweeps [-span, span] densely, so every reachable level is hit."""
    col = torch.linspace(-span, span, n, dtype=torch.float32)
    return col.unsqueeze(1).repeat(1, len(levels))


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_exactly_L_levels_per_dimension_in_the_documented_range(levels):
    fsq = FSQ(levels).eval()
    lv = fsq.levels_of(_dense(levels))
    for i, L in enumerate(levels):
        got = sorted(torch.unique(lv[:, i]).tolist())
        assert got == list(range(-(L // 2), L - L // 2)), f"dim {i} L={L}: {got}"
        assert len(got) == L


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_zero_maps_to_zero_for_every_L(levels):
    fsq = FSQ(levels).eval()
    z = torch.zeros(1, len(levels))
    assert torch.allclose(fsq.bound(z), torch.zeros_like(z), atol=1e-6)
    assert torch.equal(fsq.levels_of(z), torch.zeros_like(z))
    assert torch.equal(fsq(z), torch.zeros_like(z))


def test_constants_match_the_formulas_and_are_float32():
    c = fsq_numpy_constants([8, 5, 2], eps=1e-3)
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in c.values())
    half_l = np.array([7 * 1.001 / 2, 4 * 1.001 / 2, 1 * 1.001 / 2])
    np.testing.assert_allclose(c["half_l"], half_l, rtol=1e-7)
    np.testing.assert_array_equal(c["offset"], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(c["shift"], [math.atanh(0.5 / half_l[0]), 0.0, math.atanh(0.5 / half_l[2])], rtol=1e-6)
    np.testing.assert_array_equal(c["half_width"], [4, 2, 1])
    fsq = FSQ([8, 5, 2])
    for name, value in c.items():
        buf = getattr(fsq, name)
        assert buf.dtype == torch.float32
        np.testing.assert_array_equal(buf.numpy(), value)
    # Buffers are derivable from the config: not part of the learned state.
    assert fsq.state_dict() == {}


def test_even_L_is_asymmetric_and_extremes_match_half_l_minus_offset():
    fsq = FSQ([8, 5]).eval()
    big = torch.tensor([[30.0, 30.0], [-30.0, -30.0]])
    b = fsq.bound(big)
    half_l = torch.tensor([3.5035, 2.002])
    # tanh saturates to +-1: bound = +-half_l - offset.
    assert torch.allclose(b[0], half_l - torch.tensor([0.5, 0.0]), atol=1e-5)
    assert torch.allclose(b[1], -half_l - torch.tensor([0.5, 0.0]), atol=1e-5)
    lv = fsq.levels_of(big)
    assert lv[:, 0].tolist() == [3.0, -4.0]  # L=8: {-4..3}, not symmetric
    assert lv[:, 1].tolist() == [2.0, -2.0]  # L=5: {-2..2}
    codes = fsq(big)
    assert codes[:, 0].tolist() == [0.75, -1.0]  # level / (L // 2) with L // 2 = 4


@pytest.mark.parametrize("L", [2, 3, 4, 5, 6, 7, 8, 10])
def test_decision_thresholds_sit_at_half_integers(L):
    fsq = FSQ([L]).eval()
    c = fsq_numpy_constants([L])
    half_l, offset, shift = (float(c[k][0]) for k in ("half_l", "offset", "shift"))
    for k in range(-(L // 2), L - 1 - L // 2):  # threshold between level k and k + 1
        z_t = math.atanh((k + 0.5 + offset) / half_l) - shift  # bound(z_t) = k + 0.5 exactly
        zs = torch.tensor([[z_t - 1e-3], [z_t], [z_t + 1e-3]], dtype=torch.float32)
        b = fsq.bound(zs)
        assert abs(float(b[1, 0]) - (k + 0.5)) < 2e-5
        lv = fsq.levels_of(zs)
        assert float(lv[0, 0]) == k and float(lv[2, 0]) == k + 1


@pytest.mark.parametrize("levels", LEVEL_SETS, ids=str)
def test_index_round_trip_over_the_whole_codebook(levels):
    fsq = FSQ(levels)
    size = math.prod(levels)
    assert fsq.codebook_size == size
    every = fsq.all_levels()
    assert every.shape == (size, len(levels)) and every.dtype == torch.int64
    assert torch.unique(every, dim=0).shape[0] == size
    idx = fsq.codes_to_indices(every)
    assert idx.dtype == torch.int64
    assert torch.equal(idx, torch.arange(size))
    # Independent check of the basis [1, L0, L0*L1, ...]: first dimension varies fastest.
    ref = np.ravel_multi_index(tuple((every.numpy() + np.array(levels) // 2).T), dims=levels, order="F")
    np.testing.assert_array_equal(idx.numpy(), ref)
    # Through normalised codes and float levels too (rounded, never truncated).
    codes = fsq.indices_to_codes(torch.arange(size))
    assert torch.equal(fsq.codes_to_indices(fsq.codes_to_levels(codes)), torch.arange(size))
    assert torch.equal(fsq.codes_to_indices(every.to(torch.float32)), torch.arange(size))


def test_indices_of_quantized_random_inputs_round_trip():
    fsq = FSQ([8, 6, 5, 5, 4]).eval()
    z = torch.randn(2000, 5, generator=torch.Generator().manual_seed(1)) * 2
    lv = fsq.levels_of(z)
    idx = fsq.codes_to_indices(lv)
    assert torch.equal(fsq.indices_to_levels(idx).to(torch.float32), lv)
    assert torch.equal(fsq.indices_to_codes(idx), fsq(z))


def test_index_helpers_reject_bad_input():
    fsq = FSQ([8, 5])
    with pytest.raises(ValueError, match="non-integer"):
        fsq.codes_to_indices(torch.tensor([[0.25, 0.5]]))  # normalised codes, not levels
    with pytest.raises(ValueError, match="out of range"):
        fsq.codes_to_indices(torch.tensor([[4, 0]]))  # L=8 tops out at 3
    with pytest.raises(ValueError, match="integer tensor"):
        fsq.indices_to_levels(torch.tensor([3.0]))
    with pytest.raises(ValueError, match=r"\[0, 39\]"):
        fsq.indices_to_levels(torch.tensor([40]))
    with pytest.raises(ValueError, match="last dimension to be 2"):
        fsq.bound(torch.zeros(3, 5))


@pytest.mark.parametrize("bad", [[8, 1], [], [0]])
def test_bad_levels_are_rejected(bad):
    with pytest.raises(ValueError, match="level"):
        FSQ(bad)


def test_ste_passes_gradients_in_training_and_values_equal_eval():
    fsq = FSQ([8, 5, 4])
    z = (torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 1.5).requires_grad_(True)
    fsq.train()
    out = fsq(z)
    out.sum().backward()
    c = fsq_numpy_constants([8, 5, 4])
    t = torch.tanh(z.detach() + torch.from_numpy(c["shift"]))
    expected = (1 - t**2) * torch.from_numpy(c["half_l"]) / torch.from_numpy(c["half_width"])
    assert torch.allclose(z.grad, expected, rtol=1e-5, atol=1e-7)
    assert (z.grad.abs() > 0).all()
    fsq.eval()
    assert torch.equal(out.detach(), fsq(z.detach()))


def test_eval_mode_has_no_straight_through_path():
    fsq = FSQ([8, 5, 4]).eval()
    z = torch.randn(16, 3).requires_grad_(True)
    fsq(z).sum().backward()
    assert torch.count_nonzero(z.grad) == 0  # plain Round: zero gradient, no STE arithmetic
    graph = torch.export.export(fsq, (torch.randn(2, 3),)).graph
    ops = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    assert [o.split(".")[1] for o in ops] == ["add", "tanh", "mul", "sub", "round", "div"]
    fsq.train()
    graph = torch.export.export(fsq, (torch.randn(2, 3),)).graph
    assert any("detach" in str(n.target) for n in graph.nodes)  # the STE exists in training only


def test_known_wrong_mapping_gives_L_plus_1_levels_ours_gives_L():
    z = torch.linspace(-20, 20, 40001)
    for L in (4, 5, 8):
        wrong = torch.round((torch.tanh(z) + 1) * L / 2)
        assert torch.unique(wrong).numel() == L + 1
        ours = FSQ([L]).eval().levels_of(z.unsqueeze(1))
        assert torch.unique(ours).numel() == L


# ---- agreement with vector-quantize-pytorch (test-only dependency) ---------------------------
# Its FSQ.bound uses the same eps=1e-3, half_l=(L-1)(1+eps)/2, offset 0.5 for even L, shift=atanh(
# offset/half_l), round then divide by L//2, and the same index convention (level + L//2 with basis
# [1, L0, L0*L1, ...]). Differences, so only these are compared: it computes the constants in float32
# on the fly (ours: float64 rounded once to float32, so a value within ~1 ulp of a threshold could in
# principle round differently; random inputs never land there in practice), returns int32 indices
# (ours int64), and refuses L=2 unless preserve_symmetry=True, which is a different quantizer - so
# level sets with a 2 are not compared.
@pytest.mark.parametrize("levels", [[8, 6, 5, 5, 4], [8, 5, 5, 5], [7, 5, 5, 5, 5], [8, 6, 5], [3, 4, 10]], ids=str)
def test_agrees_with_vector_quantize_pytorch(levels):
    import vector_quantize_pytorch as vqp

    theirs = vqp.FSQ(levels=levels).eval()
    ours = FSQ(levels).eval()
    z = torch.randn(8192, len(levels), generator=torch.Generator().manual_seed(3)) * 2.5
    with torch.no_grad():
        t_codes, t_idx = theirs(z.unsqueeze(1))  # (N, 1, d) codes, (N, 1) indices
    t_codes, t_idx = t_codes[:, 0], t_idx[:, 0]
    assert torch.equal(ours(z), t_codes)
    assert torch.equal(ours.codes_to_levels(t_codes), ours.levels_of(z))
    assert torch.equal(ours.codes_to_indices(ours.levels_of(z)), t_idx.to(torch.int64))
    # Whole implicit codebook, index by index.
    assert torch.equal(ours.indices_to_codes(torch.arange(ours.codebook_size)), theirs.implicit_codebook)


# ---- usage and perplexity --------------------------------------------------------------------
def test_usage_and_perplexity():
    assert codebook_usage(np.arange(10), 40) == 0.25
    assert codebook_usage(torch.tensor([3, 3, 3]), 40) == 1 / 40
    assert perplexity(np.array([7] * 100)) == pytest.approx(1.0)
    assert perplexity(np.repeat(np.arange(16), 5)) == pytest.approx(16.0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 50, size=1000) ** 2 % 37
    import scipy.stats as scipy_stats

    _, counts = np.unique(idx, return_counts=True)
    assert perplexity(idx) == pytest.approx(math.exp(scipy_stats.entropy(counts)), rel=1e-12)
    with pytest.raises(ValueError, match="integers"):
        perplexity(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="outside a codebook of size 5"):
        codebook_usage(np.array([5]), 5)
    with pytest.raises(ValueError, match="empty"):
        perplexity(np.array([], dtype=np.int64))


def test_numpy_host_side_constants_reproduce_torch_levels():
    levels = [8, 6, 5, 5, 4]
    c = fsq_numpy_constants(levels)
    z = np.random.default_rng(5).normal(0, 2, (5000, 5)).astype(np.float32)
    host = np.round(np.tanh(z + c["shift"]) * c["half_l"] - c["offset"])  # float32, half to even
    assert host.dtype == np.float32
    torch_levels = FSQ(levels).eval().levels_of(torch.from_numpy(z)).numpy()
    # numpy's and torch's tanh may differ by an ulp, which matters only within an ulp of a threshold.
    assert (host != torch_levels).sum() <= 2
