"""The convolutional layers against NumPy references and hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab
from nnlab.nn import (
    BatchNorm,
    Dropout,
    InceptionBlock,
    ResidualBlock,
    SqueezeExcite,
    avg_pool,
    conv,
    conv1x1,
    global_avg_pool,
    max_pool,
    upsample,
)


def _images(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _pool_reference(x, window, stride, reduce):
    b, h, w, c = x.shape
    rows, cols = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.zeros((b, rows, cols, c), np.float32)
    for i in range(rows):
        for j in range(cols):
            out[:, i, j] = reduce(x[:, i * stride : i * stride + window, j * stride : j * stride + window], axis=(1, 2))
    return out


@pytest.mark.parametrize("pool, reduce", [(max_pool, np.max), (avg_pool, np.mean)])
@pytest.mark.parametrize(
    "hw, window, stride, expected",
    [
        ((7, 5), 3, 2, (3, 2)),  # the lecture's example
        ((8, 6), 2, 2, (4, 3)),  # non-overlapping windows that tile the map
        ((6, 6), 2, 1, (5, 5)),
        ((9, 7), 2, 2, (4, 3)),  # windows that do not tile the map: the last row / column is left out
    ],
)
def test_pooling_matches_numpy(pool, reduce, hw, window, stride, expected):
    x = _images((2, *hw, 3))
    y = pool(x, window, stride)
    assert y.shape == (2, *expected, 3)
    # XLA and NumPy are different programs: an average near zero needs an absolute tolerance too
    np.testing.assert_allclose(y, _pool_reference(np.asarray(x), window, stride, reduce), rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_the_maximum():
    x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
    g = jax.grad(lambda x: jnp.sum(max_pool(x, 2)))(x)
    expected = np.zeros((4, 4), np.float32)
    expected[1::2, 1::2] = 1
    np.testing.assert_array_equal(g[0, :, :, 0], expected)


def test_same_pooling_keeps_resolution_and_global_pool_is_the_mean():
    x = _images((2, 5, 5, 3))
    assert max_pool(x, 3, 1, "SAME").shape == x.shape
    np.testing.assert_allclose(avg_pool(jnp.ones((1, 4, 4, 1)), 3, 1, "SAME"), np.ones((1, 4, 4, 1)), rtol=1e-6)
    np.testing.assert_allclose(global_avg_pool(x), np.asarray(x).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: max_pool(jnp.ones((1, 4, 4)), 2), "x: expected images"),
        (lambda: max_pool(jnp.ones((1, 4, 4, 1)), 0), "window"),
        (lambda: avg_pool(jnp.ones((1, 4, 4, 1)), 2, padding="FULL"), "padding"),
        (lambda: max_pool(jnp.ones((1, 2, 2, 1)), 3), "window: expected at most"),
        (lambda: conv(0), "features"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "kernel, stride, padding, expected_hw",
    [
        (3, 1, "SAME", (7, 5)),
        (3, 1, "VALID", (5, 3)),
        (3, 2, "SAME", (4, 3)),
        (5, 1, 2, (7, 5)),
        (1, 1, "VALID", (7, 5)),
    ],
)
def test_conv_matches_numpy(kernel, stride, padding, expected_hw):
    x = _images((2, 7, 5, 3))
    layer = conv(4, kernel, stride=stride, padding=padding)
    variables = layer.init(jax.random.key(1), x)
    y = layer.apply(variables, x)
    assert y.shape == (2, *expected_hw, 4)
    pad = {"SAME": (kernel - 1) // 2, "VALID": 0}.get(padding, padding)
    xp = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k, bias = np.asarray(variables["params"]["kernel"]), np.asarray(variables["params"]["bias"])
    i, j = 1, 1  # one output pixel: sum over the k x k window and the input channels
    patch = xp[:, i * stride : i * stride + kernel, j * stride : j * stride + kernel, :]
    np.testing.assert_allclose(y[:, i, j], np.einsum("bhwc,hwcf->bf", patch, k) + bias, rtol=1e-4, atol=1e-5)


def test_conv1x1_is_a_dense_layer_across_channels():
    x = _images((2, 4, 4, 3))
    layer = conv1x1(5)
    v = layer.init(jax.random.key(1), x)
    w, b = np.asarray(v["params"]["kernel"])[0, 0], np.asarray(v["params"]["bias"])
    np.testing.assert_allclose(layer.apply(v, x), np.asarray(x) @ w + b, rtol=1e-5, atol=1e-6)


def test_batch_norm_uses_batch_statistics_in_training_and_running_averages_in_evaluation():
    x = 3.0 + 2.0 * _images((64, 2, 2, 3))
    bn = BatchNorm(momentum=0.9, epsilon=1e-5)
    v = bn.init(jax.random.key(0), x, train=False)
    y, updates = bn.apply(v, x, train=True, mutable=["batch_stats"])
    xs = np.asarray(x)
    mean, var = xs.mean(axis=(0, 1, 2)), xs.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (xs - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    stats = updates["batch_stats"]["bn"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 * 1.0 + 0.1 * var, rtol=1e-4)
    # evaluation: the running averages (initially mean 0, var 1), one sample at a time gives the same
    y_eval = bn.apply(v, x, train=False)
    np.testing.assert_allclose(y_eval, xs / np.sqrt(1 + 1e-5), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.apply(v, x[:1], train=False), y_eval[:1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("drop_rate", [0.0, 0.25, 0.5])
def test_dropout_scales_kept_units_and_is_reproducible_with_a_key(drop_rate):
    x = 1.0 + jax.random.uniform(jax.random.key(0), (100, 100))
    layer = Dropout(drop_rate)
    y1 = layer.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
    y2 = layer.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
    y3 = layer.apply({}, x, train=True, rngs={"dropout": jax.random.key(2)})
    kept = np.asarray(y1) != 0
    np.testing.assert_allclose(np.asarray(y1)[kept], np.asarray(x)[kept] / (1 - drop_rate), rtol=1e-6)
    assert abs((1 - kept.mean()) - drop_rate) < 0.02
    np.testing.assert_array_equal(y1, y2)
    assert drop_rate == 0 or not np.array_equal(y1, y3)
    np.testing.assert_array_equal(layer.apply({}, x, train=False), x)


def test_dropout_rejects_a_drop_rate_of_one():
    with pytest.raises(ValueError, match="drop_rate"):
        Dropout(1.0).apply({}, jnp.ones((2, 2)), train=True, rngs={"dropout": jax.random.key(0)})


def _zero(variables, layer):
    params = jax.tree.map(lambda a: a, variables["params"])
    params[layer] = jax.tree.map(jnp.zeros_like, params[layer])
    return {**variables, "params": params}


@pytest.mark.parametrize("batch_norm", [True, False])
def test_residual_block_with_zeroed_last_layer_is_the_identity(batch_norm):
    x = _images((2, 6, 6, 8))
    block = ResidualBlock(8, batch_norm=batch_norm)
    v = _zero(block.init(jax.random.key(1), x, train=False), "conv2")
    np.testing.assert_array_equal(block.apply(v, x, train=False), x)
    assert not np.allclose(block.apply(block.init(jax.random.key(1), x, train=False), x, train=False), x)


def test_residual_block_projects_when_the_shape_changes():
    x = _images((2, 6, 6, 4))
    block = ResidualBlock(8, stride=2, batch_norm=False)
    v = _zero(block.init(jax.random.key(1), x, train=False), "conv2")
    y = block.apply(v, x, train=False)
    proj = v["params"]["projection"]
    expected = np.asarray(x)[:, ::2, ::2] @ np.asarray(proj["kernel"])[0, 0] + np.asarray(proj["bias"])
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_transposed_convolution_doubles_the_resolution():
    x = _images((2, 3, 4, 2))
    layer = upsample(5)
    v = layer.init(jax.random.key(1), x)
    k, b = np.asarray(v["params"]["kernel"]), np.asarray(v["params"]["bias"])
    y = layer.apply(v, x)
    assert y.shape == (2, 6, 8, 5)
    # every input pixel becomes one 2x2 output patch; the kernel is flipped (a transposed convolution)
    expected = np.einsum("nijc,abcf->niajbf", np.asarray(x), k[::-1, ::-1]).reshape(2, 6, 8, 5) + b
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_inception_block_concatenates_its_branches():
    x = _images((2, 6, 6, 8))
    block = InceptionBlock(b1=4, b3_reduce=3, b3=6, b5_reduce=2, b5=5, pool_proj=3)
    v = block.init(jax.random.key(1), x)
    y = block.apply(v, x)
    assert y.shape == (2, 6, 6, 4 + 6 + 5 + 3)
    b1 = v["params"]["b1"]
    np.testing.assert_allclose(
        y[..., :4],
        np.maximum(np.asarray(x) @ np.asarray(b1["kernel"])[0, 0] + np.asarray(b1["bias"]), 0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_squeeze_excite_with_zero_excitation_halves_every_channel():
    x = _images((2, 4, 4, 8))
    block = SqueezeExcite(ratio=4)
    v = _zero(block.init(jax.random.key(1), x), "excite")
    np.testing.assert_allclose(block.apply(v, x), 0.5 * np.asarray(x), rtol=1e-6, atol=1e-7)
    assert v["params"]["squeeze"]["kernel"].shape == (8, 2)


@pytest.mark.optax_promotion
def test_mnist_cnn_learns_and_is_deterministic():
    x = np.asarray(_images((128, 28, 28, 1)))
    y = (x[:, :14].sum(axis=(1, 2, 3)) > x[:, 14:].sum(axis=(1, 2, 3))).astype(np.int32)  # top half brighter?
    data = nnlab.data.make_dataset(x, y, num_classes=10)
    model = nnlab.get_model("mnist-cnn", stages=((4,), (8,), (8,)), hidden=(16,), drop_rate=0.1)
    config = nnlab.TrainConfig(
        epochs=3, batch_size=32, learning_rate=3e-3, augmentation=nnlab.data.Augmentation(shift=1.0)
    )
    first = nnlab.fit(model, data, key=jax.random.key(0), config=config)
    again = nnlab.fit(model, data, key=jax.random.key(0), config=config)
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert nnlab.report.params_sha256(first.variables["params"]) == nnlab.report.params_sha256(
        again.variables["params"]
    )
    assert set(first.variables) == {"params", "batch_stats"}
