"""Anchor labelling, RoI sampling and the three detectors' objectives on tiny scenes.

Each objective must be finite and a few Optax Adam steps on two scenes (through nnlab.fit for
Mask R-CNN) must lower it clearly (the loss is compared at one fixed key, before and after).
Tiny canvases and backbones keep this fast.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnlab
from nnlab.data import Dataset, make_scenes
from nnlab.detect import (
    FasterRCNNConfig,
    RCNNConfig,
    faster_rcnn,
    label_anchors,
    mask_rcnn,
    propose_regions,
    rcnn,
    sample_balanced,
    sample_rois,
    svm_targets,
    warp_crops,
)

pytestmark = pytest.mark.usefixtures("fast_compile")  # the detectors' programs run a few steps: compile them fast

TINY = FasterRCNNConfig(
    num_classes=3,
    backbone=(4, 8, 8, 16),
    anchor_scales=(12.0, 24.0),
    anchor_ratios=(1.0, 2.0),
    rpn_width=16,
    rpn_samples=32,
    pre_nms=32,
    proposals_train=16,
    proposals_test=8,
    head_widths=(32,),
    roi_samples=8,
    mask_width=8,
    mask_convs=1,
    mask_roi_size=4,
    max_detections=6,
)


@pytest.fixture(scope="module")
def scenes():
    """Two 64 x 64 scenes of rectangles of three classes (gray values 0.4, 0.7, 1.0)."""
    x = np.zeros((3, 28, 28, 1), np.float32)
    for k, (v, h, w) in enumerate([(0.4, 20, 8), (0.7, 12, 20), (1.0, 16, 16)]):
        x[k, 14 - h // 2 : 14 + (h + 1) // 2, 14 - w // 2 : 14 + (w + 1) // 2] = v
    source = Dataset(x, np.arange(3, dtype=np.int32), 3, "rectangles")
    return make_scenes(
        source, 2, key=jax.random.key(0), canvas=64, min_objects=2, max_objects=3, min_size=12, max_size=28
    )


def test_label_anchors_hand_computed():
    anchors = jnp.array(
        [[0, 0, 10, 10], [0, 0, 9, 10], [20, 20, 30, 30], [0, 0, 20, 20], [50, 50, 60, 60]], jnp.float32
    )
    gt = jnp.array([[0, 0, 10, 10], [22, 20, 32, 30], [0, 0, 1, 1]], jnp.float32)
    positive, negative, index = label_anchors(
        anchors, gt, jnp.array([True, True, False]), positive_iou=0.7, negative_iou=0.3
    )
    # anchor 0 = gt 0 (IoU 1), anchor 1 IoU 0.9, anchor 2 IoU 80 / 120 = 0.67 < 0.7 but gt 1's best,
    # anchor 3 IoU 0.25 with gt 0, anchor 4 nothing; the padded gt box never counts
    np.testing.assert_array_equal(positive, [True, True, True, False, False])
    np.testing.assert_array_equal(negative, [False, False, False, True, True])
    np.testing.assert_array_equal(index[:3], [0, 0, 1])
    positive, negative, _ = label_anchors(anchors, gt, jnp.zeros(3, bool), positive_iou=0.7, negative_iou=0.3)
    assert not positive.any() and negative.all()  # no object: every anchor is background


def test_sample_balanced_caps_positives_and_fills_with_negatives():
    positive = jnp.arange(20) < 6
    negative = (jnp.arange(20) >= 6) & (jnp.arange(20) < 16)
    for seed in range(3):
        idx, is_pos, valid = sample_balanced(
            jax.random.key(seed), positive, negative, num_samples=8, positive_fraction=0.25
        )
        idx, is_pos, valid = map(np.asarray, (idx, is_pos, valid))
        np.testing.assert_array_equal(is_pos, [True, True, False, False, False, False, False, False])
        assert valid.all() and len(set(idx.tolist())) == 8
        assert np.all(idx[:2] < 6) and np.all((idx[2:] >= 6) & (idx[2:] < 16))
    idx, is_pos, valid = sample_balanced(
        jax.random.key(0), positive, jnp.arange(20) == 7, num_samples=8, positive_fraction=0.5
    )
    np.testing.assert_array_equal(valid, [True] * 5 + [False] * 3)  # 4 positives + the one negative
    np.testing.assert_array_equal(np.asarray(idx)[4], 7)


def test_sample_rois_labels_regions_by_their_best_gt_box():
    rois = jnp.array([[0, 0, 10, 10], [30, 30, 40, 40], [1, 0, 11, 10], [60, 60, 70, 70], [0, 0, 0, 0]], jnp.float32)
    gt = jnp.array([[0, 0, 10, 10], [30, 31, 40, 41]], jnp.float32)
    s = sample_rois(
        jax.random.key(0),
        rois,
        jnp.array([True, True, True, True, False]),
        gt,
        jnp.array([2, 0]),
        jnp.array([True, True]),
        num_samples=4,
        positive_fraction=1.0,
    )
    order = np.argsort(np.asarray(s["boxes"])[:, 0] + 100 * np.asarray(s["boxes"])[:, 1])
    np.testing.assert_array_equal(np.asarray(s["classes"])[order], [3, 3, 1, 0])  # class label + 1, 0 background
    np.testing.assert_array_equal(np.asarray(s["gt_index"])[order][:3], [0, 0, 1])
    assert np.asarray(s["valid"]).all()


def test_mask_rcnn_trained_by_fit_equals_an_optax_loop_and_lowers_its_loss(scenes):
    """nnlab.fit trains the detector as a Model whose objective takes the targets pytree: its loss
    in each of 2 steps and its variables after the first equal a hand-written Optax loop's over the
    same data order and keys (fit's documented streams), and that loop's loss at one fixed key drops
    in 6 steps. SGD with momentum is linear in the gradients, so float-level differences between
    the two compiled programs stay float-level (Adam's g / sqrt(v) turns those of near-zero
    gradients into whole steps). Later variables are not compared: after the first update
    float-level differences break the ties of the 2x2 max pooling over these flat-coloured
    rectangles differently (the backbone's gradient then goes to another pixel), and the RPN's
    top-k and NMS pick other proposals once objectness scores nearly tie. Mask R-CNN runs every part
    of Faster R-CNN plus the mask head. The state is initialised outside fit: the detector's own
    init compiles at XLA optimisation level 0, which fit's jitted, vmapped init program cannot."""
    det = mask_rcnn(TINY)
    model, data = det.as_model(), scenes.dataset()
    tx, root = optax.sgd(0.05, momentum=0.9), jax.random.key(3)
    images, targets = jnp.asarray(scenes.images), {k: jnp.asarray(v) for k, v in scenes.targets().items()}
    state = nnlab.train.init_state(model, tx, images[:1], key=root)
    assert set(state.model_state) == {"batch_stats"}
    before, after, losses, first = _sgd_loop(
        det.objective, {**state.model_state, "params": state.params}, images, targets, tx, root, steps=6, keep_at=1
    )
    assert after < 0.7 * before, (before, after)

    kept = []

    def keep_first(epoch, s, record):
        if not kept:
            kept.append(jax.tree.map(np.asarray, {**s.model_state, "params": s.params}))
        return False

    config = nnlab.TrainConfig(epochs=2, batch_size=2, optimizer="momentum", learning_rate=0.05)
    result = nnlab.fit(model, data, key=root, config=config, state=state, tx=tx, callbacks=[keep_first], progress=False)
    np.testing.assert_allclose([h["train_loss"] for h in result.history], losses[:2], rtol=1e-5, atol=1e-6)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
    jax.tree.map(lambda a, b: close(np.asarray(a), np.asarray(b)), kept[0], first)

    out = jax.jit(det.detect)(result.variables, images)
    valid = np.asarray(out.valid)
    assert out.boxes.shape == (2, TINY.max_detections, 4)
    boxes = np.asarray(out.boxes)[valid]
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 64) and np.all(boxes[:, 2:] > boxes[:, :2])
    scores = np.where(valid, np.asarray(out.scores), -1)
    assert np.all(np.diff(scores, axis=1) <= 0)  # sorted, valid first
    assert out.masks.shape == (2, TINY.max_detections, 8, 8)
    assert np.all((np.asarray(out.masks) >= 0) & (np.asarray(out.masks) <= 1))


def _sgd_loop(objective, variables, images, targets, tx, root, steps, keep_at):
    """The loop fit documents, by hand, each step one compiled call: epoch e's order is
    epoch_order(stream(root, 'data'), e), step t's sampling key fold_in(stream(root, 'dropout'), t).
    Returns the mean loss at one fixed key before and after, each step's mean loss and the
    variables after `keep_at` steps."""

    def mean_loss(params, state, x, t, key):
        loss, updates = objective({**state, "params": params}, x, t, train=True, key=key)
        return jnp.mean(loss), updates

    grad = jax.value_and_grad(mean_loss, has_aux=True)

    @jax.jit
    def step(params, state, opt, x, t, key):
        (loss, updates), g = grad(params, state, x, t, key)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), {**state, **updates}, opt, loss

    fixed_loss = jax.jit(lambda params, state: mean_loss(params, state, images, targets, jax.random.key(100))[0])
    state = {k: v for k, v in variables.items() if k != "params"}
    params, opt = variables["params"], tx.init(variables["params"])
    before = fixed_loss(params, state)
    data_key, sample_key = nnlab.train.stream(root, "data"), nnlab.train.stream(root, "dropout")
    losses = []
    for t in range(steps):
        if t == keep_at:
            kept = {**state, "params": params}
        order = nnlab.train.epoch_order(data_key, t, n=images.shape[0], batch_size=images.shape[0])[0]
        x, y = images[order], {k: v[order] for k, v in targets.items()}
        params, state, opt, loss = step(params, state, opt, x, y, jax.random.fold_in(sample_key, t))
        losses.append(float(loss))
    return float(before), float(fixed_loss(params, state)), losses, kept


def _adam_lowers(objective, variables, images, targets, steps=20, lr=1e-2):
    """Returns the mean loss at one fixed key before and after `steps` Adam steps on these scenes."""
    state = {k: v for k, v in variables.items() if k != "params"}

    def mean_loss(params, state, key):
        loss, updates = objective({**state, "params": params}, images, targets, train=True, key=key)
        return jnp.mean(loss), (loss, updates)

    grad = jax.jit(jax.value_and_grad(mean_loss, has_aux=True))
    tx = optax.adam(lr)
    params, opt = variables["params"], tx.init(variables["params"])
    (before, (per_image, _)), _ = grad(params, state, jax.random.key(100))
    for step in range(steps):
        (_, (_, updates)), g = grad(params, state, jax.random.key(step))
        u, opt = tx.update(g, opt, params)
        params, state = optax.apply_updates(params, u), {**state, **updates}
    (after, _), _ = grad(params, state, jax.random.key(100))
    return float(before), float(after), np.asarray(per_image), {**state, "params": params}


def test_per_image_losses_do_not_depend_on_the_batch(scenes):
    """Without batch norm an image's loss does not depend on the other images of its batch (its
    samples come from fold_in(key, position)): replacing the second scene leaves the first's loss."""
    det = faster_rcnn(TINY, batch_norm=False)
    images, targets = jnp.asarray(scenes.images), {k: jnp.asarray(v) for k, v in scenes.targets().items()}
    variables = det.init(jax.random.key(1), images)
    loss = jax.jit(lambda v, x, t, k: det.objective(v, x, t, train=True, key=k)[0])
    both = loss(variables, images, targets, jax.random.key(5))
    twice = loss(
        variables, images[jnp.array([0, 0])], {k: v[jnp.array([0, 0])] for k, v in targets.items()}, jax.random.key(5)
    )
    np.testing.assert_allclose(twice[0], both[0], rtol=1e-5, atol=1e-6)
    assert abs(float(twice[1]) - float(both[1])) > 1e-3


def test_svm_targets_follow_rcnn():
    gt = jnp.array([[0, 0, 10, 10], [20, 20, 30, 30]], jnp.float32)
    boxes = jnp.concatenate([gt, jnp.array([[0, 0, 10, 12], [0, 0, 20, 20], [40, 40, 50, 50]], jnp.float32)])
    t = svm_targets(
        boxes, gt, jnp.array([1, 2]), jnp.array([True, True]), num_classes=3, negative_iou=0.3, is_gt=jnp.arange(5) < 2
    )
    np.testing.assert_array_equal(
        t,
        [
            [-1, 1, -1],  # the gt box of class 1 is its positive, a negative for the others
            [-1, -1, 1],  # the gt box of class 2
            [-1, 0, -1],  # IoU 100 / 120 with the class-1 box: ignored for class 1
            [-1, -1, -1],  # IoU 100 / 400 = 0.25 < 0.3 with the class-1 box: a negative
            [-1, -1, -1],  # overlaps nothing
        ],
    )


def test_warp_crops_scales_a_box_to_the_crop():
    image = jnp.zeros((32, 32, 1)).at[8:24, 4:20].set(1.0)  # a white 16 x 16 block
    # halving the box: each crop pixel is the mean of samples at two pixel centres per axis
    crop = warp_crops(image, jnp.array([[4, 8, 20, 24]], jnp.float32), 8)
    np.testing.assert_allclose(crop, np.ones((1, 8, 8, 1)), rtol=1e-6)
    grown = warp_crops(image, jnp.array([[4, 8, 20, 24]], jnp.float32), 12, context=0.25)  # 4 px more per side
    expected = np.zeros((12, 12))
    expected[2:10, 2:10] = 1.0
    np.testing.assert_allclose(grown[0, :, :, 0], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.optax_promotion
def test_rcnn_cnn_and_svm_objectives_learn(scenes):
    r = rcnn(RCNNConfig(num_classes=3, crop_size=16, backbone=(4, 8), feature_width=16, roi_samples=8))
    images = jnp.asarray(scenes.images)
    proposals, valid = propose_regions(scenes.images, scales=(50.0,))
    targets = {
        **{k: jnp.asarray(v) for k, v in scenes.targets().items()},
        "proposals": jnp.asarray(proposals),
        "proposals_valid": jnp.asarray(valid),
    }
    variables = r.init(jax.random.key(1), images)
    before, after, per_image, trained = _adam_lowers(r.objective, variables, images, targets)
    assert np.all(np.isfinite(per_image)) and after < 0.9 * before, (before, after)

    features, t, ok = jax.jit(r.svm_data)(trained, images, targets)
    features, t = features[np.asarray(ok)], t[np.asarray(ok)]
    present = np.unique(scenes.labels[scenes.valid])
    assert np.all((np.asarray(t)[:, present] == 1).sum(axis=0) >= 1)  # every class in the scenes has a positive
    svm = r.svm_init(jax.random.key(2), features)
    svm_before, svm_after, _, svm_trained = _adam_lowers(
        lambda v, x, y, **kw: r.svm_objective(v, x, y, **kw), svm, features, t, steps=20, lr=1e-2
    )
    assert svm_before == pytest.approx(float(np.mean(np.sum(np.asarray(t) != 0, axis=1))), rel=1e-6)  # zero init
    assert svm_after < 0.5 * svm_before
    out = jax.jit(r.detect)(trained, svm_trained, images, targets["proposals"], targets["proposals_valid"])
    assert out.valid.shape == (2, 20) and np.asarray(out.valid).any()
