import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnlab

OUT = jnp.array([[0.2, 0.9], [0.6, 0.1]])
LABELS = jnp.array([1, 0])


def test_squared_error_by_hand():
    # sample 1: (0.2-0)^2 + (0.9-1)^2 = 0.05; sample 2: (0.6-1)^2 + (0.1-0)^2 = 0.17
    np.testing.assert_allclose(nnlab.losses.squared_error(OUT, LABELS), (0.05 + 0.17) / 2, rtol=1e-6)
    np.testing.assert_allclose(nnlab.losses.squared_error(OUT, jnp.array([[0.0, 1.0], [1.0, 0.0]])), 0.11, rtol=1e-6)


def test_single_output_targets_are_the_labels():
    np.testing.assert_allclose(
        nnlab.losses.squared_error(jnp.array([[0.25], [0.5]]), jnp.array([1, 0])), (0.5625 + 0.25) / 2
    )


def test_sigmoid_cross_entropy_by_hand():
    y = 1 / (1 + np.exp(-np.asarray(OUT)))
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    expected = -(t * np.log(y) + (1 - t) * np.log(1 - y)).sum(1).mean()
    np.testing.assert_allclose(nnlab.losses.sigmoid_cross_entropy(OUT, LABELS), expected, rtol=1e-6)


def test_softmax_cross_entropy_by_hand_and_stable():
    expected = np.mean([np.log(np.exp(0.2) + np.exp(0.9)) - 0.9, np.log(np.exp(0.6) + np.exp(0.1)) - 0.6])
    np.testing.assert_allclose(nnlab.losses.softmax_cross_entropy(OUT, LABELS), expected, rtol=1e-6)
    assert jnp.isfinite(nnlab.losses.softmax_cross_entropy(jnp.array([[1000.0, -1000.0]]), jnp.array([1])))


@pytest.mark.parametrize(
    "loss", [nnlab.losses.squared_error, nnlab.losses.softmax_cross_entropy, nnlab.losses.sigmoid_cross_entropy]
)
def test_label_shape_n_by_1_is_rejected(loss):
    with pytest.raises(ValueError, match=r"targets: expected integer labels of shape \(2,\) .* got \(2, 1\)"):
        loss(OUT, LABELS[:, None])


PARAMS = {"W": jnp.array([[1.0, -2.0]]), "s": jnp.array([3.0])}


@pytest.mark.parametrize(
    "fn, lam, include, expected",
    [
        (nnlab.losses.l2_penalty, 0.1, False, 0.1 * 5.0),
        (nnlab.losses.l2_penalty, 0.1, True, 0.1 * 14.0),
        (nnlab.losses.l1_penalty, 0.5, False, 0.5 * 3.0),
        (nnlab.losses.l1_penalty, 0.5, True, 0.5 * 6.0),
    ],
)
def test_weight_decay_terms(fn, lam, include, expected):
    np.testing.assert_allclose(fn(PARAMS, lam, include_biases=include), expected, rtol=1e-6)


def _run(tx, grads):
    p = jnp.zeros(())
    state = tx.init(p)
    out = []
    for g in grads:
        u, state = tx.update(jnp.float32(g), state, p)
        p = optax.apply_updates(p, u)
        out.append(float(p))
    return out


def test_lowpass_momentum_by_hand():
    # g1 = 0.5*0 + 0.5*1 = 0.5 -> p = -0.05; g2 = 0.5*0.5 + 0.5*3 = 1.75 -> p = -0.225
    np.testing.assert_allclose(_run(nnlab.optim.momentum(0.1, 0.5), [1.0, 3.0]), [-0.05, -0.225], rtol=1e-6)


def test_heavy_ball_momentum_by_hand():
    # g1 = 1 -> p = -0.1; g2 = 0.5*1 + 3 = 3.5 -> p = -0.45
    np.testing.assert_allclose(
        _run(nnlab.optim.momentum(0.1, 0.5, form="heavy_ball"), [1.0, 3.0]), [-0.1, -0.45], rtol=1e-6
    )


@pytest.mark.optax_promotion
def test_gd_and_adam_first_step():
    np.testing.assert_allclose(_run(nnlab.optim.gd(0.1), [2.0]), [-0.2], rtol=1e-6)
    np.testing.assert_allclose(_run(nnlab.optim.adam(0.1), [2.0]), [-0.1], rtol=1e-5)  # Adam's first step is lr*sign


def test_freeze_keeps_masked_leaves():
    params = {"body": jnp.ones(3), "head": jnp.ones(2)}
    tx = nnlab.optim.freeze(nnlab.optim.sgd(0.1), {"body": False, "head": True})
    u, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    new = optax.apply_updates(params, u)
    np.testing.assert_array_equal(new["body"], params["body"])
    np.testing.assert_allclose(new["head"], 0.9)


@pytest.mark.parametrize("name", ["constant", "cosine", "step", "exponential"])
def test_schedules_start_at_the_rate(name):
    s = nnlab.optim.schedule(name, 0.1, total_steps=100)
    np.testing.assert_allclose(s(0), 0.1, rtol=1e-6)
    assert float(s(99)) <= 0.1


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="beta: expected a momentum in"):
        nnlab.optim.momentum(0.1, 1.0)
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        nnlab.optim.make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="schedule: expected"):
        nnlab.optim.schedule("linear", 0.1, total_steps=10)


def test_softmax_needs_two_classes():
    with pytest.raises(ValueError, match=r"logits: expected at least 2 classes for a softmax, got shape \(2, 1\)"):
        nnlab.losses.softmax_cross_entropy(jnp.zeros((2, 1)), jnp.array([0, 1]))
