"""The COCOeval bridge, mask pasting, selective-search proposals and the drawing of detections."""

import builtins
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnlab.detect import (
    coco_evaluate,
    coco_ground_truth,
    coco_results,
    coco_scores,
    draw_detections,
    paste_masks,
    propose_regions,
    selective_search,
)


@pytest.fixture(scope="module")
def test_scenes(mnist_data):
    from nnlab.data import MNIST_CLASSES, make_scenes

    return make_scenes(mnist_data[1], 12, key=jax.random.key(7), class_names=MNIST_CLASSES)


def _gt(s, masks=True):
    return coco_ground_truth(
        s.boxes, s.labels, s.valid, height=128, width=128, masks=s.masks() if masks else None, class_names=s.class_names
    )


def test_perfect_predictions_score_one_and_shifted_boxes_lower(test_scenes):
    s = test_scenes
    scores = np.ones(s.valid.shape, np.float32)
    perfect = coco_evaluate(_gt(s), coco_results(s.boxes, scores, s.labels, s.valid))
    assert perfect["map"] == pytest.approx(1.0) and perfect["map50"] == pytest.approx(1.0)
    masks = coco_evaluate(_gt(s), coco_results(s.boxes, scores, s.labels, s.valid, masks=s.masks()), iou_type="segm")
    assert masks["map"] == pytest.approx(1.0)
    width = s.boxes[..., 2] - s.boxes[..., 0]
    previous = 1.0
    for fraction in (0.1, 0.25, 0.45):  # shift right by a fraction of the width: IoU (1 - f) / (1 + f)
        shifted = s.boxes + (fraction * width)[..., None] * np.array([1, 0, 1, 0], np.float32)
        got = coco_evaluate(_gt(s), coco_results(shifted, scores, s.labels, s.valid))
        assert got["map"] < previous
        previous = got["map"]
        # every shifted box still overlaps its object by IoU (1 - f) / (1 + f): above 0.5 up to f = 1/3
        assert got["map50"] == pytest.approx(1.0 if fraction < 1 / 3 else 0.0)
    wrong_class = coco_evaluate(_gt(s), coco_results(s.boxes, scores, (s.labels + 1) % 10, s.valid))
    assert wrong_class["map50"] == pytest.approx(0.0)


def test_coco_scores_of_perfect_detections_with_masks(test_scenes):
    from nnlab.detect import Detections

    s = test_scenes
    masks = s.masks()
    grid = np.zeros((*s.valid.shape, 8, 8), np.float32)  # each mask sampled on its box's 8 x 8 grid
    for i, k in zip(*np.nonzero(s.valid), strict=True):
        x1, y1, x2, y2 = s.boxes[i, k]
        rows = (y1 + (np.arange(8) + 0.5) * (y2 - y1) / 8).astype(int)
        cols = (x1 + (np.arange(8) + 0.5) * (x2 - x1) / 8).astype(int)
        grid[i, k] = masks[i, k][np.ix_(rows, cols)]
    detections = Detections(
        jnp.asarray(s.boxes), jnp.ones(s.valid.shape), jnp.asarray(s.labels), jnp.asarray(s.valid), jnp.asarray(grid)
    )
    scores = coco_scores(
        s.boxes, s.labels, s.valid, detections, height=128, width=128, gt_masks=masks, class_names=s.class_names
    )
    assert scores["bbox"]["map"] == pytest.approx(1.0)
    # an 8 x 8 grid pasted back is close to the strokes (IoU > 0.5), not exact (IoU < 0.95)
    assert scores["segm"]["map50"] > 0.5 and scores["segm"]["map"] < 1.0
    assert "segm" not in coco_scores(s.boxes, s.labels, s.valid, detections, height=128, width=128)


def test_ranking_matters_and_empty_results_score_zero(test_scenes):
    s = test_scenes
    # one false positive per image, ranked above every true box, halves precision at the top
    fp = np.concatenate([s.boxes, np.tile(np.array([[[0, 0, 5, 5]]], np.float32), (s.n, 1, 1))], axis=1)
    labels = np.concatenate([s.labels, s.labels[:, :1]], axis=1)
    valid = np.concatenate([s.valid, np.ones((s.n, 1), bool)], axis=1)
    scores = np.concatenate([np.full(s.valid.shape, 0.5), np.ones((s.n, 1))], axis=1)
    got = coco_evaluate(_gt(s, masks=False), coco_results(fp, scores, labels, valid))
    assert 0.3 < got["map50"] < 1.0
    scores[:, -1] = 0.1  # ranked last, the false positives cost nothing
    assert coco_evaluate(_gt(s, masks=False), coco_results(fp, scores, labels, valid))["map50"] == pytest.approx(1.0)
    assert coco_evaluate(_gt(s, masks=False), [])["map"] == 0.0
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate(_gt(s), [], iou_type="keypoints")


# pycocotools 2.0.11's decode warns under NumPy 2 (its own array wrapper, not nnlab's code)
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
def test_ground_truth_dict_and_rle_round_trip(test_scenes):
    from pycocotools import mask as mask_utils

    s = test_scenes
    gt = _gt(s)
    assert [im["id"] for im in gt["images"]] == list(range(1, s.n + 1))
    assert len(gt["annotations"]) == s.valid.sum() and gt["categories"][0] == {"id": 1, "name": "0"}
    first = gt["annotations"][0]
    x1, y1, x2, y2 = s.boxes[0, 0]
    assert first["bbox"] == [x1, y1, x2 - x1, y2 - y1] and first["category_id"] == s.labels[0, 0] + 1
    decoded = mask_utils.decode(
        {"size": first["segmentation"]["size"], "counts": first["segmentation"]["counts"].encode("ascii")}
    )
    np.testing.assert_array_equal(decoded.astype(bool), s.masks()[0, 0])
    assert first["area"] == s.masks()[0, 0].sum()


def test_paste_masks_against_numpy():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 3, 4, 4)).astype(np.float32)
    boxes = np.array(
        [[[2, 3, 10, 9], [0, 0, 16, 16], [5.5, 1.2, 13.7, 14.1]], [[-4, -4, 6, 6], [8, 8, 8, 12], [1, 1, 3, 3]]],
        np.float32,
    )
    got = np.asarray(paste_masks(jnp.asarray(masks), jnp.asarray(boxes), 16, 16))
    assert got.shape == (2, 3, 16, 16)
    for i in range(2):
        for d in range(3):
            x1, y1, x2, y2 = boxes[i, d]
            expected = np.zeros((16, 16), bool)
            for r in range(16):
                for c in range(16):
                    cy, cx = r + 0.5, c + 0.5
                    if not (x1 <= cx < x2 and y1 <= cy < y2):
                        continue
                    u = np.clip((cx - x1) / (x2 - x1) * 4 - 0.5, 0, 3)
                    v = np.clip((cy - y1) / (y2 - y1) * 4 - 0.5, 0, 3)
                    u0, v0 = int(np.floor(u)), int(np.floor(v))
                    u1, v1 = min(u0 + 1, 3), min(v0 + 1, 3)
                    fu, fv = u - u0, v - v0
                    m = masks[i, d]
                    value = (1 - fv) * ((1 - fu) * m[v0, u0] + fu * m[v0, u1]) + fv * (
                        (1 - fu) * m[v1, u0] + fu * m[v1, u1]
                    )
                    expected[r, c] = value >= 0.5
            np.testing.assert_array_equal(got[i, d], expected)
    ones = paste_masks(jnp.ones((1, 4, 4)), jnp.array([[2, 4, 6, 12]], jnp.float32), 16, 16)
    np.testing.assert_array_equal(np.nonzero(np.asarray(ones[0]).any(axis=0))[0], [2, 3, 4, 5])


def test_selective_search_proposals_cover_the_digits(test_scenes):
    s = test_scenes
    boxes, valid = propose_regions(s.images, scales=(100.0,), max_proposals=300)
    assert boxes.shape[0] == s.n and valid.any(axis=1).all()
    hits = 0
    for i in range(s.n):
        gt, p = s.boxes[i][s.valid[i]], boxes[i][valid[i]]
        lo, hi = np.maximum(gt[:, None, :2], p[None, :, :2]), np.minimum(gt[:, None, 2:], p[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
        area = lambda b: np.prod(b[:, 2:] - b[:, :2], axis=-1)  # noqa: E731
        iou = inter / (area(gt)[:, None] + area(p)[None, :] - inter)
        hits += int((iou.max(axis=1) >= 0.5).sum())
    assert hits / s.valid.sum() >= 0.9
    one = selective_search(s.images[0], scales=(100.0,), min_box=4)
    assert np.all(one[:, 2:] - one[:, :2] >= 4) and len({tuple(b) for b in one.tolist()}) == len(one)
    np.testing.assert_array_equal(one, boxes[0][valid[0]])
    with pytest.raises(ValueError, match="image"):
        selective_search(np.zeros((2, 8, 8, 1)))


def test_missing_extras_name_the_install_command(monkeypatch, test_scenes):
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith(("pycocotools", "skimage")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    for module in [m for m in sys.modules if m.startswith(("pycocotools", "skimage"))]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[detect\]"'):
        coco_evaluate(
            _gt(test_scenes, masks=False), [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]
        )
    with pytest.raises(ImportError, match=r'pip install -e "\.\[detect\]"'):
        selective_search(np.zeros((8, 8)))


def test_draw_detections_writes_a_png(tmp_path, test_scenes):
    from matplotlib.image import imread

    s = test_scenes.take(4)
    path = tmp_path / "scenes.png"
    draw_detections(
        path,
        s.images,
        s.boxes,
        s.labels,
        s.valid,
        scores=np.full(s.valid.shape, 0.9),
        masks=s.masks(),
        class_names=s.class_names,
        gt_boxes=s.boxes,
        gt_valid=s.valid,
        columns=2,
        title="four scenes",
    )
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 200
    colours = image[..., :3].reshape(-1, 3)
    coloured = np.abs(colours[:, 0] - colours[:, 1]) + np.abs(colours[:, 1] - colours[:, 2]) > 0.3
    assert coloured.mean() > 0.001  # class-coloured boxes and masks, not only gray pixels
    with pytest.raises(ValueError, match="boxes, labels, valid"):
        draw_detections(path, s.images, s.boxes[:, :2], s.labels, s.valid)
