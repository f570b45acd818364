"""Flax NNX models in nnlab: the same outputs as their own call, `fit` equal to an NNX training
loop, S members equal to S runs, checkpoint and resume, and the way back to the user's module."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from own_loop import (
    assert_trees_close,
    fit_schedule,
    labelled_data,
    members_like_separate_fits,
    resumed_like_whole,
)

import nnlab


class MLP(nnx.Module):
    """x: [batch, 6] -> dense 16, batch norm, relu, dropout 0.3 -> dense 3."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(6, 16, rngs=rngs)
        self.norm = nnx.BatchNorm(16, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.dropout(nnx.relu(self.norm(self.hidden(x)))))


class CNN(nnx.Module):
    """x: [batch, 8, 8, 1] -> 3x3 conv 4, batch norm, relu, 2x2 max pool, dropout 0.3, dense 3."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.norm(self.conv(x))), window_shape=(2, 2), strides=(2, 2))
        return self.out(self.dropout(x.reshape(x.shape[0], -1)))


MODULES = {"mlp": (MLP, (6,)), "cnn": (CNN, (8, 8, 1))}
CONFIG = nnlab.TrainConfig(
    epochs=2, batch_size=16, optimizer="heavy_ball", learning_rate=0.05, momentum=0.9, engine="step"
)


def factory(name):
    cls = MODULES[name][0]
    return lambda rngs: cls(rngs=rngs)


def model_of(name) -> nnlab.Model:
    return nnlab.nn.from_nnx(factory(name), input_shape=MODULES[name][1])


def dataset(name, n, seed) -> nnlab.Dataset:
    return labelled_data(MODULES[name][1], n, seed)


def pure(module, kind) -> dict:
    return nnx.to_pure_dict(nnx.state(module, kind))


@pytest.mark.parametrize("name", list(MODULES))
def test_init_is_the_factory_with_the_documented_rngs_and_apply_is_the_modules_own_call(name):
    model = model_of(name)
    x = jnp.asarray(dataset(name, 10, seed=1).x)
    variables = model.init(jax.random.key(0), x[:1])
    assert sorted(variables) == ["batch_stats", "params"]
    k_params, k_dropout = jax.random.split(jax.random.key(0))
    own = factory(name)(nnx.Rngs(params=k_params, dropout=k_dropout))
    jax.tree.map(np.testing.assert_array_equal, variables["params"], pure(own, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], pure(own, nnx.BatchStat))

    apply = jax.jit(model.apply, static_argnames="train")
    call = nnx.jit(lambda module, x: module(x))
    own.train()
    nnx.reseed(own, dropout=jax.random.key(7))
    outputs, updates = apply(variables, x, train=True, key=jax.random.key(7))
    assert_trees_close(outputs, call(own, x))
    assert sorted(updates) == ["batch_stats"]
    assert_trees_close(updates["batch_stats"], pure(own, nnx.BatchStat))
    assert not np.allclose(updates["batch_stats"]["norm"]["mean"], variables["batch_stats"]["norm"]["mean"])

    own.eval()
    trained = {**variables, **updates}
    outputs, updates = apply(trained, x, train=False)
    assert updates == {}
    assert_trees_close(outputs, call(own, x))


@pytest.mark.parametrize("name", list(MODULES))
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


def nnx_training_loop(name, train: nnlab.Dataset, seed: int):
    """The NNX way: a module, nnx.Optimizer, nnx.value_and_grad inside nnx.jit; fit's data order and keys."""
    k_init, steps = fit_schedule(seed, train.n, CONFIG.batch_size, CONFIG.epochs)
    k_params, k_dropout = jax.random.split(k_init)
    module = factory(name)(nnx.Rngs(params=k_params, dropout=k_dropout))
    optimizer = nnx.Optimizer(module, optax.sgd(CONFIG.learning_rate, momentum=CONFIG.momentum), wrt=nnx.Param)

    @nnx.jit
    def train_step(module, optimizer, x, y, key):
        nnx.reseed(module, dropout=key)

        def loss_fn(module):
            return optax.softmax_cross_entropy_with_integer_labels(module(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(module)
        optimizer.update(module, grads)
        return loss

    initial = jax.tree.map(np.array, pure(module, nnx.Param))
    module.train()
    losses = [float(train_step(module, optimizer, train.x[idx], train.y[idx], key)) for idx, key in steps]
    return module, losses, initial


@pytest.mark.optax_promotion
@pytest.mark.parametrize("name", list(MODULES))
def test_fit_equals_a_hand_written_nnx_training_loop(name):
    train = dataset(name, 48, seed=2)
    result = nnlab.fit(model_of(name), train, key=5, config=CONFIG, progress=False)
    module, losses, initial = nnx_training_loop(name, train, seed=5)
    assert_trees_close(result.variables["params"], pure(module, nnx.Param))
    assert_trees_close(result.variables["batch_stats"], pure(module, nnx.BatchStat))
    per_epoch = np.reshape(losses, (CONFIG.epochs, -1)).mean(axis=1)
    np.testing.assert_allclose([h["train_loss"] for h in result.history], per_epoch, rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.variables["params"]["out"]["kernel"], initial["out"]["kernel"], atol=1e-3)


@pytest.mark.optax_promotion
def test_three_members_equal_three_separate_fits():
    train, val = dataset("cnn", 48, seed=2), dataset("cnn", 20, seed=3)
    many = members_like_separate_fits(model_of("cnn"), train, val, CONFIG.replace(engine="auto"))
    means = np.asarray(many.state.model_state["batch_stats"]["norm"]["mean"])  # [3, 4]: each member its own
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])


@pytest.mark.optax_promotion
def test_checkpoint_and_resume_end_like_the_uninterrupted_run(tmp_path):
    train, val = dataset("mlp", 48, seed=2), dataset("mlp", 20, seed=3)
    model, config = model_of("mlp"), CONFIG.replace(epochs=3)
    whole, best = resumed_like_whole(model, train, val, config, tmp_path)
    module = nnlab.nn.to_nnx(factory("mlp"), best)
    module.eval()
    assert_trees_close(module(jnp.asarray(val.x)), model.apply(whole.variables, jnp.asarray(val.x), train=False)[0])


@pytest.mark.optax_promotion
@pytest.mark.parametrize("name", list(MODULES))
def test_a_trained_model_goes_back_to_the_users_module_type(name):
    train = dataset(name, 48, seed=2)
    model = model_of(name)
    result = nnlab.fit(model, train, key=1, config=CONFIG, progress=False)
    module = nnlab.nn.to_nnx(factory(name), result.variables)
    assert type(module) is MODULES[name][0]
    jax.tree.map(np.testing.assert_array_equal, pure(module, nnx.Param), result.variables["params"])
    jax.tree.map(np.testing.assert_array_equal, pure(module, nnx.BatchStat), result.variables["batch_stats"])
    module.eval()
    x = jnp.asarray(train.x)
    assert_trees_close(module(x), model.apply(result.variables, x, train=False)[0], rtol=1e-6, atol=1e-6)


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="module_factory: expected a function rngs -> nnx.Module"):
        nnlab.nn.from_nnx(lambda rngs: nnx.Linear(2, 3, rngs=rngs).kernel)
    for streams in (("params",), "dropout", ()):
        with pytest.raises(ValueError, match="rng_streams: expected a sequence of stream names other than 'params'"):
            nnlab.nn.from_nnx(factory("mlp"), rng_streams=streams)

    class OwnSeed(nnx.Module):  # a stream seeded inside the module: nnlab would not drive it
        def __init__(self, *, rngs):
            self.out = nnx.Linear(2, 3, rngs=rngs)
            self.noise = nnx.Rngs(noise=0).noise.fork()

        def __call__(self, x):
            return self.out(x + jax.random.normal(self.noise(), x.shape))

    with pytest.raises(ValueError, match=r"module keeps \['noise'\]"):
        nnlab.nn.from_nnx(lambda rngs: OwnSeed(rngs=rngs))
    model = nnlab.nn.from_nnx(factory("mlp"), input_shape=(6,))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 6)))
    with pytest.raises(ValueError, match="key: expected the step's PRNG key"):
        model.apply(variables, jnp.zeros((2, 6)), train=True)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), variables)
    with pytest.raises(ValueError, match=r"variables\['params'\]: expected one model's variables"):
        nnlab.nn.to_nnx(factory("mlp"), stacked)


def test_extra_streams_are_driven_by_split_keys():
    class Noisy(nnx.Module):
        def __init__(self, *, rngs):
            self.out = nnx.Linear(2, 3, rngs=rngs)
            self.noise = rngs.noise.fork()
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.dropout(self.out(x + jax.random.normal(self.noise(), x.shape)))

    model = nnlab.nn.from_nnx(lambda rngs: Noisy(rngs=rngs), rng_streams=("dropout", "noise"))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
    own = nnlab.nn.to_nnx(lambda rngs: Noisy(rngs=rngs), variables, rng_streams=("dropout", "noise"))
    k_dropout, k_noise = jax.random.split(jax.random.key(9))
    nnx.reseed(own, dropout=k_dropout, noise=k_noise)
    x = jnp.ones((4, 2))
    assert_trees_close(model.apply(variables, x, train=True, key=jax.random.key(9))[0], own(x))


@pytest.mark.optax_promotion
def test_a_module_with_a_list_of_layers_comes_back_from_a_checkpoint_read_without_a_template(tmp_path):
    class Stack(nnx.Module):
        def __init__(self, *, rngs):
            self.layers = nnx.List([nnx.Linear(6, 6, rngs=rngs) for _ in range(2)])
            self.out = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            for layer in self.layers:
                x = nnx.tanh(layer(x))
            return self.out(x)

    make = lambda rngs: Stack(rngs=rngs)  # noqa: E731
    model = nnlab.nn.from_nnx(make, input_shape=(6,))
    checkpointer = nnlab.Checkpointer(tmp_path)
    result = nnlab.fit(
        model,
        dataset("mlp", 32, seed=2),
        key=0,
        config=CONFIG.replace(epochs=1),
        progress=False,
        checkpointer=checkpointer,
    )
    saved = nnlab.checkpoint.read_checkpoint(checkpointer.latest()).state  # nested dicts, list positions as '0', '1'
    assert sorted(saved["params"]["layers"]) == ["0", "1"]
    module = nnlab.nn.to_nnx(make, {"params": nnlab.train.member(saved["params"], 0)})  # member axis [1, ...]
    jax.tree.map(np.testing.assert_array_equal, pure(module, nnx.Param), result.variables["params"])
