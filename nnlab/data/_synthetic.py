"""Small 2-D data sets made in code: the lecture's XOR, spirals and Gaussian blobs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_positive
from ._dataset import Dataset


def xor() -> Dataset:
    """The four XOR points: x: [4, 2] in {0, 1}, y: [4] = x0 XOR x1."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return Dataset(x, np.array([0, 1, 1, 0], np.int32), 2, "xor")


def spirals(n: int, *, key: jax.Array, classes: int = 2, noise: float = 0.1, turns: float = 1.5) -> Dataset:
    """`n` points on `classes` interleaved spirals (x: [n, 2]), with Gaussian noise of std `noise`."""
    check_positive(n, name="n", integer=True)
    check_positive(classes, name="classes", integer=True)
    k_t, k_noise = jax.random.split(key)
    y = jnp.arange(n) % classes
    t = jax.random.uniform(k_t, (n,), minval=0.05)
    angle = t * turns * 2 * jnp.pi + y.astype(jnp.float32) * (2 * jnp.pi / classes)
    x = jnp.stack([t * jnp.cos(angle), t * jnp.sin(angle)], axis=1)
    x = x + noise * jax.random.normal(k_noise, x.shape)
    return Dataset(np.asarray(x, np.float32), np.asarray(y, np.int32), classes, "spirals")


def blobs(n: int, *, key: jax.Array, centers: int = 3, spread: float = 0.5, radius: float = 2.0) -> Dataset:
    """`n` points in `centers` Gaussian blobs (std `spread`) placed on a circle of `radius`."""
    check_positive(n, name="n", integer=True)
    check_positive(centers, name="centers", integer=True)
    y = jnp.arange(n) % centers
    angle = y.astype(jnp.float32) * (2 * jnp.pi / centers)
    mu = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    x = mu + spread * jax.random.normal(key, (n, 2))
    return Dataset(np.asarray(x, np.float32), np.asarray(y, np.int32), centers, "blobs")
