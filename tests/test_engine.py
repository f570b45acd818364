import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab
from nnlab.train import (
    classification_objective,
    init_members,
    make_train_step,
    make_tx,
    members_step,
    pick_engine,
    unrolled_steps,
    with_compute_dtype,
)

SGD = nnlab.TrainConfig(epochs=2, batch_size=32, optimizer="heavy_ball", learning_rate=0.1)


def _fit(config=SGD, model=None):
    train = nnlab.data.spirals(256, key=jax.random.key(0))
    return nnlab.fit(model or nnlab.nn.mlp([2, 16, 2], activation="tanh"), train, key=jax.random.key(0), config=config)


@pytest.mark.parametrize(
    "engine, platform, convolution, expected",
    [
        ("auto", "cpu", True, "unroll"),
        ("auto", "cpu", False, "scan"),
        ("auto", "gpu", True, "scan"),
        ("auto", "tpu", True, "scan"),
        ("unroll", "gpu", True, "unroll"),
        ("scan", "cpu", True, "scan"),
        ("step", "gpu", False, "step"),
    ],
)
def test_auto_picks_per_backend_and_model(engine, platform, convolution, expected):
    assert pick_engine(engine, platform, convolution=convolution) == expected


class TinyConvNet(nn.Module):
    """x: [batch, 6, 6, 1] -> conv3x3 4, relu, dropout 0.25 -> dense 2."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = nn.Dropout(0.25, deterministic=not train)(nn.relu(nn.Conv(4, (3, 3))(x)))
        return nn.Dense(2)(h.reshape(h.shape[0], -1))


def _images():
    x = jax.random.uniform(jax.random.key(2), (128, 6, 6, 1))
    return nnlab.data.make_dataset(
        np.asarray(x), np.asarray(x[:, :4].mean(axis=(1, 2, 3)) > 0.5, np.int32), num_classes=2
    )


@functools.cache
def _fit_images(config, members=1):
    """Keyed dropout: every strategy must draw the same randomness in each step."""
    model = nnlab.from_linen(TinyConvNet(), input_shape=(6, 6, 1))
    return nnlab.fit_many(model, _images(), keys=list(range(members)), config=config)


@pytest.mark.parametrize("members", [1, 2])
@pytest.mark.parametrize("engine, unroll", [("unroll", 3), ("scan", 8)])
def test_strategies_give_the_per_step_parameters(engine, unroll, members):
    """4 steps per epoch: unroll=3 runs a chunk of 3 and a remainder of 1; every member alike."""
    ref = _fit_images(SGD.replace(engine="step"), members)
    r = _fit_images(SGD.replace(engine=engine, unroll=unroll), members)
    assert (ref.engine, r.engine) == ("step", engine)
    np.testing.assert_array_equal(r.state.step, [8] * members)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), r.variables, ref.variables)
    for h, h_ref in zip(r.histories, ref.histories, strict=True):
        np.testing.assert_allclose([e["train_loss"] for e in h], [e["train_loss"] for e in h_ref], rtol=1e-5)
        assert [e["train_error"] for e in h] == [e["train_error"] for e in h_ref]


def test_auto_engine_is_reported():
    assert _fit().engine == pick_engine("auto", jax.devices()[0].platform, convolution=False)
    assert _fit_images(SGD).engine == pick_engine("auto", jax.devices()[0].platform, convolution=True)


def test_bfloat16_computes_in_bfloat16_with_float32_outputs():
    model = nnlab.nn.mlp([2, 8, 3], activation="tanh")
    x = jax.random.normal(jax.random.key(1), (5, 2))
    variables = model.init(jax.random.key(0), x)
    out, _ = with_compute_dtype(model, "bfloat16").apply(variables, x, train=False)
    bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), variables)
    ref, _ = model.apply(bf16, x.astype(jnp.bfloat16).astype(jnp.float32), train=False)
    exact, _ = model.apply(variables, x, train=False)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=2e-2)
    assert not np.array_equal(out, exact)
    assert with_compute_dtype(model, "float32") is model


def test_bfloat16_training_keeps_float32_parameters_and_tracks_float32():
    ref, r = _fit(), _fit(SGD.replace(compute_dtype="bfloat16"))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(r.state.params))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(r.state.opt_state) if leaf.dtype != jnp.int32)
    assert nnlab.report.params_sha256(r.variables["params"]) != nnlab.report.params_sha256(ref.variables["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=0.1), r.variables, ref.variables)
    np.testing.assert_allclose(r.history[-1]["train_loss"], ref.history[-1]["train_loss"], rtol=0.05)


class _BNNet(nn.Module):
    """x: [batch, 6, 6, 1] -> conv3x3 4, BatchNorm, relu -> dense 2: batch statistics to keep float32."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Conv(4, (3, 3))(x))
        return nn.Dense(2)(nn.relu(h).reshape(h.shape[0], -1))


@pytest.mark.optax_promotion  # Flax's BatchNorm promotes bfloat16 inputs to float32 inside
def test_bfloat16_training_leaves_batch_stats_and_normalization_float32():
    """Only params and inputs are cast: the running averages stay float32 and move as in float32 training."""
    data = _images()
    model = nnlab.nn.with_normalization(
        nnlab.from_linen(_BNNet(), input_shape=(6, 6, 1)), nnlab.data.fit_normalization(data.x)
    )
    init = model.init(jax.random.key(0), jnp.asarray(data.x[:1]))
    f32 = nnlab.fit(model, data, key=0, config=SGD)
    bf16 = nnlab.fit(model, data, key=0, config=SGD.replace(compute_dtype="bfloat16"))
    for collection in ("batch_stats", "normalization"):
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16.state.model_state[collection]))
    mean = lambda r: r.state.model_state["batch_stats"]["BatchNorm_0"]["mean"]  # noqa: E731
    assert not np.allclose(mean(bf16), init["batch_stats"]["BatchNorm_0"]["mean"], atol=1e-3)
    np.testing.assert_allclose(mean(bf16), mean(f32), rtol=0.05, atol=0.02)


def test_flax_cnn_is_the_flax_example_network():
    model = nnlab.get_model("flax-cnn")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    shapes = {f"{layer}.{name}": v.shape for layer, p in variables["params"].items() for name, v in p.items()}
    assert shapes == {
        "Conv_0.kernel": (3, 3, 1, 32),
        "Conv_0.bias": (32,),
        "Conv_1.kernel": (3, 3, 32, 64),
        "Conv_1.bias": (64,),
        "Dense_0.kernel": (3136, 256),
        "Dense_0.bias": (256,),
        "Dense_1.kernel": (256, 10),
        "Dense_1.bias": (10,),
    }
    assert nnlab.report.count_params(variables["params"]) == 824_458
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    p = variables["params"]
    h = x
    for conv in ("Conv_0", "Conv_1"):
        h = (
            jax.lax.conv_general_dilated(
                h, p[conv]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            + p[conv]["bias"][None, None, None]
        )
        h = jnp.maximum(h, 0.0)
        h = h.reshape(h.shape[0], h.shape[1] // 2, 2, h.shape[2] // 2, 2, h.shape[3]).mean(axis=(2, 4))
    h = jnp.maximum(h.reshape(2, -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None], 0.0)
    ref = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"][None]
    out, _ = model.apply(variables, x, train=False)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"engine": "fast"}, r"engine: expected one of \['auto', 'step', 'unroll', 'scan'\], got 'fast'"),
        ({"unroll": 0}, "unroll: expected a positive integer, got 0"),
        ({"compute_dtype": "float16"}, r"compute_dtype: expected one of \['float32', 'bfloat16'\], got 'float16'"),
        ({"devices": -1}, r"devices: expected an int >= 0 \(0: all devices\), got -1"),
        ({"devices": 1.5}, r"devices: expected an int >= 0"),
        ({"member_shards": 0}, "member_shards: expected a positive integer, got 0"),
    ],
)
def test_bad_engine_config_is_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        SGD.replace(**changes)


def test_more_devices_than_jax_sees_is_rejected():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"devices: expected at most the {n} devices JAX sees, got {n + 1}"):
        _fit(SGD.replace(devices=n + 1))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's fusion decisions")
def test_unrolled_steps_keep_each_steps_state_instead_of_recomputing_it():
    """XLA:CPU would fuse every earlier step's optimizer update (momentum, weight decay, member
    mask) into each later step and recompute the chain: 8 unrolled steps then read 10.7x the
    bytes of one step. Kept in memory between steps, the chunk costs what its steps cost (8.0x)."""
    config = SGD.replace(batch_size=16, weight_decay=1e-4)
    model = nnlab.nn.mlp([32, 256, 64, 2])
    tx = make_tx(config, 8)
    step = members_step(make_train_step(classification_objective(model.apply, config.loss), tx))
    x_all, y_all = jnp.ones((128, 32)), jnp.zeros((128,), jnp.int32)
    state = init_members(model, tx, x_all[:1], keys=[0])
    args = (state, jnp.zeros((1, 3)), 0, jnp.ones((1,), bool), x_all, y_all, jnp.zeros((1, 8, 16), jnp.int32))

    def bytes_accessed(count):
        return jax.jit(unrolled_steps(step, count)).lower(*args).compile().cost_analysis()["bytes accessed"]

    assert bytes_accessed(8) <= 9.0 * bytes_accessed(1)
