"""Detection scenes made in code: MNIST digits (or Fashion-MNIST items) pasted onto a black canvas,
with a box, a label and a per-pixel instance mask for every object.

Coordinates are pixels, x to the right and y down; pixel (row r, column c) covers the square
[c, c + 1) x [r, r + 1), so a box (x1, y1, x2, y2) is tight around an object whose strokes occupy
columns x1 .. x2 - 1 and rows y1 .. y2 - 1 (x2 - x1 is its width in pixels).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from numpy.typing import ArrayLike

from .._checks import check_positive
from ._dataset import Dataset
from ._datasets import fashion_mnist, mnist

MNIST_CLASSES = tuple(str(d) for d in range(10))
"""The class names of MNIST scenes' objects: the digits '0' to '9', by label."""
FASHION_CLASSES = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")
"""The class names of Fashion-MNIST scenes' objects, by label."""


class Scenes(NamedTuple):
    """Detection scenes on the host, padded to `max_objects` per scene so that they batch and jit.

    images: [n, height, width, 1] float32 in [0, 1]
    boxes: [n, K, 4] float32 (x1, y1, x2, y2) in pixels, tight around each object's strokes
    labels: [n, K] int32 class in [0, num_classes) (0 where not valid)
    valid: [n, K] bool, True for the slots that hold an object
    instances: [n, height, width] uint8: 0 on the background, k + 1 on the strokes of object k
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    instances: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    name: str = "scenes"

    @property
    def n(self) -> int:
        """Number of scenes."""
        return int(self.images.shape[0])

    @property
    def max_objects(self) -> int:
        """K, the padded number of object slots per scene."""
        return int(self.boxes.shape[1])

    def masks(self) -> np.ndarray:
        """Per-object binary masks [n, K, height, width] bool (all False in empty slots)."""
        ids = np.arange(1, self.max_objects + 1, dtype=np.uint8)
        return self.instances[:, None, :, :] == ids[None, :, None, None]

    def targets(self) -> dict[str, np.ndarray]:
        """The fixed-shape targets a detector's objective takes: boxes, labels, valid, instances."""
        return {"boxes": self.boxes, "labels": self.labels, "valid": self.valid, "instances": self.instances}

    def dataset(self) -> Dataset:
        """The scenes as a `Dataset` for `nnlab.fit`: x = images, y = the `targets()` pytree."""
        # y is a pytree of per-scene arrays, which fit maps over (Dataset annotates class labels)
        return Dataset(self.images, self.targets(), self.num_classes, self.name)  # type: ignore[arg-type]

    def take(self, n: int) -> Scenes:
        """The first `n` scenes (all when n >= len)."""
        return self.subset(np.arange(min(n, self.n)))

    def subset(self, indices: ArrayLike) -> Scenes:
        """The scenes at `indices` (an integer array)."""
        idx = np.asarray(indices)
        return self._replace(
            images=self.images[idx],
            boxes=self.boxes[idx],
            labels=self.labels[idx],
            valid=self.valid[idx],
            instances=self.instances[idx],
        )


def _resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resampling with pixel centres at half-integers (edges clamped): [h, w] -> [out_h, out_w]."""
    h, w = img.shape

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float32)

    r0, r1, fr = axis(h, out_h)
    c0, c1, fc = axis(w, out_w)
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bottom = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def _object_patch(img: np.ndarray, size: float, threshold: float) -> np.ndarray:
    """The item cropped to its strokes (pixels >= threshold), scaled so its longer side is `size` px,
    with the pixels below `threshold` set to zero: [h, w] float32."""
    rows, cols = np.nonzero(img >= threshold)
    crop = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    f = size / max(crop.shape)
    out = _resize(crop, max(1, round(crop.shape[0] * f)), max(1, round(crop.shape[1] * f)))
    return np.where(out >= threshold, out, np.float32(0)).astype(np.float32)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _scene_rngs(key: jax.Array, n: int) -> list[np.random.Generator]:
    """One NumPy generator per scene, seeded from the key's bits and the scene's index, so scene i
    does not depend on n (host-side draws: rejection sampling is a loop, not an array program)."""
    words = [int(w) for w in np.asarray(jax.random.key_data(key)).ravel()]
    return [np.random.default_rng(np.random.SeedSequence(words, spawn_key=(i,))) for i in range(n)]


def make_scenes(
    source: Dataset,
    n: int,
    *,
    key: jax.Array,
    canvas: int | tuple[int, int] = 128,
    min_objects: int = 1,
    max_objects: int = 5,
    min_size: float = 20.0,
    max_size: float = 60.0,
    max_iou: float = 0.2,
    threshold: float = 0.3,
    tries: int = 20,
    class_names: tuple[str, ...] | None = None,
    name: str = "scenes",
) -> Scenes:
    """`n` scenes of items from `source` (x: [m, 28, 28, 1] in [0, 1]) on a black canvas.

    Each scene draws a count in [min_objects, max_objects], then places items one after another:
    a random item, scaled so that the longer side of its strokes is uniform in [min_size, max_size]
    pixels, at a uniform random position inside the canvas. A placement is accepted when its box
    overlaps every box already placed by IoU <= max_iou and its strokes share no pixel with theirs
    (so the instance map is exact); a scene tries `tries` random placements per object it wants,
    and one whose canvas is too full keeps fewer objects. Strokes are the pixels
    >= threshold after scaling; fainter pixels are set to zero, so the image is exactly the sum
    of the objects and each box is tight around everything drawn of its object.
    Deterministic from `key`: scene i depends only on the key's bits and i (NumPy generators
    seeded from both draw on the host).
    """
    check_positive(n, name="n", integer=True)
    height, width = (canvas, canvas) if isinstance(canvas, int) else tuple(canvas)
    check_positive(height, name="canvas height", integer=True)
    check_positive(width, name="canvas width", integer=True)
    check_positive(min_objects, name="min_objects", integer=True)
    check_positive(tries, name="tries", integer=True)
    if max_objects < min_objects or max_objects > 255:
        raise ValueError(f"max_objects: expected an integer in [min_objects={min_objects}, 255], got {max_objects!r}")
    if not 0 < min_size <= max_size <= min(height, width):
        raise ValueError(
            f"min_size, max_size: expected 0 < min_size <= max_size <= canvas side {min(height, width)}, "
            f"got {min_size!r}, {max_size!r}"
        )
    if not 0 < threshold < 1:
        raise ValueError(f"threshold: expected a gray level in (0, 1), got {threshold!r}")
    if source.x.ndim != 4 or source.x.shape[-1] != 1:
        raise ValueError(f"source: expected gray images x: [m, h, w, 1], got shape {source.x.shape}")
    names = tuple(class_names) if class_names is not None else tuple(str(c) for c in range(source.num_classes))
    if len(names) != source.num_classes:
        raise ValueError(f"class_names: expected {source.num_classes} names, got {len(names)}")

    images = np.zeros((n, height, width, 1), np.float32)
    boxes = np.zeros((n, max_objects, 4), np.float32)
    labels = np.zeros((n, max_objects), np.int32)
    valid = np.zeros((n, max_objects), bool)
    instances = np.zeros((n, height, width), np.uint8)
    for i, rng in enumerate(_scene_rngs(key, n)):
        count, k = int(rng.integers(min_objects, max_objects + 1)), 0
        for _ in range(count * tries):
            if k == count:
                break
            index, (u_size, u_y, u_x) = int(rng.integers(source.n)), rng.random(3)
            item = source.x[index, :, :, 0]
            if not np.any(item >= threshold):
                continue
            patch = _object_patch(item, min_size + u_size * (max_size - min_size), threshold)
            ph, pw = patch.shape
            y, x = int(u_y * (height - ph + 1)), int(u_x * (width - pw + 1))
            strokes = patch > 0
            rows, cols = np.nonzero(strokes)
            box = np.array([x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1], np.float32)
            region = instances[i, y : y + ph, x : x + pw]
            if np.any(region[strokes]) or any(_box_iou(box, b) > max_iou for b in boxes[i, :k]):
                continue
            region[strokes] = k + 1
            images[i, y : y + ph, x : x + pw, 0] += patch
            boxes[i, k], labels[i, k], valid[i, k] = box, source.y[index], True
            k += 1
    return Scenes(images, boxes, labels, valid, instances, source.num_classes, names, name)


def mnist_scenes(
    n: int, *, key: jax.Array, split: str = "train", data_dir: str | os.PathLike | None = None, **options: Any
) -> Scenes:
    """`make_scenes` from MNIST's training digits (split='train') or its test digits (split='test'),
    so that test scenes share no digit image with training scenes. Options as `make_scenes`."""
    return _scenes_from(mnist, "mnist", MNIST_CLASSES, n, key, split, data_dir, options)


def fashion_mnist_scenes(
    n: int, *, key: jax.Array, split: str = "train", data_dir: str | os.PathLike | None = None, **options: Any
) -> Scenes:
    """`make_scenes` from Fashion-MNIST items (gray threshold 0.05 by default: clothing has dark
    regions inside the object). Options as `make_scenes`."""
    options.setdefault("threshold", 0.05)
    return _scenes_from(fashion_mnist, "fashion-mnist", FASHION_CLASSES, n, key, split, data_dir, options)


def _scenes_from(
    loader: Callable[..., tuple[Dataset, Dataset]],
    name: str,
    classes: tuple[str, ...],
    n: int,
    key: jax.Array,
    split: str,
    data_dir: str | os.PathLike | None,
    options: dict[str, Any],
) -> Scenes:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    train, test = loader(data_dir)
    source = train if split == "train" else test
    return make_scenes(source, n, key=key, class_names=classes, name=f"{name}-scenes-{split}", **options)
