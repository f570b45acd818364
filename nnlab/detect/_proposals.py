"""R-CNN's region proposals by selective search (Uijlings et al. 2013): segment the image into
regions of similar colour with Felzenszwalb and Huttenlocher's graph-based method (scikit-image),
then merge neighbouring regions greedily, most similar first (colour, texture, size and fill),
and propose the bounding rectangle of every region of that hierarchy.

Runs on the host with NumPy; scikit-image comes with the optional extra: pip install -e ".[detect]".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._checks import check_positive

_COLOUR_BINS = 25
_TEXTURE_BINS = 8  # gradient orientations


def _skimage() -> tuple[Any, Any]:
    try:
        from skimage.filters import gaussian
        from skimage.segmentation import felzenszwalb
    except ImportError as e:
        raise ImportError('nnlab.detect\'s selective search needs scikit-image: pip install -e ".[detect]"') from e
    return felzenszwalb, gaussian


class _Region:
    """A region of the hierarchy: pixel count, bounding box, L1-normalised colour and texture histograms."""

    __slots__ = ("size", "box", "colour", "texture")

    def __init__(self, size: int, box: tuple[int, ...], colour: np.ndarray, texture: np.ndarray) -> None:
        self.size, self.box, self.colour, self.texture = size, box, colour, texture

    def merge(self, other: _Region) -> _Region:
        total = self.size + other.size
        box = (
            min(self.box[0], other.box[0]),
            min(self.box[1], other.box[1]),
            max(self.box[2], other.box[2]),
            max(self.box[3], other.box[3]),
        )
        colour = (self.colour * self.size + other.colour * other.size) / total
        texture = (self.texture * self.size + other.texture * other.size) / total
        return _Region(total, box, colour, texture)


def _box_area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _similarity(a: _Region, b: _Region, image_size: int) -> float:
    """Selective search's s = s_colour + s_texture + s_size + s_fill, each in [0, 1]: histogram
    intersections, how small the union is, and how well the two fill their joint bounding box."""
    colour = float(np.minimum(a.colour, b.colour).sum())
    texture = float(np.minimum(a.texture, b.texture).sum())
    size = 1.0 - (a.size + b.size) / image_size
    joint = (min(a.box[0], b.box[0]), min(a.box[1], b.box[1]), max(a.box[2], b.box[2]), max(a.box[3], b.box[3]))
    fill = 1.0 - (_box_area(joint) - a.size - b.size) / image_size
    return colour + texture + size + fill


def _initial_regions(
    labels: np.ndarray, gray: np.ndarray, orientation: np.ndarray, magnitude: np.ndarray
) -> tuple[dict[int, _Region], set[tuple[int, int]]]:
    """One `_Region` per segment label, and the pairs of labels that touch (4-neighbourhood)."""
    n = int(labels.max()) + 1
    flat = labels.reshape(-1)
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    colour_bin = np.minimum((gray.reshape(-1) * _COLOUR_BINS).astype(np.int64), _COLOUR_BINS - 1)
    colour = np.bincount(flat * _COLOUR_BINS + colour_bin, minlength=n * _COLOUR_BINS).reshape(n, _COLOUR_BINS)
    texture_bin = np.minimum((orientation.reshape(-1) / np.pi * _TEXTURE_BINS).astype(np.int64), _TEXTURE_BINS - 1)
    texture = np.bincount(
        flat * _TEXTURE_BINS + texture_bin, weights=magnitude.reshape(-1), minlength=n * _TEXTURE_BINS
    ).reshape(n, _TEXTURE_BINS)
    colour = colour / np.maximum(colour.sum(axis=1, keepdims=True), 1e-12)
    texture = texture / np.maximum(texture.sum(axis=1, keepdims=True), 1e-12)
    rows, cols = np.indices(labels.shape)
    boxes = np.stack(
        [np.full(n, labels.shape[1]), np.full(n, labels.shape[0]), np.zeros(n), np.zeros(n)], axis=1
    ).astype(np.int64)
    np.minimum.at(boxes[:, 0], flat, cols.reshape(-1))
    np.minimum.at(boxes[:, 1], flat, rows.reshape(-1))
    np.maximum.at(boxes[:, 2], flat, cols.reshape(-1) + 1)
    np.maximum.at(boxes[:, 3], flat, rows.reshape(-1) + 1)
    regions = {
        i: _Region(sizes[i], tuple(int(v) for v in boxes[i]), colour[i], texture[i]) for i in range(n) if sizes[i] > 0
    }
    pairs: set[tuple[int, int]] = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        touching = a != b
        lo, hi = np.minimum(a[touching], b[touching]), np.maximum(a[touching], b[touching])
        pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return regions, pairs


def _hierarchy(regions: dict, pairs: set, image_size: int) -> list[tuple[int, int, int, int]]:
    """The bounding box of every region, the initial ones and each merge of the most similar pair
    of neighbours, until one region is left."""
    boxes = [r.box for r in regions.values()]
    neighbours: dict[int, set[int]] = {i: set() for i in regions}
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    similarity = {(a, b): _similarity(regions[a], regions[b], image_size) for a, b in pairs}
    next_id = max(regions) + 1
    while similarity:
        (a, b), _ = max(similarity.items(), key=lambda item: item[1])
        merged = regions.pop(a).merge(regions.pop(b))
        boxes.append(merged.box)
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        for pair in [p for p in similarity if a in p or b in p]:
            del similarity[pair]
        regions[next_id] = merged
        neighbours[next_id] = around
        for n in around:
            neighbours[n] -= {a, b}
            neighbours[n].add(next_id)
            similarity[(n, next_id)] = _similarity(regions[n], merged, image_size)
        next_id += 1
    return boxes


def selective_search(
    image: ArrayLike,
    *,
    scales: Sequence[float] = (50.0, 100.0, 200.0),
    sigma: float = 0.8,
    min_size: int = 10,
    min_box: int = 4,
    max_proposals: int = 1000,
) -> np.ndarray:
    """Region proposals of one image [h, w] or [h, w, 1] (gray in [0, 1]) as boxes [n, 4] (x1, y1,
    x2, y2) in pixels, n <= max_proposals.

    For every Felzenszwalb `scale` (larger: larger segments) the image is segmented
    (`sigma`: Gaussian smoothing first, `min_size`: smallest segment in pixels) and the segments
    are merged hierarchically; the union of all strategies' boxes, without duplicates and without
    boxes narrower or lower than `min_box` pixels, in the order they were found (smallest regions of
    the first scale first).
    """
    felzenszwalb, gaussian = _skimage()
    gray = np.asarray(image, np.float64)
    if gray.ndim == 3 and gray.shape[-1] == 1:
        gray = gray[..., 0]
    if gray.ndim != 2:
        raise ValueError(f"image: expected a gray image [h, w] or [h, w, 1], got shape {np.shape(image)}")
    check_positive(max_proposals, name="max_proposals", integer=True)
    smooth = gaussian(gray, sigma=1.0)
    dy, dx = np.gradient(smooth)
    orientation = np.mod(np.arctan2(dy, dx), np.pi)
    magnitude = np.hypot(dx, dy)
    seen, out = set(), []
    for scale in scales:
        labels = felzenszwalb(gray, scale=scale, sigma=sigma, min_size=min_size)
        regions, pairs = _initial_regions(labels, gray, orientation, magnitude)
        for box in _hierarchy(regions, pairs, gray.size):
            if box not in seen and box[2] - box[0] >= min_box and box[3] - box[1] >= min_box:
                seen.add(box)
                out.append(box)
    return np.asarray(out[:max_proposals], np.float32).reshape(-1, 4)


def propose_regions(images: ArrayLike, *, max_proposals: int = 1000, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """`selective_search` for a batch of images [n, h, w, 1], padded to fixed shapes:
    boxes [n, P, 4] float32 and valid [n, P] bool, P = the largest count (at most max_proposals)."""
    found = [selective_search(im, max_proposals=max_proposals, **options) for im in np.asarray(images)]
    p = max(1, max(len(b) for b in found))
    boxes = np.zeros((len(found), p, 4), np.float32)
    valid = np.zeros((len(found), p), bool)
    for i, b in enumerate(found):
        boxes[i, : len(b)], valid[i, : len(b)] = b, True
    return boxes, valid
