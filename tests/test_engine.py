import functools
import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab
from nnlab.train import make_engine, pick_engine, with_compute_dtype

SGD = nnlab.TrainConfig(epochs=2, batch_size=32, optimizer="heavy_ball", learning_rate=0.1)


def _fit(config=SGD, model=None):
    train = nnlab.spirals(256, key=jax.random.key(0))
    return nnlab.fit(model or nnlab.mlp([2, 16, 2], activation="tanh"), train, key=jax.random.key(0), config=config)


@pytest.mark.parametrize("engine, platform, expected", [
    ("auto", "cpu", "unroll"), ("auto", "gpu", "scan"), ("auto", "tpu", "scan"),
    ("unroll", "gpu", "unroll"), ("scan", "cpu", "scan"), ("step", "gpu", "step"),
])
def test_auto_picks_per_backend(engine, platform, expected):
    assert pick_engine(engine, platform) == expected


class TinyConvNet(nn.Module):
    """x: [batch, 6, 6, 1] -> conv3x3 4, relu, dropout 0.25 -> dense 2."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = nn.Dropout(0.25, deterministic=not train)(nn.relu(nn.Conv(4, (3, 3))(x)))
        return nn.Dense(2)(h.reshape(h.shape[0], -1))


@functools.cache
def _fit_images(config):
    """Keyed dropout: every strategy must draw the same randomness in each step."""
    x = jax.random.uniform(jax.random.key(2), (128, 6, 6, 1))
    train = nnlab.make_dataset(np.asarray(x), np.asarray(x[:, :4].mean(axis=(1, 2, 3)) > 0.5, np.int32), num_classes=2)
    model = nnlab.from_linen(TinyConvNet(), input_shape=(6, 6, 1))
    return nnlab.fit(model, train, key=jax.random.key(0), config=config)


@pytest.mark.parametrize("engine, unroll", [("unroll", 3), ("scan", 8)])
def test_strategies_give_the_per_step_parameters(engine, unroll):
    """4 steps per epoch: unroll=3 runs a chunk of 3 and a remainder of 1."""
    ref = _fit_images(SGD.replace(engine="step"))
    r = _fit_images(SGD.replace(engine=engine, unroll=unroll))
    assert (ref.engine, r.engine) == ("step", engine)
    assert int(r.state.step) == int(ref.state.step) == 8
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), r.variables, ref.variables)
    np.testing.assert_allclose([h["train_loss"] for h in r.history], [h["train_loss"] for h in ref.history], rtol=1e-5)
    assert [h["train_error"] for h in r.history] == [h["train_error"] for h in ref.history]


def test_engine_on_cpu_is_reported_and_compiles_once():
    train = nnlab.spirals(64, key=jax.random.key(0))
    model = nnlab.mlp([2, 4, 2])
    tx = nnlab.train.make_tx(SGD, 4)
    state = nnlab.init_state(model, tx, jnp.asarray(train.x[:1]), key=jax.random.key(0))
    engine = make_engine(nnlab.train.make_train_step(model, tx, SGD), "scan")
    order = jnp.arange(64).reshape(4, 16)
    for _ in range(3):
        state, metrics = engine.run(state, jnp.asarray(train.x), jnp.asarray(train.y), order)
    assert engine.name == "scan" and engine.run._cache_size() == 1
    assert int(state.step) == 12 and float(metrics[2]) == 64.0
    assert _fit().engine == pick_engine("auto", jax.devices()[0].platform)


def test_bfloat16_computes_in_bfloat16_with_float32_outputs():
    model = nnlab.mlp([2, 8, 3], activation="tanh")
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
    assert nnlab.params_sha256(r.variables["params"]) != nnlab.params_sha256(ref.variables["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=0.1), r.variables, ref.variables)
    np.testing.assert_allclose(r.history[-1]["train_loss"], ref.history[-1]["train_loss"], rtol=0.05)


_FOUR_DEVICES = textwrap.dedent("""
    import json, jax, numpy as np, nnlab
    train = nnlab.spirals(256, key=jax.random.key(0))
    val = nnlab.spirals(64, key=jax.random.key(1))
    base = nnlab.TrainConfig(epochs=2, batch_size=32, optimizer="heavy_ball", learning_rate=0.1)
    out = {"devices": len(jax.devices())}
    for devices, engine in ((1, "step"), (4, "step"), (4, "scan"), (0, "unroll")):
        r = nnlab.fit(nnlab.mlp([2, 16, 2], activation="tanh"), train, key=jax.random.key(0), val=val,
                      config=base.replace(devices=devices, engine=engine))
        leaf = jax.tree.leaves(r.state.params)[0]
        out[f"{devices}-{engine}"] = {
            "params": [np.asarray(a).tolist() for a in jax.tree.leaves(r.variables["params"])],
            "loss": [h["train_loss"] for h in r.history], "val_error": [h["val_error"] for h in r.history],
            "shards": len(leaf.sharding.device_set)}
    print(json.dumps(out))
""")


def test_four_cpu_devices_train_like_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    ref = out["1-step"]
    assert ref["shards"] == 1
    for run in ("4-step", "4-scan", "0-unroll"):
        assert out[run]["shards"] == 4
        for a, b in zip(out[run]["params"], ref["params"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out[run]["loss"], ref["loss"], rtol=1e-5)
        assert out[run]["val_error"] == ref["val_error"]


def test_flax_cnn_is_the_flax_example_network():
    model = nnlab.get_model("flax-cnn")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    shapes = {f"{layer}.{name}": v.shape for layer, p in variables["params"].items() for name, v in p.items()}
    assert shapes == {"Conv_0.kernel": (3, 3, 1, 32), "Conv_0.bias": (32,), "Conv_1.kernel": (3, 3, 32, 64),
                      "Conv_1.bias": (64,), "Dense_0.kernel": (3136, 256), "Dense_0.bias": (256,),
                      "Dense_1.kernel": (256, 10), "Dense_1.bias": (10,)}
    assert nnlab.count_params(variables["params"]) == 824_458
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    p = variables["params"]
    h = x
    for conv in ("Conv_0", "Conv_1"):
        h = jax.lax.conv_general_dilated(h, p[conv]["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + p[conv]["bias"][None, None, None]
        h = jnp.maximum(h, 0.0)
        h = h.reshape(h.shape[0], h.shape[1] // 2, 2, h.shape[2] // 2, 2, h.shape[3]).mean(axis=(2, 4))
    h = jnp.maximum(h.reshape(2, -1) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None], 0.0)
    ref = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"][None]
    out, _ = model.apply(variables, x, train=False)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("changes, message", [
    ({"engine": "fast"}, r"engine: expected one of \['auto', 'step', 'unroll', 'scan'\], got 'fast'"),
    ({"unroll": 0}, "unroll: expected a positive integer, got 0"),
    ({"compute_dtype": "float16"}, r"compute_dtype: expected one of \['float32', 'bfloat16'\], got 'float16'"),
    ({"devices": -1}, r"devices: expected an int >= 0 \(0: all devices\), got -1"),
    ({"devices": 1.5}, r"devices: expected an int >= 0"),
])
def test_bad_engine_config_is_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        SGD.replace(**changes)


def test_more_devices_than_jax_sees_is_rejected():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"devices: expected at most the {n} devices JAX sees, got {n + 1}"):
        _fit(SGD.replace(devices=n + 1))
