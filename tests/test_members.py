import json

import flax.linen as nn
import jax
import numpy as np
import pytest

import nnlab
from nnlab.cli import main

CFG = nnlab.TrainConfig(epochs=12, batch_size=10, optimizer="heavy_ball", learning_rate=0.05, patience=3)


class _BNDropNet(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dropout -> Dense: batch statistics and dropout keys per member."""

    @nn.compact
    def __call__(self, x, *, train):
        h = nn.Dense(32)(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
        h = nn.Dropout(0.2, deterministic=not train)(nn.relu(h))
        return nn.Dense(3)(h)


def _data():
    return nnlab.data.blobs(60, key=jax.random.key(0), spread=1.5), nnlab.data.blobs(
        200, key=jax.random.key(1), spread=1.5
    )


def _model():
    return nnlab.from_linen(_BNDropNet(), input_shape=(2,), name="bn-drop")


def _assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=1e-6), a, b)


def _assert_histories_close(ha, hb, rtol=1e-5):
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb]
    for key in ("train_loss", "train_error", "val_loss", "val_error"):
        np.testing.assert_allclose([h[key] for h in ha], [h[key] for h in hb], rtol=rtol)


def test_four_vmapped_members_equal_four_separate_runs():
    """BatchNorm statistics, dropout masks and early stopping per member: member i is fit(key=i)."""
    train, val = _data()
    many = nnlab.fit_many(_model(), train, keys=[0, 1, 2, 3], config=CFG, val=val)
    assert many.chunks == 1 and many.size == 4
    for i in range(4):
        one = nnlab.fit(_model(), train, key=jax.random.key(i), config=CFG, val=val)
        _assert_histories_close(many.histories[i], one.history)
        assert (many.best_epochs[i], many.epochs_run[i], many.stopped_early[i]) == (
            one.best_epoch,
            one.epochs_run,
            one.stopped_early,
        )
        _assert_close(nnlab.train.member(many.variables, i), one.variables)
        _assert_close(nnlab.train.member(many.state.params, i), one.state.params)
        _assert_close(nnlab.train.member(many.state.model_state, i), one.state.model_state)
    assert len(set(many.epochs_run)) > 1, "the members should stop at different epochs in this setting"


def test_every_random_stream_of_a_run_draws_its_own_bits():
    """split, dataset, init (params and dropout at init), data order per epoch, dropout and augmentation
    per step: with seed == split_seed == 0 (the defaults) no two of them share a key."""
    split_root, root = jax.random.key(0), jax.random.key(0)
    streams = nnlab.train.init_state(
        nnlab.nn.mlp([2, 2]), nnlab.optim.sgd(0.1), np.zeros((1, 2), np.float32), key=root
    ).rng
    init = nnlab.train.stream(root, "init")
    keys = {
        "split": nnlab.train.stream(split_root, "split"),
        "dataset": nnlab.train.stream(split_root, "dataset"),
        "init": init,
        **dict(zip(("init.params", "init.dropout"), jax.random.split(init), strict=True)),
    }
    for t in range(3):
        keys[f"data.epoch{t}"] = jax.random.fold_in(streams["data"], t)
        keys[f"dropout.step{t}"] = jax.random.fold_in(streams["dropout"], t)
        keys[f"augment.step{t}"] = jax.random.fold_in(streams["augment"], t)
    bits = {name: tuple(np.asarray(jax.random.key_data(k)).tolist()) for name, k in keys.items()}
    assert len(set(bits.values())) == len(bits), bits


def test_a_diverging_member_stops_alone_and_fit_raises():
    """A learning rate far too large turns one member's loss to NaN: it stops there, never counts a
    non-finite epoch as best, and the other members train on; a single run raises instead."""
    train, val = _data()
    cfg = CFG.replace(epochs=4, patience=None, optimizer="sgd")
    many = nnlab.fit_many(_model(), train, keys=[0, 0], config=cfg, val=val, hparams={"learning_rate": [0.05, 1e30]})
    assert many.diverged[0] == 0 and many.epochs_run[0] == 4
    assert many.diverged[1] == many.epochs_run[1] >= 1 and many.best_epochs[1] < many.diverged[1]
    assert np.all(np.isfinite(nnlab.train.member(many.variables["params"], 1)["Dense_0"]["kernel"]))
    with pytest.raises(
        nnlab.train.DivergenceError, match=r"epoch 1: training diverged .*the learning rate 1e\+30 is too large"
    ):
        nnlab.fit(_model(), train, key=0, config=cfg.replace(learning_rate=1e30), val=val)


def test_repeated_run_is_bitwise_identical():
    train, val = _data()
    a = nnlab.fit_many(_model(), train, keys=[3, 4, 5], config=CFG, val=val)
    b = nnlab.fit_many(_model(), train, keys=[3, 4, 5], config=CFG, val=val)
    assert nnlab.report.params_sha256(a.variables) == nnlab.report.params_sha256(b.variables)
    assert nnlab.report.params_sha256(a.state.opt_state) == nnlab.report.params_sha256(b.state.opt_state)

    def without_seconds(r):
        return [[dict(h, seconds=0) for h in hs] for hs in r.histories]

    assert without_seconds(a) == without_seconds(b)


def test_chunks_equal_one_program_and_say_so(capsys):
    train, val = _data()
    cfg = CFG.replace(epochs=2, patience=None)
    model = nnlab.nn.mlp([2, 8, 3])
    whole = nnlab.fit_many(model, train, keys=[0, 1], config=cfg, val=val)
    chunked = nnlab.fit_many(model, train, keys=[0, 1], config=cfg, val=val, max_members=1)
    assert chunked.chunks == 2 and "in chunks of max_members=1: running 2 programs" in capsys.readouterr().err
    _assert_close(chunked.variables, whole.variables)
    for ha, hb in zip(chunked.histories, whole.histories, strict=True):
        _assert_histories_close(ha, hb)


def test_member_hyperparameters_equal_runs_with_those_settings():
    train, val = _data()
    model = nnlab.nn.mlp([2, 16, 3], activation="tanh")
    cfg = CFG.replace(epochs=4, patience=None)
    settings = [(0.05, 0.0), (0.02, 1e-3), (0.1, 1e-2)]
    many = nnlab.fit_many(
        model,
        train,
        keys=[7, 7, 7],
        config=cfg,
        val=val,
        hparams={"learning_rate": [s[0] for s in settings], "weight_decay": [s[1] for s in settings]},
    )
    for i, (lr, wd) in enumerate(settings):
        one = nnlab.fit(
            model, train, key=jax.random.key(7), config=cfg.replace(learning_rate=lr, weight_decay=wd), val=val
        )
        _assert_close(nnlab.train.member(many.variables, i)["params"], one.variables["params"], rtol=1e-4)


@pytest.mark.parametrize(
    "keys, error",
    [
        ([], "keys: expected at least one"),
        (np.zeros((3,), np.int32), "keys: expected typed keys"),
    ],
)
def test_bad_keys_are_named(keys, error):
    with pytest.raises((ValueError, TypeError), match=error):
        nnlab.train.member_keys(keys)


def test_bad_hparams_and_max_members_are_named():
    train, _ = _data()
    with pytest.raises(ValueError, match=r"hparams\['learning_rate'\]: expected 2 finite values"):
        nnlab.fit_many(_model(), train, keys=[0, 1], hparams={"learning_rate": [0.1], "weight_decay": [0.0, 0.0]})
    with pytest.raises(ValueError, match="max_members: expected a positive integer, got 0"):
        nnlab.fit_many(_model(), train, keys=[0, 1], max_members=0)


def test_ensemble_sums_softmax_probabilities():
    # member 0 prefers class 0 a little, member 1 prefers class 1 strongly: the sum follows member 1
    logits = np.log(np.array([[[0.6, 0.4]], [[0.1, 0.9]]]))
    np.testing.assert_allclose(nnlab.study.ensemble_outputs(logits), [[0.35, 0.65]])
    np.testing.assert_array_equal(nnlab.predict_labels(nnlab.study.ensemble_outputs(logits)), [1])
    np.testing.assert_allclose(
        nnlab.study.ensemble_outputs(np.array([[[0.2]], [[0.9]]]), loss="squared_error"), [[0.55]]
    )


def test_single_output_ensemble_keeps_its_threshold():
    """Eight members that all say 0.1 (class 0) must not add up to a vote for class 1."""
    out = nnlab.study.ensemble_outputs(np.full((8, 1, 1), 0.1), loss="squared_error")
    np.testing.assert_allclose(out, [[0.1]])
    np.testing.assert_array_equal(nnlab.predict_labels(out, 0.5), [0])


def test_seed_study_counts_by_hand():
    labels = np.array([0, 1, 2, 3, 4])
    preds = np.array(
        [
            [0, 1, 2, 0, 0],  # wrong on 3, 4
            [0, 0, 2, 3, 0],  # wrong on 1, 4
            [0, 1, 2, 3, 4],
        ]
    )  # no errors
    study = nnlab.study.seed_study(preds, labels, ensemble_predictions=np.array([0, 1, 2, 3, 0]))
    assert study["seed_errors"] == [2, 2, 0]
    np.testing.assert_allclose(study["seed_test_error"], [0.4, 0.4, 0.0])
    assert study["pairwise_disagreement"][0] == {
        "a": 0,
        "b": 1,
        "shared_errors": 1,
        "only_a": 1,
        "only_b": 1,
        "label_disagreement": 0.4,
    }
    assert study["pairwise_disagreement"][1]["only_a"] == 2 and study["pairwise_disagreement"][1]["only_b"] == 0
    assert study["wrong_by_exactly_k"] == [2, 2, 1, 0]
    assert study["ensemble_errors"] == 1 and study["ensemble_test_error"] == 0.2
    np.testing.assert_allclose(study["test_error_std"], np.std([0.4, 0.4, 0.0], ddof=1))


def test_cli_seeds_members_match_single_cli_runs(tmp_path, capsys):
    path = tmp_path / "seeds.json"
    assert main(["seeds", "xor", "--seeds", "2", "--seed", "5", "--epochs", "60", "--json", str(path), "--quiet"]) == 0
    results = json.loads(path.read_text())
    assert results["seeds"] == [5, 6] and len(results["pairwise_disagreement"]) == 1
    assert {"seed_test_error", "ensemble_test_error", "train_seconds", "wrong_by_exactly_k"} <= set(results)
    for i, seed in enumerate(results["seeds"]):
        main(["train", "xor", "--seed", str(seed), "--epochs", "60", "--json", str(tmp_path / "one.json"), "--quiet"])
        assert json.loads((tmp_path / "one.json").read_text())["test_error"] == results["seed_test_error"][i]
    assert "xor-mlp, 2 seeds: test error mean" in capsys.readouterr().out


def test_cli_sweep_refuses_checkpoint_flags(tmp_path, capsys):
    assert main(["sweep", "xor", "--checkpoint-dir", str(tmp_path)]) == 2
    assert "--checkpoint-dir / --resume: expected neither with `nnlab sweep`" in capsys.readouterr().err
