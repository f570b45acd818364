import jax
import numpy as np
import pytest

import nnlab


def test_per_feature_statistics_use_n_minus_1():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [8.0, 5.0]], np.float32)
    norm = nnlab.data.fit_normalization(x)
    np.testing.assert_allclose(norm.mean, [4.0, 5.0])
    # sigma^2 = ((1-4)^2 + (3-4)^2 + (8-4)^2) / (3-1) = 13; the constant feature gets sigma 1
    np.testing.assert_allclose(norm.std, [np.sqrt(13.0), 1.0], rtol=1e-6)
    np.testing.assert_allclose(norm(x), (x - [4.0, 5.0]) / [np.sqrt(13.0), 1.0], rtol=1e-6)


def test_global_statistics_match_numpy():
    x = np.random.default_rng(0).normal(2.0, 3.0, (50, 4, 4, 1)).astype(np.float32)
    norm = nnlab.data.fit_normalization(x, per_feature=False)
    np.testing.assert_allclose(norm.mean, x.mean(dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(norm.std, x.std(ddof=1, dtype=np.float64), rtol=1e-6)


def test_normalization_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples"):
        nnlab.data.fit_normalization(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        nnlab.data.fit_normalization(np.array([[0.0], [np.inf]]))
    with pytest.raises(ValueError, match="std: expected a number > 0"):
        nnlab.data.fixed_normalization(0.1, 0.0)


def _data(n):
    return nnlab.data.make_dataset(np.arange(n, dtype=np.float32)[:, None], np.arange(n) % 3, num_classes=3)


def test_split_sizes_disjoint_and_deterministic():
    train, test = _data(100), _data(10)
    a = nnlab.data.train_val_test(train, test, n_val=20, key=jax.random.key(0))
    b = nnlab.data.train_val_test(train, test, n_val=20, key=jax.random.key(0))
    c = nnlab.data.train_val_test(train, test, n_val=20, key=jax.random.key(1))
    assert (a.train.n, a.val.n, a.test.n) == (80, 20, 10)
    seen = np.concatenate([a.train.x[:, 0], a.val.x[:, 0]])
    assert sorted(seen.tolist()) == list(range(100))
    np.testing.assert_array_equal(a.val.x, b.val.x)
    assert not np.array_equal(a.val.x, c.val.x)


def test_split_rejects_bad_size():
    with pytest.raises(ValueError, match=r"n_val: expected an integer in \[0, 9\]"):
        nnlab.data.train_val_test(_data(10), _data(2), n_val=10, key=jax.random.key(0))


@pytest.mark.parametrize("make", [nnlab.data.spirals, nnlab.data.blobs])
def test_synthetic_sets(make):
    d = make(90, key=jax.random.key(0))
    assert d.x.shape == (90, 2) and np.bincount(d.y).min() >= 30 - 1
    np.testing.assert_array_equal(d.x, make(90, key=jax.random.key(0)).x)


def test_xor_truth_table():
    d = nnlab.data.xor()
    assert [int(a) ^ int(b) for a, b in d.x] == d.y.tolist()
