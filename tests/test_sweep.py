import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab
from nnlab import sweep
from nnlab.cli import _parse_param


def test_grid_lists_every_combination():
    assert sweep.grid({"width": [16, 32], "learning_rate": [1e-3, 1e-2]}) == [
        {"width": 16, "learning_rate": 1e-3},
        {"width": 16, "learning_rate": 1e-2},
        {"width": 32, "learning_rate": 1e-3},
        {"width": 32, "learning_rate": 1e-2},
    ]


def test_random_search_draws_in_range_log_uniform_and_repeats():
    space = {"learning_rate": (1e-4, 1e-1), "drop_rate": (0.0, 0.5), "activation": ["relu", "tanh"]}
    a = sweep.random_search(space, 400, key=jax.random.key(0))
    assert a == sweep.random_search(space, 400, key=jax.random.key(0))
    lr = np.array([s["learning_rate"] for s in a])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1
    # log-uniform: each decade holds about a third of the draws
    assert all(100 < np.sum((lr >= lo) & (lr < 10 * lo)) < 170 for lo in (1e-4, 1e-3, 1e-2))
    assert {s["activation"] for s in a} == {"relu", "tanh"}


@pytest.mark.parametrize(
    "space, error",
    [
        ({"lr": [0.1]}, "space: expected knobs from"),
        ({"width": []}, r"space\['width'\]: expected a non-empty list"),
        ({"learning_rate": (0.0, 1.0)}, r"space\['learning_rate'\]: expected a range"),
    ],
)
def test_bad_spaces_are_named(space, error):
    with pytest.raises(ValueError, match=error):
        sweep.random_search(space, 2, key=jax.random.key(0))


def test_settings_that_keep_the_program_share_one():
    settings = sweep.grid({"learning_rate": [1e-3, 1e-2], "weight_decay": [0.0, 1e-4], "width": [16, 32]})
    groups = sweep._programs(nnlab.configs.get_config("mnist-mlp"), settings)
    assert sorted(len(g) for g in groups.values()) == [4, 4]


def test_dropout_zeroes_hidden_units_and_rescales_the_rest():
    model = nnlab.nn.mlp([1, 2000, 1], activation="identity", drop_rate=0.25)
    params = [{"W": jnp.ones((2000, 1)), "s": jnp.zeros(2000)}, {"W": jnp.ones((1, 2000)) / 2000, "s": jnp.zeros(1)}]
    x = jnp.ones((1, 1))
    out_eval, _ = model.apply({"params": params}, x, train=False)
    out_train, _ = model.apply({"params": params}, x, train=True, key=jax.random.key(0))
    assert float(out_eval[0, 0]) == pytest.approx(1.0)
    # kept units carry 1 / 0.75; the mean over 2000 units is 1 within sampling noise (std ~0.011)
    assert float(out_train[0, 0]) == pytest.approx(1.0, abs=0.05)
    assert float(out_train[0, 0]) != pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="drop_rate: expected a fraction in \\[0, 1\\), got 1.0"):
        nnlab.nn.mlp([1, 2, 1], drop_rate=1.0)


@pytest.mark.optax_promotion
def test_sweep_drops_what_does_not_learn_and_matches_single_runs(mnist_data):
    base = nnlab.configs.get_config("mnist-mlp").replace(train_subset=1500, n_val=500)
    base = base.replace(
        train=base.train.replace(epochs=1, batch_size=32, augmentation=nnlab.data.Augmentation(), patience=None)
    )
    settings = sweep.grid({"learning_rate": [3e-3, 1e-2, 30.0], "width": [16]})
    out = sweep.sweep(base, settings, pilot_epochs=1, pilot_subset=1000)
    assert [p["learned"] for p in out["pilot"]] == [True, True, False]
    assert [r["val_error"] for r in out["rows"]] == sorted(r["val_error"] for r in out["rows"])
    assert out["programs"] == 1 and len(out["rows"]) == 2
    best = out["best"]
    single, _ = nnlab.run(
        base.replace(
            model_kwargs={**base.model_kwargs, "width": best["width"]},
            train=base.train.replace(learning_rate=best["learning_rate"]),
        )
    )
    assert abs(single["val_error"] - best["val_error"]) <= 2 / 500
    assert abs(single["test_error"] - best["test_error"]) <= 2 / 10000


@pytest.mark.parametrize(
    "text, expected",
    [
        ("width=100,200", ("width", [100, 200])),
        ("learning_rate=1e-4:1e-2", ("learning_rate", (1e-4, 1e-2))),
        ("activation=relu,tanh", ("activation", ["relu", "tanh"])),
    ],
)
def test_cli_param_syntax(text, expected):
    assert _parse_param(text) == expected


def test_cli_param_names_the_knobs():
    with pytest.raises(ValueError, match="--param: expected NAME=V1,V2,... or NAME=LOW:HIGH with NAME in"):
        _parse_param("lr=0.1")
