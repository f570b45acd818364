"""Detection scenes: boxes, labels and masks agree with the items drawn; determinism; test digits only."""

import jax
import numpy as np
import pytest

from nnlab.data import Dataset, make_scenes, mnist_scenes, write_idx


def _rectangles(values=(0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), height=16, width=8):
    """Class k's item: a height x width rectangle of gray value values[k] centred on a 28 x 28 canvas,
    so every pixel of a scaled item has exactly that value and its label can be read off the image."""
    x = np.zeros((len(values), 28, 28, 1), np.float32)
    top, left = (28 - height) // 2, (28 - width) // 2
    for k, v in enumerate(values):
        x[k, top : top + height, left : left + width] = v
    return Dataset(x, np.arange(len(values), dtype=np.int32), len(values), "rectangles"), np.asarray(values, np.float32)


def _check_objects(s, threshold):
    masks = s.masks()
    for i in range(s.n):
        assert 1 <= s.valid[i].sum() <= s.max_objects
        assert not s.valid[i, s.valid[i].sum() :].any()  # objects fill the first slots
        union = masks[i].any(axis=0)
        np.testing.assert_array_equal(s.images[i, :, :, 0] > 0, union)  # drawn pixels are exactly the strokes
        assert np.all(s.images[i, :, :, 0][union] >= threshold)
        assert masks[i].sum(axis=0).max() <= 1  # strokes of different objects never share a pixel
        for k in range(s.max_objects):
            if not s.valid[i, k]:
                assert not masks[i, k].any()
                continue
            rows, cols = np.nonzero(masks[i, k])
            np.testing.assert_array_equal(s.boxes[i, k], [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


def test_rectangles_give_boxes_labels_and_masks_that_match():
    source, values = _rectangles()
    s = make_scenes(source, 24, key=jax.random.key(0), canvas=96, min_size=20, max_size=40, max_objects=4)
    _check_objects(s, 0.3)
    for i in range(s.n):
        for k in np.nonzero(s.valid[i])[0]:
            mask = s.masks()[i, k]
            np.testing.assert_allclose(s.images[i, :, :, 0][mask], values[s.labels[i, k]], rtol=1e-6)
            w, h = s.boxes[i, k, 2:] - s.boxes[i, k, :2]
            assert 20 <= h <= 40 and abs(h / w - 2) < 0.25  # the longer side drawn in [min_size, max_size]
            assert mask.sum() == w * h  # a rectangle fills its box


def test_mnist_scenes_boxes_masks_and_overlap(mnist_data):
    _, test = mnist_data
    s = make_scenes(test, 40, key=jax.random.key(1), max_iou=0.2)
    _check_objects(s, 0.3)
    longer = np.maximum(s.boxes[..., 2] - s.boxes[..., 0], s.boxes[..., 3] - s.boxes[..., 1])[s.valid]
    assert longer.max() <= 60 and longer.min() >= 18 and longer.mean() > 30
    counts = s.valid.sum(axis=1)
    assert counts.min() >= 1 and counts.max() == 5 and len(set(counts.tolist())) >= 4
    for i in range(s.n):
        b = s.boxes[i][s.valid[i]]
        lo, hi = np.maximum(b[:, None, :2], b[None, :, :2]), np.minimum(b[:, None, 2:], b[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = np.prod(b[:, 2:] - b[:, :2], axis=-1)
        iou = inter / (area[:, None] + area[None, :] - inter)
        assert np.all(iou[~np.eye(len(b), dtype=bool)] <= 0.2 + 1e-6)


def test_scenes_are_deterministic_and_prefix_stable(mnist_data):
    _, test = mnist_data
    a = make_scenes(test, 6, key=jax.random.key(2))
    b = make_scenes(test, 6, key=jax.random.key(2))
    c = make_scenes(test, 3, key=jax.random.key(2))
    d = make_scenes(test, 6, key=jax.random.key(3))
    for field in ("images", "boxes", "labels", "valid", "instances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        np.testing.assert_array_equal(getattr(a, field)[:3], getattr(c, field))
    assert not np.array_equal(a.images, d.images)
    t = a.targets()
    assert t["boxes"].shape == (6, 5, 4) and t["instances"].shape == (6, 128, 128)
    sub = a.subset([4, 1])
    np.testing.assert_array_equal(sub.boxes, a.boxes[[4, 1]])
    np.testing.assert_array_equal(a.take(2).instances, a.instances[:2])


def test_test_scenes_use_only_test_digits(tmp_path):
    """Fake MNIST files whose training digits are all gray 200 and test digits gray 100."""
    for split, gray, n in (("train", 200, 30), ("t10k", 100, 20)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 10:18] = gray
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    test = mnist_scenes(8, key=jax.random.key(4), split="test", data_dir=tmp_path)
    train = mnist_scenes(8, key=jax.random.key(4), split="train", data_dir=tmp_path)
    np.testing.assert_allclose(test.images[test.images > 0], 100 / 255, rtol=1e-5)
    np.testing.assert_allclose(train.images[train.images > 0], 200 / 255, rtol=1e-5)
    assert test.name == "mnist-scenes-test" and test.class_names[3] == "3"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_size": 0}, "min_size"),
        ({"max_size": 200}, "max_size"),
        ({"max_objects": 0}, "max_objects"),
        ({"threshold": 1.5}, "threshold"),
        ({"canvas": 0}, "canvas"),
    ],
)
def test_bad_scene_arguments_are_named(kwargs, message):
    source, _ = _rectangles()
    with pytest.raises(ValueError, match=message):
        make_scenes(source, 2, key=jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match="split"):
        mnist_scenes(2, key=jax.random.key(0), split="validation")


def test_fashion_mnist_scenes_match_their_items():
    from pathlib import Path

    from nnlab.data import FASHION_CLASSES, fashion_mnist_scenes

    if not (Path("/usr/share/datasets/fashion-mnist") / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST (Debian's dataset-fashion-mnist) is not installed")
    s = fashion_mnist_scenes(10, key=jax.random.key(8), split="test", data_dir="/usr/share/datasets/fashion-mnist")
    _check_objects(s, 0.05)
    assert s.class_names == FASHION_CLASSES and s.name == "fashion-mnist-scenes-test"
