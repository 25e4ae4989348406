"""Observation operators: each SVD reproduces A, A^T and the pseudo-inverse of the explicit matrix.

The explicit matrix of an operator is read off by applying ``A`` to the unit vectors; A^T and A^+ are
then compared with the matrix transpose and ``torch.linalg.pinv`` on random inputs, in float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smcdiff.operators import Blur, Dense, Downsample, Grayscale, Mask, as_operator

F64 = torch.float64


def explicit(op) -> torch.Tensor:
    """(m, d) matrix of ``op`` from its action on the unit vectors."""
    d = math.prod(op.in_shape)
    eye = torch.eye(d, dtype=F64).reshape(d, *op.in_shape)
    return op.A(eye).reshape(d, -1).T


def check_svd(op, reference: torch.Tensor | None = None, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    a = explicit(op)
    if reference is not None:
        assert torch.allclose(a, reference, atol=1e-12)
    d, m = a.shape[1], a.shape[0]
    x = torch.randn(3, *op.in_shape, generator=g, dtype=F64)
    y = torch.randn(3, *op.out_shape, generator=g, dtype=F64)
    # V is orthogonal: V(Vt(x)) = x and norms are kept
    assert torch.allclose(op.V(op.Vt(x)), x, atol=1e-12)
    assert torch.allclose(op.Vt(x).flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-10)
    assert torch.allclose(op.At(y).reshape(3, d), y.reshape(3, m) @ a, atol=1e-10)
    pinv = torch.linalg.pinv(a, rtol=1e-9)
    assert torch.allclose(op.A_pinv(y).reshape(3, d), y.reshape(3, m) @ pinv.T, atol=1e-8)
    # A A^+ A = A (on the observed singular directions)
    assert torch.allclose(op.A(op.A_pinv(op.A(x))), op.A(x), atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_mask_svd(c, h, w, seed):
    mask = torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed)) < 0.5
    op = Mask(mask)
    check_svd(op, torch.diag(mask.flatten().to(F64)), seed)


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 3), hb=st.integers(1, 3), wb=st.integers(1, 3), f=st.integers(1, 4), seed=st.integers(0, 100))
def test_downsample_svd_is_block_averaging(c, hb, wb, f, seed):
    op = Downsample(f).bind((c, hb * f, wb * f))
    x = torch.randn(2, c, hb * f, wb * f, generator=torch.Generator().manual_seed(seed), dtype=F64)
    pooled = torch.nn.functional.avg_pool2d(x, f)
    assert torch.allclose(op.A(x), pooled, atol=1e-12)
    assert op.out_shape == (c, hb, wb)
    assert torch.allclose(op.s[op.observed], torch.full_like(op.s[op.observed], 1.0 / f))
    check_svd(op, seed=seed)


@settings(max_examples=12, deadline=None)
@given(h=st.integers(3, 7), w=st.integers(3, 7), taps=st.sampled_from([1, 3, 5]), seed=st.integers(0, 100))
def test_blur_svd_is_zero_padded_separable_filtering(h, w, taps, seed):
    g = torch.Generator().manual_seed(seed)
    kernel = torch.rand(taps, generator=g, dtype=F64) + 0.1
    op = Blur(kernel / kernel.sum(), rtol=0.0).bind((2, h, w))
    x = torch.randn(2, 2, h, w, generator=g, dtype=F64)
    k2 = (op.kernels[0][:, None] * op.kernels[1][None, :])[None, None].expand(2, 1, taps, taps)
    filtered = torch.nn.functional.conv2d(x, k2, padding=taps // 2, groups=2)  # correlation, zero padding
    assert torch.allclose(op.A(x), filtered, atol=1e-12)
    check_svd(op, seed=seed)


@settings(max_examples=10, deadline=None)
@given(c=st.integers(2, 4), h=st.integers(1, 4), w=st.integers(1, 4), seed=st.integers(0, 100))
def test_grayscale_svd_is_channel_mean(c, h, w, seed):
    op = Grayscale(c).bind((c, h, w))
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=F64)
    assert torch.allclose(op.A(x), x.mean(1, keepdim=True), atol=1e-12)
    check_svd(op, seed=seed)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 6), d=st.integers(1, 6), seed=st.integers(0, 10_000), rank_deficient=st.booleans())
def test_dense_svd(m, d, seed, rank_deficient):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, d, generator=g, dtype=F64)
    if rank_deficient and m > 1:
        a[-1] = a[0]  # a repeated row: rank < min(m, d)
    op = Dense(a)
    check_svd(op, a, seed)


def test_dense_on_images():
    a = torch.randn(5, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    op = Dense(a, in_shape=(1, 4, 4))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.allclose(op.A(x), x.reshape(3, 16) @ a.T)
    assert op.A_pinv(op.A(x)).shape == (3, 1, 4, 4)


def test_per_row_masks_and_as_operator():
    y = torch.randn(2, 3, dtype=F64)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    op = as_operator(mask, y)
    assert isinstance(op, Mask) and op.observed.shape == (2, 3)
    assert torch.equal(op.coefficients(y), torch.where(mask, y, torch.zeros_like(y)))
    op = as_operator(Downsample(2), torch.zeros(4, 1, 2, 2))
    assert op.in_shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Downsample(0), "factor must be a positive integer"),
        (lambda: Downsample(3).bind((1, 8, 8)), "divisible by 3"),
        (lambda: Downsample(2).bind((8, 8)), "acts on images"),
        (lambda: Grayscale(3).bind((1, 8, 8)), "needs 3 channels"),
        (lambda: Blur(torch.ones(2)), "odd length"),
        (lambda: Dense(torch.ones(3)), "matrix of shape"),
        (lambda: Dense(torch.ones(2, 3), in_shape=(2, 2)), "has 4 elements"),
        (lambda: Mask(torch.ones(3)), "bool tensor"),
        (lambda: as_operator(torch.ones(4, dtype=torch.bool), torch.zeros(2, 3)), "does not broadcast"),
        (lambda: as_operator(Dense(torch.ones(2, 3)), torch.zeros(2, 3)), "produces"),
        (lambda: as_operator("mask", torch.zeros(2, 3)), "observation must be"),
        (lambda: as_operator(Mask(torch.ones(3, 3, dtype=torch.bool), per_row=True), torch.zeros(2, 3)), "3 rows"),
    ],
)
def test_bad_operators_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_zero_singular_value_declared_observed_is_refused():
    class Broken(Dense):
        @property
        def observed(self):
            return torch.ones(self.coef_shape, dtype=torch.bool)

    with pytest.raises(ValueError, match="singular value of 0"):
        as_operator(Broken(torch.tensor([[1.0, 0.0, 0.0]])), torch.zeros(1, 1))
