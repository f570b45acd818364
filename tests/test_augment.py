import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnlab.data import Augmentation, augment

X = jax.random.uniform(jax.random.key(0), (6, 12, 10, 2))


def test_no_augmentation_is_identity():
    np.testing.assert_array_equal(augment(Augmentation(), X, key=jax.random.key(1)), X)


@pytest.mark.parametrize(
    "aug",
    [
        Augmentation(shift=2),
        Augmentation(rotate=15),
        Augmentation(zoom=0.2),
        Augmentation(flip_h=True),
        Augmentation(crop=2),
        Augmentation(noise=0.1),
    ],
)
def test_keeps_shape_and_differs_per_key_and_sample(aug):
    a = augment(aug, X, key=jax.random.key(1))
    b = augment(aug, X, key=jax.random.key(2))
    assert a.shape == X.shape and a.dtype == X.dtype
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, augment(aug, X, key=jax.random.key(1)))


def test_integer_shift_moves_pixels():
    img = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
    out = augment(Augmentation(shift=3), img, key=jax.random.key(3))
    r, c = np.unravel_index(np.argmax(out[0, :, :, 0]), (9, 9))
    assert abs(r - 4) <= 3 and abs(c - 4) <= 3
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)  # bilinear weights of a moved pixel sum to 1


def test_flip_vertical_is_an_exact_mirror():
    out = augment(Augmentation(flip_v=True), X, key=jax.random.key(4))
    for a, x in zip(np.asarray(out), np.asarray(X), strict=True):
        assert np.array_equal(a, x) or np.array_equal(a, x[::-1])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="zoom: expected a relative change"):
        Augmentation(zoom=1.5)
    with pytest.raises(ValueError, match="shift: expected a number >= 0"):
        Augmentation(shift=-1)
    with pytest.raises(ValueError, match=r"x: expected images \[batch, height, width, channels\]"):
        augment(Augmentation(shift=1), X[0], key=jax.random.key(0))
