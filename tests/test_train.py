import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnlab

SGD = nnlab.TrainConfig(epochs=5, batch_size=32, optimizer="heavy_ball", learning_rate=0.1)


def _spirals():
    return nnlab.data.spirals(256, key=jax.random.key(0)), nnlab.data.spirals(128, key=jax.random.key(1))


def _fit(seed=0, config=SGD, **kw):
    train, val = _spirals()
    return nnlab.fit(
        nnlab.nn.mlp([2, 16, 2], activation="tanh"), train, key=jax.random.key(seed), config=config, val=val, **kw
    )


def test_same_seed_same_history_and_params_bitwise():
    a, b = _fit(), _fit()
    assert a.history == [dict(h, seconds=h2["seconds"]) for h, h2 in zip(b.history, a.history, strict=True)]
    assert nnlab.report.params_sha256(a.variables["params"]) == nnlab.report.params_sha256(b.variables["params"])


def test_different_seeds_give_different_parameters():
    assert nnlab.report.params_sha256(_fit(0).variables["params"]) != nnlab.report.params_sha256(
        _fit(1).variables["params"]
    )


def test_early_stopping_restores_the_best_epoch():
    """Train far too hard on a small noisy set: validation error rises; the result is the best epoch's."""
    train = nnlab.data.blobs(60, key=jax.random.key(0), spread=1.5)
    val = nnlab.data.blobs(300, key=jax.random.key(1), spread=1.5)
    cfg = nnlab.TrainConfig(epochs=200, batch_size=10, optimizer="heavy_ball", learning_rate=0.05, patience=5)
    snapshots = {}

    def keep(epoch, state, record):
        snapshots[epoch] = jax.tree.map(np.asarray, state.params)

    r = nnlab.fit(
        nnlab.nn.mlp([2, 64, 64, 3], activation="relu"),
        train,
        key=jax.random.key(0),
        config=cfg,
        val=val,
        callbacks=[keep],
    )
    errors = [h["val_error"] for h in r.history]
    assert r.stopped_early and r.epochs_run == r.best_epoch + 5 < 200
    assert errors[r.best_epoch - 1] == min(errors) < errors[-1]
    jax.tree.map(np.testing.assert_array_equal, r.variables["params"], snapshots[r.best_epoch])


def test_callback_can_stop():
    r = _fit(callbacks=[lambda epoch, state, record: epoch == 2])
    assert r.epochs_run == 2 and r.stopped_early and int(r.state.epoch) == 2


def test_xor_is_learned():
    results, _ = nnlab.run(nnlab.configs.get_config("xor"))
    assert results["test_errors"] == 0 and results["params"] == 9


@pytest.mark.optax_promotion
def test_short_mnist_run_above_90_percent(mnist_data):
    train, test = mnist_data
    norm = nnlab.data.fit_normalization(train.x[:10000])
    model = nnlab.nn.with_normalization(nnlab.get_model("mnist-mlp"), norm)
    r = nnlab.fit(
        model,
        train.take(10000),
        key=jax.random.key(0),
        config=nnlab.TrainConfig(epochs=2, batch_size=64, optimizer="adam", learning_rate=1e-3),
    )
    assert nnlab.evaluate(model, r.variables, test.x[:2000], test.y[:2000], num_classes=10).accuracy > 0.90


def test_full_batch_gradient_descent_takes_one_step_per_epoch():
    r = _fit(config=SGD.replace(batch_size=None, epochs=3))
    assert int(r.state.step) == 3


@pytest.mark.parametrize("engine", ["step", "unroll", "scan"])
def test_later_epochs_compile_nothing(engine):
    """Every program of the loop compiles in the first epoch: epochs 2-4 add no compilation."""
    train, val = _spirals()
    events, seen = [], {}

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    def count(epoch, state, record):
        seen[epoch] = len(events)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        nnlab.fit(
            nnlab.nn.mlp([2, 8, 2]),
            train,
            key=0,
            config=SGD.replace(engine=engine, unroll=3, epochs=4),
            val=val,
            callbacks=[count],
        )
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert seen[1] > 0 and seen[4] == seen[1]


def _bad(x, y, num_classes=2):
    return nnlab.Dataset(np.asarray(x), np.asarray(y), num_classes, "train")


X = np.zeros((4, 2), np.float32)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (
            _bad(X, [0, 1, 2, 1]),
            ValueError,
            r"train.y: expected labels in \[0, 1\] for 2 classes, got values in \[0, 2\]",
        ),
        (_bad(X, [-1, 1, 0, 1]), ValueError, r"got values in \[-1, 1\]"),
        (
            _bad(X, [[0], [1], [0], [1]]),
            ValueError,
            r"expected labels of shape \[batch\], got shape \(4, 1\) \(squeeze",
        ),
        (_bad(X, [0.0, 1.0, 0.0, 1.0]), TypeError, "expected integer class labels"),
        (
            _bad(np.array([[0, 0], [np.nan, 1], [0, 0], [1, 1]], np.float32), [0, 1, 0, 1]),
            ValueError,
            r"train.x: expected finite values, got NaN or Inf \(first in sample 1\)",
        ),
        (_bad(np.array([[0, 0], [np.inf, 1], [0, 0], [1, 1]], np.float32), [0, 1, 0, 1]), ValueError, "NaN or Inf"),
        (_bad(X, [0, 1, 0]), ValueError, r"train.y: expected 4 labels \(one per sample of x\), got 3"),
        (
            _bad(np.zeros((4, 3), np.float32), [0, 1, 0, 1]),
            ValueError,
            r"train.x: expected shape \[batch, 2\], got \(4, 3\)",
        ),
        (_bad(np.zeros((0, 2), np.float32), np.zeros(0, int)), ValueError, "train.x: expected a non-empty batch"),
    ],
)
def test_bad_training_data_is_rejected_before_jit(data, error, message):
    with pytest.raises(error, match=message):
        nnlab.fit(nnlab.get_model("xor-mlp"), data, key=jax.random.key(0), config=SGD)


def test_wrong_image_shape_is_rejected():
    data = _bad(np.zeros((3, 28, 28), np.float32), [0, 1, 2], num_classes=10)
    with pytest.raises(ValueError, match=r"expected shape \[batch, 28, 28, 1\], got \(3, 28, 28\)"):
        nnlab.fit(nnlab.get_model("mnist-mlp"), data, key=jax.random.key(0), config=SGD)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "epochs: expected a positive integer, got 0"),
        ("batch_size", -3, "batch_size: expected a positive integer"),
        ("optimizer", "lbfgs", "optimizer: expected one of"),
        ("learning_rate", -0.1, "learning_rate: expected a positive number"),
        ("weight_decay", -1.0, "weight_decay: expected a number >= 0"),
        ("loss", "hinge", "loss: expected one of"),
        ("momentum", 1.0, r"momentum: expected a momentum in \[0, 1\), got 1.0"),
    ],
)
def test_bad_config_is_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        nnlab.TrainConfig(**{field: value})


def test_linen_and_functional_mlp_train_identically():
    """The same network as pure functions and as a Linen module, from the same start, ends the same."""
    train, val = _spirals()
    func = nnlab.nn.mlp([2, 8, 2], activation="tanh")
    linen = nnlab.from_linen(nnlab.nn.MLP([8, 2], activation="tanh"))
    tx = nnlab.train.make_tx(SGD, 8)
    s_func = nnlab.train.init_state(func, tx, jnp.asarray(train.x[:1]), key=jax.random.key(0))
    p = s_func.params
    linen_params = {f"dense{i}": {"kernel": layer["W"].T, "bias": layer["s"]} for i, layer in enumerate(p)}
    s_linen = s_func.replace(params=linen_params, opt_state=tx.init(linen_params))
    r_func = nnlab.fit(func, train, key=jax.random.key(0), config=SGD, val=val, state=s_func)
    r_linen = nnlab.fit(linen, train, key=jax.random.key(0), config=SGD, val=val, state=s_linen)
    for i, layer in enumerate(r_func.state.params):
        np.testing.assert_allclose(r_linen.state.params[f"dense{i}"]["kernel"], layer["W"].T, rtol=1e-5, atol=1e-6)
    # two different programs: a validation sample whose two outputs tie up to rounding may flip
    np.testing.assert_allclose(
        [h["val_error"] for h in r_func.history], [h["val_error"] for h in r_linen.history], rtol=0, atol=1.01 / val.n
    )


def test_patience_without_validation_is_an_error():
    train, _ = _spirals()
    with pytest.raises(ValueError, match="patience: expected validation data"):
        nnlab.fit(nnlab.nn.mlp([2, 4, 2]), train, key=jax.random.key(0), config=SGD.replace(patience=3))


def test_numpy_integer_seed_is_a_key():
    a = _fit(np.int64(3), config=SGD.replace(epochs=1))
    b = _fit(3, config=SGD.replace(epochs=1))
    assert nnlab.report.params_sha256(a.variables["params"]) == nnlab.report.params_sha256(b.variables["params"])


XOR = nnlab.data.xor()


@pytest.mark.optax_promotion
def test_divergence_stops_at_that_epoch_and_is_never_best_or_checkpointed(tmp_path):
    """Finding: divergence was silent: the loss turned NaN, a NaN epoch was kept as "best",
    checkpointed and served by `nnlab eval`. Adam at learning rate 3e38 on XOR keeps epoch 1
    finite and overflows the parameters in a later epoch."""
    config = nnlab.TrainConfig(epochs=6, batch_size=None, optimizer="adam", learning_rate=3e38, loss="squared_error")
    ckpt = nnlab.Checkpointer(tmp_path)
    with pytest.raises(
        nnlab.train.DivergenceError,
        match=r"epoch (\d+): training diverged \(.*(nan|inf|non-finite).*\); "
        r"likely cause: the learning rate 3e\+38 is too large .* Epoch \1 was not kept",
    ) as error:
        nnlab.fit(nnlab.get_model("xor-mlp"), XOR, key=jax.random.key(0), config=config, val=XOR, checkpointer=ckpt)
    diverged = int(error.value.args[0].split()[1].rstrip(":"))
    assert diverged >= 2 and ckpt.epochs() == list(range(1, diverged))
    saved = nnlab.checkpoint.read_checkpoint(ckpt.latest())
    history = saved.log["histories"][0]
    assert saved.log["tracker"]["best_epoch"] == [diverged - 1] and len(history) == diverged - 1
    assert all(np.isfinite([h["train_loss"], h["val_loss"]]).all() for h in history)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved.best_variables))


@pytest.mark.parametrize("field", ["learning_rate", "weight_decay", "l1"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_config_values_are_refused(field, value):
    """Finding: learning_rate=inf, weight_decay=inf and l1=inf were accepted."""
    with pytest.raises(ValueError, match=f"{field}: expected a (positive number|number >= 0), got {value}"):
        nnlab.TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="noise: expected a number >= 0, got inf"):
        nnlab.data.Augmentation(noise=float("inf"))


@pytest.mark.optax_promotion
def test_labels_beyond_the_models_outputs_are_refused():
    """Finding: a Dataset with num_classes=20 trained a 10-output model: labels 10-19 became
    all-zero one-hot rows, silently."""
    x = np.asarray(jax.random.uniform(jax.random.key(0), (40, 2)))
    data = nnlab.Dataset(x, np.arange(40, dtype=np.int32) % 20, 20, "train")
    model = nnlab.nn.mlp([2, 8, 10], input_shape=(2,))
    message = r"expected labels in \[0, 9\] for a model with 10 output\(s\), got labels up to 19"
    with pytest.raises(ValueError, match="train.y: " + message):
        nnlab.fit(model, data, key=jax.random.key(0), config=SGD)
    with pytest.raises(ValueError, match="y: " + message):
        nnlab.evaluate(model, model.init(jax.random.key(1), x[:1]), x, data.y, num_classes=20)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_integer_images_are_refused_with_how_to_scale_them(dtype):
    """Finding: integer pixel arrays 0..255 were accepted without scaling."""
    x = (np.arange(4 * 28 * 28) % 256).reshape(4, 28, 28, 1).astype(dtype)
    y = np.arange(4, dtype=np.int32)
    message = (
        r"expected floating-point inputs, got shape \(4, 28, 28, 1\) and dtype .* \(values 0 to 255\); "
        r"scale them first, e.g. x.astype\(np.float32\) / 255"
    )
    with pytest.raises(TypeError, match="train.x: " + message):
        nnlab.fit(nnlab.get_model("mnist-mlp"), nnlab.Dataset(x, y, 10, "train"), key=jax.random.key(0), config=SGD)
    with pytest.raises(TypeError, match="data.x: " + message):
        nnlab.data.make_dataset(x, y, num_classes=10)


def test_float64_values_beyond_float32_are_refused():
    """Finding: float64 inputs that overflow float32 (to Inf) were accepted."""
    x = np.zeros((4, 2))
    x[2, 1] = -1e39
    with pytest.raises(
        ValueError,
        match=r"train.x: expected values within float32's range .* got float64 values "
        r"up to 1e\+39 \(first in sample 2\), which would become Inf",
    ):
        nnlab.fit(nnlab.get_model("xor-mlp"), _bad(x, [0, 1, 0, 1]), key=jax.random.key(0), config=SGD)
    assert nnlab.data.make_dataset(x / 1e10, [0, 1, 0, 1], num_classes=2).x.dtype == np.float32  # in range: fine


def test_initial_state_equals_the_default_compiled_init_and_setup_is_timed():
    """fit compiles its once-run initialization at a lower LLVM level (faster to compile): the
    state it starts from (seen after an epoch of updates scaled by 0) equals init_members compiled
    by default, within float rounding; the time before the first epoch is reported apart."""
    model, tx = nnlab.get_model("mnist-cnn"), optax.sgd(0.0)
    config = nnlab.TrainConfig(epochs=1, batch_size=8)
    data = nnlab.data.Dataset(np.zeros((8, 28, 28, 1), np.float32), np.arange(8) % 10, 10, "zeros")
    seen = []
    keep = lambda epoch, state, record: seen.append(jax.tree.map(np.asarray, state.params))  # noqa: E731
    result = nnlab.fit(model, data, key=3, config=config, tx=tx, callbacks=[keep], progress=False)
    init = jax.jit(lambda k: nnlab.train.init_members(model, tx, jnp.zeros((1, 28, 28, 1)), keys=k))
    want = init(nnlab.train.member_keys([3]))
    for a, b in zip(jax.tree.leaves(seen[0]), jax.tree.leaves(want.params), strict=True):
        np.testing.assert_allclose(a, np.asarray(b)[0], rtol=1e-6, atol=1e-7)
    assert result.setup_seconds > 0 and len(result.history) == 1
