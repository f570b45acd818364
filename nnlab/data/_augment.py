"""Augmentation on the fly: pure jnp, one key per sample, run inside the jitted training step
so every batch sees fresh variants (the lecture: "for large data sets, augment anew each time")."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from .._checks import check_non_negative


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What to vary, per sample, for images x: [batch, height, width, channels].

    shift: max translation in pixels (uniform in [-shift, shift], each axis)
    rotate: max rotation in degrees; zoom: max relative scale change (0.1: 0.9x to 1.1x)
    flip_h / flip_v: mirror left-right / upside-down with probability 1/2 (off for digits:
      a real 6 does not stand on its head)
    crop: pad by `crop` pixels, then cut a random window of the original size
    noise: standard deviation of additive Gaussian noise
    """

    shift: float = 0.0
    rotate: float = 0.0
    zoom: float = 0.0
    flip_h: bool = False
    flip_v: bool = False
    crop: int = 0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("shift", "rotate", "zoom", "crop", "noise"):
            check_non_negative(getattr(self, name), name=name)
        if self.zoom >= 1:
            raise ValueError(f"zoom: expected a relative change in [0, 1), got {self.zoom!r}")

    @property
    def active(self) -> bool:
        """Whether any transform is switched on (False for the default Augmentation())."""
        return self != Augmentation()


def _warp(key: jax.Array, image: jnp.ndarray, aug: Augmentation) -> jnp.ndarray:
    """One image [h, w, c] moved, rotated and zoomed about its centre (bilinear, zeros outside)."""
    h, w, _ = image.shape
    k_shift, k_rot, k_zoom = jax.random.split(key, 3)
    t = jax.random.uniform(k_shift, (2,), minval=-aug.shift, maxval=aug.shift)
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-aug.rotate, maxval=aug.rotate))
    scale = jax.random.uniform(k_zoom, (), minval=1 - aug.zoom, maxval=1 + aug.zoom)
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    r, c = rows - (h - 1) / 2 - t[0], cols - (w - 1) / 2 - t[1]
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    src_r = cos * r - sin * c + (h - 1) / 2
    src_c = sin * r + cos * c + (w - 1) / 2
    channels = jnp.moveaxis(image, -1, 0)
    out = jax.vmap(lambda ch: map_coordinates(ch, [src_r, src_c], order=1, mode="constant", cval=0.0))(channels)
    return jnp.moveaxis(out, 0, -1)


def _crop(key: jax.Array, image: jnp.ndarray, pad: int) -> jnp.ndarray:
    h, w, c = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    start = jax.random.randint(key, (2,), 0, 2 * pad + 1)
    return jax.lax.dynamic_slice(padded, (start[0], start[1], 0), (h, w, c))


def _augment_one(key: jax.Array, image: jnp.ndarray, aug: Augmentation) -> jnp.ndarray:
    k_warp, k_crop, k_h, k_v, k_noise = jax.random.split(key, 5)
    if aug.shift or aug.rotate or aug.zoom:
        image = _warp(k_warp, image, aug)
    if aug.crop:
        image = _crop(k_crop, image, aug.crop)
    if aug.flip_h:
        image = jnp.where(jax.random.bernoulli(k_h), image[:, ::-1], image)
    if aug.flip_v:
        image = jnp.where(jax.random.bernoulli(k_v), image[::-1], image)
    if aug.noise:
        image = image + aug.noise * jax.random.normal(k_noise, image.shape, image.dtype)
    return image


def augment(aug: Augmentation, x: jnp.ndarray, *, key: jax.Array) -> jnp.ndarray:
    """A fresh random variant of every image in x: [batch, height, width, channels], one key per sample."""
    if x.ndim != 4:
        raise ValueError(f"x: expected images [batch, height, width, channels], got shape {x.shape}")
    if not aug.active:
        return x
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(_augment_one, in_axes=(0, 0, None))(keys, x, aug)
