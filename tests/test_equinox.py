"""Equinox models in nnlab: the same outputs as their own (vmapped) call, `fit` equal to an
Equinox training loop, S members equal to S runs, checkpoint and resume, and the way back to the
user's model; nnlab imports without Equinox."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from own_loop import (
    assert_trees_close,
    fit_schedule,
    labelled_data,
    members_like_separate_fits,
    resumed_like_whole,
)

import nnlab

eqx = pytest.importorskip("equinox")
ROOT = Path(__file__).resolve().parents[1]


class MLP(eqx.Module):
    """x: [6] -> dense 16, batch norm, relu, dropout 0.3 -> dense 3."""

    hidden: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k_hidden, k_out = jax.random.split(key)
        self.hidden = eqx.nn.Linear(6, 16, key=k_hidden)
        self.norm = eqx.nn.BatchNorm(16, axis_name="batch", mode="batch")
        self.dropout = eqx.nn.Dropout(0.3)
        self.out = eqx.nn.Linear(16, 3, key=k_out)

    def __call__(self, x, state, *, key):
        h, state = self.norm(self.hidden(x), state)
        return self.out(self.dropout(jax.nn.relu(h), key=key)), state


class CNN(eqx.Module):
    """x: [8, 8, 1] (nnlab's channels-last sample) -> 3x3 conv 4, batch norm, relu, 2x2 max pool,
    dropout 0.3, dense 3."""

    conv: eqx.nn.Conv2d
    norm: eqx.nn.BatchNorm
    pool: eqx.nn.MaxPool2d
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k_conv, k_out = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(1, 4, 3, padding=1, key=k_conv)
        self.norm = eqx.nn.BatchNorm(4, axis_name="batch", mode="batch")
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.dropout = eqx.nn.Dropout(0.3)
        self.out = eqx.nn.Linear(4 * 4 * 4, 3, key=k_out)

    def __call__(self, x, state, *, key):
        h, state = self.norm(self.conv(jnp.transpose(x, (2, 0, 1))), state)
        h = self.pool(jax.nn.relu(h))
        return self.out(self.dropout(h.reshape(-1), key=key)), state


class Plain(eqx.Module):
    """A stateless model: x: [6] -> dense 16, tanh, dropout 0.3 -> dense 3."""

    hidden: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k_hidden, k_out = jax.random.split(key)
        self.hidden = eqx.nn.Linear(6, 16, key=k_hidden)
        self.dropout = eqx.nn.Dropout(0.3)
        self.out = eqx.nn.Linear(16, 3, key=k_out)

    def __call__(self, x, *, key):
        return self.out(self.dropout(jnp.tanh(self.hidden(x)), key=key))


MODELS = {"mlp": (MLP, (6,)), "cnn": (CNN, (8, 8, 1))}
CONFIG = nnlab.TrainConfig(
    epochs=2, batch_size=16, optimizer="heavy_ball", learning_rate=0.05, momentum=0.9, engine="step"
)


def model_of(name) -> nnlab.Model:
    return nnlab.nn.from_equinox(MODELS[name][0], input_shape=MODELS[name][1])


def dataset(name, n, seed) -> nnlab.Dataset:
    return labelled_data(MODELS[name][1], n, seed)


def own_call(model, state, x, key):
    """The Equinox way to run a batch: vmap over samples with the batch norm's axis name, one key each."""
    keys = None if key is None else jax.random.split(key, x.shape[0])
    return jax.vmap(
        lambda xi, s, k: model(xi, s, key=k),
        in_axes=(0, None, None if key is None else 0),
        out_axes=(0, None),
        axis_name="batch",
    )(x, state, keys)


def params_of(model):
    return eqx.filter(model, eqx.is_inexact_array)


@pytest.mark.parametrize("name", list(MODELS))
def test_init_is_make_with_state_and_apply_is_the_models_own_call(name):
    model = model_of(name)
    x = jnp.asarray(dataset(name, 10, seed=1).x)
    variables = model.init(jax.random.key(0), x[:1])
    assert sorted(variables) == ["params", "state"]
    own, state = eqx.nn.make_with_state(MODELS[name][0])(jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, variables["params"], params_of(own))
    jax.tree.map(np.testing.assert_array_equal, variables["state"], state)

    apply = jax.jit(model.apply, static_argnames="train")
    call = eqx.filter_jit(own_call)
    outputs, updates = apply(variables, x, train=True, key=jax.random.key(7))
    own_outputs, own_state = call(own, state, x, jax.random.key(7))
    assert_trees_close(outputs, own_outputs)
    assert sorted(updates) == ["state"]
    assert_trees_close(updates["state"], own_state)
    # the state's leaves: [batch counter, running mean, running variance]
    assert not np.allclose(jax.tree.leaves(updates["state"])[1], jax.tree.leaves(variables["state"])[1])

    outputs, updates = apply({**variables, **updates}, x, train=False)
    assert updates == {}
    assert_trees_close(outputs, call(eqx.nn.inference_mode(own), own_state, x, None)[0])


def test_a_stateless_model_has_params_only_and_its_own_call():
    model = nnlab.nn.from_equinox(Plain, input_shape=(6,))
    x = jnp.asarray(dataset("mlp", 10, seed=1).x)
    variables = model.init(jax.random.key(0), x[:1])
    assert sorted(variables) == ["params"]
    own = Plain(jax.random.key(0))
    outputs, updates = model.apply(variables, x, train=True, key=jax.random.key(3))
    assert updates == {}
    assert_trees_close(outputs, jax.vmap(lambda xi, k: own(xi, key=k))(x, jax.random.split(jax.random.key(3), 10)))
    eval_own = eqx.nn.inference_mode(own)
    assert_trees_close(model.apply(variables, x, train=False)[0], jax.vmap(lambda xi: eval_own(xi, key=None))(x))
    back = nnlab.nn.to_equinox(Plain, variables)
    assert type(back) is Plain
    jax.tree.map(np.testing.assert_array_equal, params_of(back), variables["params"])


@pytest.mark.parametrize("name", list(MODELS))
def test_dropout_follows_the_key_and_evaluation_draws_nothing(name):
    model = model_of(name)
    x = jnp.asarray(dataset(name, 10, seed=1).x)
    variables = model.init(jax.random.key(0), x[:1])
    apply = jax.jit(lambda v, x, k, train: model.apply(v, x, train=train, key=k)[0], static_argnums=3)
    a, again, b = (apply(variables, x, jax.random.key(k), True) for k in (3, 3, 4))
    np.testing.assert_array_equal(a, again)  # one program, run twice
    assert not np.allclose(a, b)
    evaluated = [apply(variables, x, jax.random.key(k), False) for k in (3, 4)]
    np.testing.assert_array_equal(*evaluated)


def equinox_training_loop(name, train: nnlab.Dataset, seed: int):
    """The Equinox way: make_with_state, eqx.filter_value_and_grad and optax inside eqx.filter_jit;
    fit's data order and keys."""
    k_init, steps = fit_schedule(seed, train.n, CONFIG.batch_size, CONFIG.epochs)
    model, state = eqx.nn.make_with_state(MODELS[name][0])(k_init)
    tx = optax.sgd(CONFIG.learning_rate, momentum=CONFIG.momentum)
    opt_state = tx.init(params_of(model))

    @eqx.filter_jit
    def train_step(model, state, opt_state, x, y, key):
        def loss_fn(model, state):
            logits, state = own_call(model, state, x, key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

        (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, state)
        updates, opt_state = tx.update(grads, opt_state, params_of(model))
        return eqx.apply_updates(model, updates), state, opt_state, loss

    initial = params_of(model)
    losses = []
    for idx, key in steps:
        model, state, opt_state, loss = train_step(model, state, opt_state, train.x[idx], train.y[idx], key)
        losses.append(float(loss))
    return model, state, losses, initial


@pytest.mark.optax_promotion
@pytest.mark.parametrize("name", list(MODELS))
def test_fit_equals_a_hand_written_equinox_training_loop(name):
    train = dataset(name, 48, seed=2)
    result = nnlab.fit(model_of(name), train, key=5, config=CONFIG, progress=False)
    model, state, losses, initial = equinox_training_loop(name, train, seed=5)
    assert_trees_close(result.variables["params"], params_of(model))
    assert_trees_close(result.variables["state"], state)
    per_epoch = np.reshape(losses, (CONFIG.epochs, -1)).mean(axis=1)
    np.testing.assert_allclose([h["train_loss"] for h in result.history], per_epoch, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.variables["params"].out.weight, initial.out.weight, atol=1e-3)


@pytest.mark.optax_promotion
def test_three_members_equal_three_separate_fits():
    train, val = dataset("cnn", 48, seed=2), dataset("cnn", 20, seed=3)
    many = members_like_separate_fits(model_of("cnn"), train, val, CONFIG.replace(engine="auto"))
    running_mean = np.asarray(jax.tree.leaves(many.state.model_state["state"])[1])  # [3, 4]: each member its own
    assert running_mean.shape == (3, 4)
    assert not np.allclose(running_mean[0], running_mean[1]) and not np.allclose(running_mean[1], running_mean[2])


@pytest.mark.optax_promotion
def test_checkpoint_and_resume_end_like_the_uninterrupted_run(tmp_path):
    train, val = dataset("mlp", 48, seed=2), dataset("mlp", 20, seed=3)
    model, config = model_of("mlp"), CONFIG.replace(epochs=3)
    whole, best = resumed_like_whole(model, train, val, config, tmp_path)
    own, state = nnlab.nn.to_equinox(MLP, best)
    x = jnp.asarray(val.x)
    assert_trees_close(
        own_call(eqx.nn.inference_mode(own), state, x, None)[0], model.apply(whole.variables, x, train=False)[0]
    )


@pytest.mark.optax_promotion
@pytest.mark.parametrize("name", list(MODELS))
def test_a_trained_model_goes_back_to_the_users_model_type(name):
    train = dataset(name, 48, seed=2)
    model = model_of(name)
    result = nnlab.fit(model, train, key=1, config=CONFIG, progress=False)
    own, state = nnlab.nn.to_equinox(MODELS[name][0], result.variables)
    assert type(own) is MODELS[name][0] and type(state) is eqx.nn.State
    jax.tree.map(np.testing.assert_array_equal, params_of(own), result.variables["params"])
    jax.tree.map(np.testing.assert_array_equal, state, result.variables["state"])
    x = jnp.asarray(train.x)
    assert_trees_close(
        own_call(eqx.nn.inference_mode(own), state, x, None)[0],
        model.apply(result.variables, x, train=False)[0],
        rtol=1e-6,
        atol=1e-6,
    )


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="model_factory: expected a function key -> eqx.Module"):
        nnlab.nn.from_equinox(lambda key: jax.random.normal(key, (3,)))

    class Counted(eqx.Module):
        out: eqx.nn.Linear
        calls: jax.Array

        def __init__(self, key):
            self.out, self.calls = eqx.nn.Linear(6, 3, key=key), jnp.zeros((), jnp.int32)

        def __call__(self, x, *, key):
            return self.out(x)

    with pytest.raises(TypeError, match=r"other arrays at \['.calls'\]"):
        nnlab.nn.from_equinox(Counted)
    model = model_of("mlp")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    with pytest.raises(ValueError, match="key: expected the step's PRNG key"):
        model.apply(variables, jnp.zeros((2, 6)), train=True)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), variables)
    with pytest.raises(ValueError, match=r"variables\['params'\]: expected one model's variables"):
        nnlab.nn.to_equinox(MLP, stacked)
    with pytest.raises(ValueError, match=r"variables: expected the collections \['params', 'state'\]"):
        nnlab.nn.to_equinox(MLP, {"params": variables["params"]})


def test_nnlab_imports_without_equinox_and_names_the_extra():
    script = """
        import sys
        sys.modules["equinox"] = None  # as if it were not installed
        import nnlab
        try:
            nnlab.nn.from_equinox(lambda key: None)
        except ImportError as e:
            print(e)
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert "pip install 'nnlab[equinox]'" in out.stdout
