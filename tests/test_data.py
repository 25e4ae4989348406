"""The digits data: split sizes, value range, determinism and labels."""

import numpy as np
import pytest
import torch

from smcdiff.data import N_TEST, load_digits_images, load_digits_labels


@pytest.mark.parametrize(("split", "n"), [("train", 1797 - N_TEST), ("test", N_TEST), ("all", 1797)])
def test_split_sizes_shapes_and_range(split, n):
    x = load_digits_images(split)
    assert x.shape == (n, 1, 8, 8)
    assert x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    # Raw values are integers 0..16, so (x + 1) * 8 is integral.
    assert torch.equal((x + 1) * 8, torch.round((x + 1) * 8))


def test_splits_partition_all_and_are_deterministic():
    x_all, y_all = load_digits_images("all", return_labels=True)
    x_train, y_train = load_digits_images("train", return_labels=True)
    x_test, y_test = load_digits_images("test", return_labels=True)
    assert N_TEST == 297
    # Every image of "all" appears in exactly one split (the rows are distinct up to duplicates in
    # the raw data, so compare multisets of rows).
    rows = lambda x: sorted(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    assert rows(torch.cat([x_train, x_test])) == rows(x_all)
    assert sorted(torch.cat([y_train, y_test]).tolist()) == sorted(y_all.tolist())
    # The split is the fixed RandomState(0) permutation, the same on every call.
    perm = np.random.RandomState(0).permutation(1797)
    assert torch.equal(x_test, x_all[np.sort(perm[:N_TEST])])
    assert torch.equal(load_digits_images("test"), x_test)


def test_labels_match_images_and_cover_all_digits():
    x, y = load_digits_images("test", return_labels=True)
    assert torch.equal(load_digits_labels("test"), y)
    assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
    assert set(load_digits_labels("train").tolist()) == set(range(10))


def test_returned_tensors_do_not_alias_the_cache():
    x = load_digits_images("train")
    x.zero_()
    assert load_digits_images("train").min() == -1.0


@pytest.mark.parametrize("bad", ["val", "Train", ""])
def test_bad_split_raises(bad):
    with pytest.raises(ValueError, match="split"):
        load_digits_images(bad)
    with pytest.raises(ValueError, match="split"):
        load_digits_labels(bad)
