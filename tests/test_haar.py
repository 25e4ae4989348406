"""Orthonormal n-level Haar transform and the packing [a_n, d_n, ..., d_1]."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smcdiff.msdiff.haar import HaarPacking, haar, haar_step, inverse_haar, inverse_haar_step


@st.composite
def images_and_levels(draw):
    """A valid (x, n): spatial sizes are multiples of 2^n, n in 0..4, a few channels and rows."""
    n = draw(st.integers(0, 4))
    h = draw(st.integers(1, 3)) * 2**n
    w = draw(st.integers(1, 3)) * 2**n
    c = draw(st.integers(1, 3))
    b = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    x = torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x, n


@given(images_and_levels())
def test_inverse_is_exact_and_norm_is_preserved(case):
    x, n = case
    a, details = haar(x, n)
    assert torch.allclose(inverse_haar(a, details), x, atol=1e-12)
    packing = HaarPacking(x.shape[1], x.shape[2], x.shape[3], n)
    c = packing.forward(x)
    assert torch.allclose(packing.inverse(c), x, atol=1e-12)
    assert torch.allclose(c.norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-12)


@given(images_and_levels())
def test_shapes_and_packing_layout(case):
    x, n = case
    b, ch, h, w = x.shape
    a, details = haar(x, n)
    assert a.shape == (b, ch, h >> n, w >> n)
    assert [tuple(d.shape) for d in details] == [(b, ch, 3, h >> i, w >> i) for i in range(n, 0, -1)]
    packing = HaarPacking(ch, h, w, n)
    c = packing.forward(x)
    assert c.shape == (b, packing.dim) and packing.dim == ch * h * w
    assert sum(packing.group_sizes()) == packing.dim
    assert torch.equal(c, torch.cat([a.flatten(1)] + [d.flatten(1) for d in details], 1))
    a2, d2 = packing.unpack(c)
    assert torch.equal(a2, a) and all(torch.equal(u, v) for u, v in zip(d2, details))
    levels = packing.group_level()
    assert levels.shape == (packing.dim,)
    assert (levels[: a.flatten(1).shape[1]] == n + 1).all()


@given(images_and_levels())
def test_prefix_c_i_is_the_transform_of_the_coarser_image(case):
    """c_i = [a_n, d_n, ..., d_i] is the (n + 1 - i)-level packing of a_{i-1}, an image at H / 2^(i-1)."""
    x, n = case
    packing = HaarPacking(x.shape[1], x.shape[2], x.shape[3], n)
    c = packing.forward(x)
    approx = x
    for i in range(1, n + 2):
        d_i = packing.scale_dim(i)
        assert packing.scale_shape(i) == tuple(approx.shape[1:])
        assert torch.allclose(packing.to_image(c[:, :d_i], i), approx, atol=1e-12)
        assert torch.allclose(packing.from_image(approx, i), c[:, :d_i], atol=1e-12)
        if i <= n:
            approx = haar_step(approx)[0]


def test_one_level_closed_form():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).reshape(1, 1, 2, 2)
    a, d = haar_step(x)
    assert torch.allclose(a, torch.tensor(5.0, dtype=torch.float64).reshape(1, 1, 1, 1))
    # (x00 - x01 + x10 - x11)/2, (x00 + x01 - x10 - x11)/2, (x00 - x01 - x10 + x11)/2
    assert torch.allclose(d.flatten(), torch.tensor([-1.0, -2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(inverse_haar_step(a, d), x)


def test_constant_image_has_no_details():
    x = torch.full((2, 3, 8, 8), 0.5)
    a, details = haar(x, 3)
    assert torch.allclose(a, torch.full_like(a, 0.5 * 8))  # 2^n times the mean, by orthonormality
    assert all(torch.count_nonzero(d) == 0 for d in details)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: haar(torch.randn(1, 1, 6, 8), 2), "x"),
        (lambda: haar(torch.randn(1, 8, 8), 1), "x"),
        (lambda: haar(torch.randn(1, 1, 8, 8), -1), "levels"),
        (lambda: haar(torch.zeros(1, 1, 8, 8, dtype=torch.long), 1), "x"),
        (lambda: inverse_haar_step(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2, 2)), "d"),
        (lambda: HaarPacking(1, 12, 8, 3), "height"),
        (lambda: HaarPacking(0, 8, 8, 1), "channels"),
        (lambda: HaarPacking(1, 8, 8, 2).scale_dim(4), "scale"),
        (lambda: HaarPacking(1, 8, 8, 2).unpack(torch.randn(2, 63)), "c"),
        (lambda: HaarPacking(1, 8, 8, 2).from_image(torch.randn(2, 1, 8, 8), 2), "x"),
    ],
)
def test_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
