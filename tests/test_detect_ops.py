"""Box operations, anchors, NMS and RoI pooling against hand-computed cases and NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnlab.detect import (
    anchor_grid,
    batched_nms,
    box_area,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    iou_matrix,
    nms,
    roi_align,
    roi_pool,
)

pytestmark = pytest.mark.usefixtures("fast_compile")  # many small programs, each run once


def _random_boxes(rng, n, extent=100.0, max_size=40.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(1, max_size, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _iou_reference(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - iw * ih
            out[i, j] = iw * ih / union
    return out


def _nms_reference(boxes, scores, threshold):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        order = order[1:][_iou_reference(boxes[i : i + 1], boxes[order[1:]])[0] <= threshold]
    return keep


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),  # corner overlap: 1 / (4 + 4 - 1)
        ([0, 0, 2, 2], [2, 0, 4, 2], 0.0),  # touching edges
        ([0, 0, 4, 4], [1, 1, 3, 3], 0.25),  # contained
        ([1, 2, 5, 7], [1, 2, 5, 7], 1.0),  # identical
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
    ],
)
def test_iou_hand_computed(a, b, expected):
    got = iou_matrix(jnp.array([a], jnp.float32), jnp.array([b], jnp.float32))
    np.testing.assert_allclose(got, [[expected]], rtol=1e-6, atol=1e-7)


def test_iou_matrix_matches_numpy_and_empty_union_is_zero():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    np.testing.assert_allclose(iou_matrix(jnp.asarray(a), jnp.asarray(b)), _iou_reference(a, b), rtol=1e-5, atol=1e-6)
    empty = jnp.zeros((1, 4), jnp.float32)
    np.testing.assert_array_equal(iou_matrix(empty, empty), [[0.0]])
    np.testing.assert_allclose(box_area(jnp.array([[1, 2, 4, 6], [3, 3, 1, 1]], jnp.float32)), [12.0, 0.0])


def test_encode_hand_computed_and_round_trip():
    anchor = jnp.array([0, 0, 10, 10], jnp.float32)
    box = jnp.array([5, 0, 15, 20], jnp.float32)  # centre (10, 10) vs (5, 5); width 10, height 20
    np.testing.assert_allclose(encode_boxes(box, anchor), [0.5, 0.5, 0.0, math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(encode_boxes(box, anchor, (10, 10, 5, 5)), [5, 5, 0, 5 * math.log(2)], rtol=1e-6)
    rng = np.random.default_rng(1)
    boxes, anchors = jnp.asarray(_random_boxes(rng, 50)), jnp.asarray(_random_boxes(rng, 50))
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        deltas = jax.jit(encode_boxes, static_argnums=2)(boxes, anchors, weights)
        np.testing.assert_allclose(decode_boxes(deltas, anchors, weights), boxes, rtol=1e-5, atol=1e-4)


def test_decode_clips_huge_scales_and_clip_boxes():
    anchor = jnp.array([0, 0, 16, 16], jnp.float32)
    out = decode_boxes(jnp.array([0, 0, 100, 100], jnp.float32), anchor)
    np.testing.assert_allclose(out[2] - out[0], 1000.0, rtol=1e-5)  # 16 * exp(log(1000 / 16))
    clipped = clip_boxes(jnp.array([[-5, 3, 140, 200]], jnp.float32), 128, 100)
    np.testing.assert_array_equal(clipped, [[0, 3, 100, 128]])


def test_nine_anchors_per_position_at_stride_16():
    scales, ratios = (32.0, 64.0, 128.0), (0.5, 1.0, 2.0)
    anchors = np.asarray(anchor_grid((2, 3), stride=16, scales=scales, ratios=ratios))
    assert anchors.shape == (2 * 3 * 9, 4)
    grid = anchors.reshape(2, 3, 9, 4)
    centres = (grid[..., :2] + grid[..., 2:]) / 2
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(centres[i, j], np.tile([16 * j + 8, 16 * i + 8], (9, 1)))
    wh = grid[..., 2:] - grid[..., :2]
    np.testing.assert_allclose(wh[..., 0] * wh[..., 1], np.tile(np.repeat(np.square(scales), 3), (2, 3, 1)), rtol=1e-5)
    np.testing.assert_allclose(wh[..., 1] / wh[..., 0], np.tile(np.tile(ratios, 3), (2, 3, 1)), rtol=1e-5)
    # cell (row 1, column 2), scale 64, ratio 1 (anchor 4): a 64 x 64 square around (40, 24)
    np.testing.assert_allclose(anchors[(1 * 3 + 2) * 9 + 4], [8, -8, 72, 56])


def test_nms_hand_computed():
    boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], jnp.float32)
    scores = jnp.array([0.9, 0.8, 0.7, 0.95], jnp.float32)
    # boxes 0 and 3 coincide, box 1 overlaps them by IoU 81 / 119 = 0.68, box 2 overlaps nothing
    idx, ok = nms(boxes, scores, iou_threshold=0.5, max_outputs=4)
    np.testing.assert_array_equal(idx, [3, 2, 0, 0])
    np.testing.assert_array_equal(ok, [True, True, False, False])
    idx, ok = nms(boxes, scores, iou_threshold=0.7, max_outputs=4)
    np.testing.assert_array_equal(idx[ok], [3, 1, 2])
    idx, ok = nms(boxes, scores, iou_threshold=0.7, max_outputs=2)  # stops after max_outputs
    np.testing.assert_array_equal(idx[ok], [3, 1])
    idx, ok = nms(boxes, scores, iou_threshold=0.5, max_outputs=4, valid=jnp.array([True, True, True, False]))
    np.testing.assert_array_equal(idx[ok], [0, 2])
    # the same boxes in two classes: class 1's box survives beside class 0's
    idx, ok = batched_nms(boxes, scores, jnp.array([0, 1, 0, 0]), iou_threshold=0.5, max_outputs=4)
    np.testing.assert_array_equal(idx[ok], [3, 1, 2])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_numpy_reference_under_jit_and_vmap(threshold):
    rng = np.random.default_rng(2)
    boxes = np.stack([_random_boxes(rng, 60, extent=40.0) for _ in range(4)])
    scores = rng.uniform(size=(4, 60)).astype(np.float32)
    run = jax.jit(jax.vmap(lambda b, s: nms(b, s, iou_threshold=threshold, max_outputs=60)))
    idx, ok = run(jnp.asarray(boxes), jnp.asarray(scores))
    for i in range(4):
        expected = _nms_reference(boxes[i], scores[i], threshold)
        assert 1 < len(expected) < 60
        np.testing.assert_array_equal(np.asarray(idx[i])[np.asarray(ok[i])], expected)
        single_idx, single_ok = nms(
            jnp.asarray(boxes[i]), jnp.asarray(scores[i]), iou_threshold=threshold, max_outputs=60
        )
        np.testing.assert_array_equal(single_idx, idx[i])
        np.testing.assert_array_equal(single_ok, ok[i])


def _roi_pool_reference(features, boxes, out, scale):
    """A loop over bins with Fast R-CNN's Caffe rounding (as torchvision.ops.roi_pool)."""
    h, w, c = features.shape
    result = np.zeros((len(boxes), out[0], out[1], c), np.float32)
    for r, box in enumerate(boxes):
        x1, y1, x2, y2 = (int(math.floor(v * scale + 0.5)) for v in box)
        bin_h, bin_w = max(y2 - y1 + 1, 1) / out[0], max(x2 - x1 + 1, 1) / out[1]
        for i in range(out[0]):
            for j in range(out[1]):
                hs = min(max(math.floor(i * bin_h) + y1, 0), h)
                he = min(max(math.ceil((i + 1) * bin_h) + y1, 0), h)
                ws = min(max(math.floor(j * bin_w) + x1, 0), w)
                we = min(max(math.ceil((j + 1) * bin_w) + x1, 0), w)
                if he > hs and we > ws:
                    result[r, i, j] = features[hs:he, ws:we].max(axis=(0, 1))
    return result


def _bilinear_reference(features, y, x):
    h, w, _ = features.shape
    if not (-1 <= y <= h and -1 <= x <= w):
        return np.zeros(features.shape[-1])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * features[y0, x0]
        + (1 - ly) * lx * features[y0, x1]
        + ly * (1 - lx) * features[y1, x0]
        + ly * lx * features[y1, x1]
    )


def _roi_align_reference(features, boxes, out, scale, sampling, aligned):
    """A loop over bins and sampling points (torchvision.ops.roi_align with a fixed sampling_ratio)."""
    result = np.zeros((len(boxes), out[0], out[1], features.shape[-1]))
    offset = 0.5 if aligned else 0.0
    for r, box in enumerate(boxes):
        x1, y1, x2, y2 = (v * scale - offset for v in box)
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / out[0], rw / out[1]
        for i in range(out[0]):
            for j in range(out[1]):
                acc = 0.0
                for iy in range(sampling):
                    for ix in range(sampling):
                        y = y1 + i * bh + (iy + 0.5) * bh / sampling
                        x = x1 + j * bw + (ix + 0.5) * bw / sampling
                        acc = acc + _bilinear_reference(features, y, x)
                result[r, i, j] = acc / sampling**2
    return result


_ROI_BOXES = np.array(
    [
        [0, 0, 128, 128],  # the whole image
        [20, 33, 61, 90],  # a digit-sized box
        [100, 5, 104, 9],  # smaller than a cell
        [-20, -10, 30, 40],  # partly outside
        [120, 120, 200, 170],  # mostly outside
        [40, 40, 40, 40],  # empty
    ],
    np.float32,
)


@pytest.mark.parametrize("out", [(2, 2), (3, 4), (7, 7)])
def test_roi_pool_matches_numpy_reference(out):
    features = np.asarray(jax.random.normal(jax.random.key(0), (8, 8, 3)))
    got = jax.jit(lambda f, b: roi_pool(f, b, out, spatial_scale=1 / 16))(jnp.asarray(features), _ROI_BOXES)
    np.testing.assert_allclose(got, _roi_pool_reference(features, _ROI_BOXES, out, 1 / 16), rtol=1e-6, atol=1e-6)


def test_roi_pool_hand_computed():
    features = jnp.arange(16, dtype=jnp.float32).reshape(4, 4, 1)  # value 4 * row + column
    # 36 / 16 = 2.25 rounds to 2: cells 0..2 in both directions, bins of 1.5 cells: cells 0-1 and 1-2
    got = roi_pool(features, jnp.array([[0, 0, 36, 36]], jnp.float32), (2, 2), spatial_scale=1 / 16)
    np.testing.assert_array_equal(got[0, :, :, 0], [[5, 6], [9, 10]])
    # 40 / 16 = 2.5 rounds up to 3: cells 0..3, bins of two cells
    got = roi_pool(features, jnp.array([[0, 0, 40, 40]], jnp.float32), (2, 2), spatial_scale=1 / 16)
    np.testing.assert_array_equal(got[0, :, :, 0], [[5, 7], [13, 15]])


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("out, sampling", [((2, 2), 1), ((7, 7), 2), ((3, 5), 3)])
def test_roi_align_matches_numpy_reference(out, sampling, aligned):
    features = np.asarray(jax.random.normal(jax.random.key(1), (8, 8, 3)))
    run = jax.jit(lambda f, b: roi_align(f, b, out, spatial_scale=1 / 16, sampling_ratio=sampling, aligned=aligned))
    got = run(jnp.asarray(features), _ROI_BOXES)
    expected = _roi_align_reference(features, _ROI_BOXES, out, 1 / 16, sampling, aligned)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_roi_align_of_a_linear_map_is_the_bin_centre():
    """Bilinear interpolation reproduces a linear function, so each bin's mean is its centre's x."""
    features = jnp.broadcast_to(jnp.arange(16, dtype=jnp.float32)[None, :, None], (16, 16, 1))
    box = jnp.array([[32, 32, 96, 64]], jnp.float32)  # map x 1.5 .. 5.5: 4 bins of one cell
    got = roi_align(features, box, (2, 4), spatial_scale=1 / 16, sampling_ratio=2)
    np.testing.assert_allclose(got[0, :, :, 0], np.tile([2.0, 3.0, 4.0, 5.0], (2, 1)), rtol=1e-6)


def test_roi_pool_gradient_goes_to_each_bins_maximum():
    features = jnp.arange(16, dtype=jnp.float32).reshape(4, 4, 1)
    box = jnp.array([[0, 0, 48, 48]], jnp.float32)  # cells 0..3: four 2 x 2 bins
    grad = jax.grad(lambda f: jnp.sum(roi_pool(f, box, (2, 2), spatial_scale=1 / 16)))(features)
    expected = np.zeros((4, 4), np.float32)
    expected[1::2, 1::2] = 1.0  # the largest value of each bin is its bottom-right cell
    np.testing.assert_array_equal(grad[:, :, 0], expected)


@pytest.mark.parametrize("op", [roi_pool, roi_align])
def test_roi_ops_vmap_over_a_batch(op):
    features = jax.random.normal(jax.random.key(2), (3, 8, 8, 2))
    boxes = jnp.tile(jnp.asarray(_ROI_BOXES)[None], (3, 1, 1))
    batched = jax.vmap(lambda f, b: op(f, b, (3, 3), spatial_scale=1 / 16))(features, boxes)
    for i in range(3):
        np.testing.assert_allclose(
            batched[i], op(features[i], boxes[i], (3, 3), spatial_scale=1 / 16), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: roi_align(jnp.ones((1, 8, 8, 3)), jnp.ones((2, 4)), (2, 2), spatial_scale=1.0), "features"),
        (lambda: roi_pool(jnp.ones((8, 8, 3)), jnp.ones((2, 5)), (2, 2), spatial_scale=1.0), "boxes"),
        (lambda: roi_pool(jnp.ones((8, 8, 3)), jnp.ones((2, 4)), (0, 2), spatial_scale=1.0), "output_size"),
        (lambda: roi_pool(jnp.ones((40, 40, 3)), jnp.ones((2, 4)), (2, 2), spatial_scale=1.0), "roi_align"),
        (lambda: nms(jnp.ones((3, 4)), jnp.ones((2,)), iou_threshold=0.5, max_outputs=2), "boxes, scores"),
        (lambda: nms(jnp.ones((3, 4)), jnp.ones((3,)), iou_threshold=0.5, max_outputs=0), "max_outputs"),
        (lambda: anchor_grid((2, 2), stride=16, scales=(), ratios=(1.0,)), "scales"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
