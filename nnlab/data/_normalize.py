"""Input normalization, the lecture's way: subtract the training mean, divide by the
training standard deviation, per feature, and apply the very same numbers when classifying."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike
from jaxtyping import Float

from .._checks import check_inputs


class Normalization(NamedTuple):
    """x_norm = (x - mean) / std, broadcast over the batch axis.

    mean: [*feature_shape] (or [] for one value for all features)
    std:  same shape as mean, every entry > 0
    """

    mean: jnp.ndarray
    std: jnp.ndarray

    def __call__(self, x: Float[Array, "batch ..."]) -> Float[Array, "batch ..."]:
        """x: [batch, *feature_shape] -> same shape and dtype (the float32 statistics are cast to
        x's dtype, so a bfloat16 forward pass normalizes in bfloat16 and leaves them float32)."""
        shape = (1,) * (x.ndim - jnp.ndim(self.mean)) + jnp.shape(self.mean)
        mean = jnp.reshape(self.mean, shape).astype(x.dtype)
        return (x - mean) / jnp.reshape(self.std, shape).astype(x.dtype)


def fit_normalization(
    x: Float[ArrayLike, "n ..."], *, per_feature: bool = True, min_std: float = 1e-3
) -> Normalization:
    """Mean and standard deviation of the training inputs `x: [n, ...]`.

    mu_i = 1/N sum_n x_ni,   sigma_i^2 = 1/(N-1) sum_n (x_ni - mu_i)^2   (the lecture's N-1).
    A feature that (nearly) never changes, such as an MNIST border pixel, has sigma < min_std;
    its sigma is set to 1 so it is only centred, never blown up.
    With `per_feature=False` one mean and one sigma are taken over all features.
    """
    a = check_inputs(x, name="x").astype(np.float64)
    if a.shape[0] < 2:
        raise ValueError(f"x: expected at least 2 samples to estimate a variance with N-1, got {a.shape[0]}")
    axis = 0 if per_feature else None
    mean = a.mean(axis=axis)
    std = a.std(axis=axis, ddof=1)
    std = np.where(std < min_std, 1.0, std)
    return Normalization(jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))


def fixed_normalization(mean: float, std: float) -> Normalization:
    """One fixed mean and standard deviation for every feature (e.g. images: 0.1307, 0.3081)."""
    if not std > 0:
        raise ValueError(f"std: expected a number > 0, got {std!r}")
    return Normalization(jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))
