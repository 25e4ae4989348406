"""Resampling schemes: unbiased counts, low-variance bounds, degenerate and float32 weights, ESS."""

import math
from unittest import mock

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from smcdiff import resampling
from smcdiff.resampling import RESAMPLERS, ess, resample

SCHEMES = sorted(RESAMPLERS)
NEG_INF = float("-inf")
LARGEST_BELOW_ONE = 1.0 - 2.0**-53  # the largest float64 uniform torch.rand can return

weight_rows = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40).filter(lambda w: sum(w) > 1e-6)


def counts(ancestors, m):
    return torch.zeros(ancestors.shape[0], m, dtype=torch.long).scatter_add_(1, ancestors, torch.ones_like(ancestors))


@pytest.mark.parametrize("scheme", SCHEMES)
@given(w=weight_rows, seed=st.integers(0, 2**31 - 1))
def test_shapes_range_and_zero_weights_never_picked(scheme, w, seed):
    w = torch.tensor(w, dtype=torch.float64)
    lw = w.log().expand(3, -1)
    anc = resample(lw, scheme, torch.Generator().manual_seed(seed))
    assert anc.shape == lw.shape and anc.dtype == torch.long
    assert ((anc >= 0) & (anc < w.numel())).all()
    assert (w[anc] > 0).all()


log_weight_rows = st.lists(st.one_of(st.just(NEG_INF), st.floats(min_value=-800.0, max_value=50.0)), min_size=1,
                          max_size=40).filter(lambda lw: any(v > NEG_INF for v in lw))
uniforms = st.one_of(st.just(0.0), st.just(LARGEST_BELOW_ONE), st.floats(min_value=0.0, max_value=1.0, exclude_max=True))


@pytest.mark.parametrize("scheme", SCHEMES)
@given(lw=log_weight_rows, u=uniforms)
@example(lw=[0.0] + [NEG_INF] * 7, u=LARGEST_BELOW_ONE)  # (M - 1 + U) / M rounds to 1: past the last bin
@example(lw=[math.log(0.7), math.log(0.2), math.log(0.1), NEG_INF], u=LARGEST_BELOW_ONE)  # cumsum 1 - 2e-16
@example(lw=[0.0, -700.0, -800.0, NEG_INF, NEG_INF], u=LARGEST_BELOW_ONE)  # tiny and underflowing weights
def test_zero_weight_never_picked_by_any_uniform(scheme, lw, u):
    """No scheme returns an index of log-weight -inf, whatever the uniforms, including the extreme ones:
    every uniform of the scheme is set to ``u`` (0, the largest float below 1, or any value in between)."""
    lw = torch.tensor(lw, dtype=torch.float64).expand(2, -1)
    draw = lambda shape, generator, device: torch.full(shape, u, dtype=torch.float64, device=device)  # noqa: E731
    with mock.patch.object(resampling, "_uniforms", draw):
        anc = resample(lw, scheme)
    assert ((anc >= 0) & (anc < lw.shape[1])).all()
    assert (lw.gather(1, anc) > NEG_INF).all(), (lw[0, anc[0]], anc[0])


@pytest.mark.parametrize("scheme", ["systematic", "residual"])
@given(w=weight_rows, seed=st.integers(0, 2**31 - 1))
def test_low_variance_counts_within_floor_and_ceil(scheme, w, seed):
    """Systematic counts lie in {floor(M w_i), ceil(M w_i)}; residual counts are at least floor(M w_i)."""
    w = torch.tensor(w, dtype=torch.float64)
    w = w / w.sum()
    m = w.numel()
    c = counts(resample(w.log()[None], scheme, torch.Generator().manual_seed(seed)), m)[0].double()
    assert (c >= torch.floor(m * w - 1e-9)).all()
    if scheme == "systematic":
        assert (c <= torch.ceil(m * w + 1e-9)).all()


@given(w=weight_rows, seed=st.integers(0, 2**31 - 1))
def test_stratified_counts_within_two_of_expectation(w, seed):
    w = torch.tensor(w, dtype=torch.float64)
    w = w / w.sum()
    m = w.numel()
    c = counts(resample(w.log()[None], "stratified", torch.Generator().manual_seed(seed)), m)[0].double()
    assert ((c - m * w).abs() < 2 + 1e-9).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unbiased_counts(scheme):
    """E[#copies of i] = M w_i: the mean count over R rows is within 4 standard errors of M w_i."""
    g = torch.Generator().manual_seed(0)
    m, r = 10, 20_000
    w = torch.tensor([0.0, 0.31, 0.05, 0.2, 0.004, 0.1, 0.036, 0.15, 0.1, 0.05], dtype=torch.float64)
    anc = resample(w.log().expand(r, m), scheme, g)
    c = counts(anc, m).double()
    se = c.std(0) / math.sqrt(r)
    assert ((c.mean(0) - m * w).abs() <= 4 * se + 1e-9).all()
    assert (c.sum(1) == m).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_degenerate_and_float32(scheme):
    g = torch.Generator().manual_seed(0)
    lw = torch.full((2, 5), float("-inf"))
    lw[0, 3] = 0.0
    lw[1, 0] = -1e4  # a single surviving particle with a tiny float32 weight
    anc = resample(lw, scheme, g)
    assert (anc[0] == 3).all() and (anc[1] == 0).all()
    lw32 = torch.tensor([[-1e30, 0.0, -1e30]], dtype=torch.float32)
    assert (resample(lw32, scheme, g) == 1).all()


def test_ess():
    assert ess(torch.zeros(1, 8)).item() == pytest.approx(8.0)
    lw = torch.tensor([[0.0, float("-inf"), float("-inf")]])
    assert ess(lw).item() == pytest.approx(1.0)
    w = torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)
    assert ess(w.log() + 7.0).item() == pytest.approx(1 / (0.25 + 0.0625 + 0.0625))


def test_bad_inputs():
    with pytest.raises(ValueError, match="resampling must be one of"):
        resample(torch.zeros(1, 3), "bogus")
    with pytest.raises(ValueError, match="shape"):
        resample(torch.zeros(3), "systematic")
    with pytest.raises(ValueError, match="NaN"):
        resample(torch.tensor([[0.0, float("nan")]]), "systematic")
    with pytest.raises(ValueError, match="every weight is zero"):
        resample(torch.full((1, 3), float("-inf")), "systematic")
