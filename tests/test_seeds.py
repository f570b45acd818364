import json

import flax.linen as nn
import jax
import numpy as np
import pytest

import nnlab
from nnlab import seeds
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
    return nnlab.blobs(60, key=jax.random.key(0), spread=1.5), nnlab.blobs(200, key=jax.random.key(1), spread=1.5)


def _model():
    return nnlab.from_linen(_BNDropNet(), input_shape=(2,), name="bn-drop")


def _assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=1e-6), a, b)


def _assert_histories_close(ha, hb, rtol=1e-5):
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb]
    for key in ("train_loss", "train_error", "val_loss", "val_error"):
        np.testing.assert_allclose([h[key] for h in ha], [h[key] for h in hb], rtol=rtol)


def test_three_vmapped_members_equal_three_separate_runs():
    train, val = _data()
    many = seeds.fit_many(_model(), train, keys=[0, 1, 2], config=CFG, val=val)
    assert many.chunks == 1 and many.size == 3
    for i in range(3):
        one = nnlab.fit(_model(), train, key=jax.random.key(i), config=CFG, val=val)
        _assert_histories_close(many.histories[i], one.history)
        assert (many.best_epochs[i], many.epochs_run[i], many.stopped_early[i]) == (one.best_epoch, one.epochs_run,
                                                                                  one.stopped_early)
        _assert_close(seeds.member(many.variables, i), one.variables)
        _assert_close(seeds.member(many.state.params, i), one.state.params)
        _assert_close(seeds.member(many.state.model_state, i), one.state.model_state)
    assert len(set(many.epochs_run)) > 1, "the members should stop at different epochs in this setting"


def test_repeated_run_is_bitwise_identical():
    train, val = _data()
    a = seeds.fit_many(_model(), train, keys=[3, 4, 5], config=CFG, val=val)
    b = seeds.fit_many(_model(), train, keys=[3, 4, 5], config=CFG, val=val)
    assert nnlab.params_sha256(a.variables) == nnlab.params_sha256(b.variables)
    assert nnlab.params_sha256(a.state.opt_state) == nnlab.params_sha256(b.state.opt_state)
    def without_seconds(r):
        return [[dict(h, seconds=0) for h in hs] for hs in r.histories]
    assert without_seconds(a) == without_seconds(b)


def test_chunks_equal_one_program_and_say_so(capsys):
    train, val = _data()
    cfg = CFG.replace(epochs=2, patience=None)
    model = nnlab.mlp([2, 8, 3])
    whole = seeds.fit_many(model, train, keys=[0, 1], config=cfg, val=val)
    chunked = seeds.fit_many(model, train, keys=[0, 1], config=cfg, val=val, max_members=1)
    assert chunked.chunks == 2 and "(1 do, max_members=1); running 2 chunks" in capsys.readouterr().err
    _assert_close(chunked.variables, whole.variables)
    for ha, hb in zip(chunked.histories, whole.histories):
        _assert_histories_close(ha, hb)


def test_member_hyperparameters_equal_runs_with_those_settings():
    train, val = _data()
    model = nnlab.mlp([2, 16, 3], activation="tanh")
    cfg = CFG.replace(epochs=4, patience=None)
    settings = [(0.05, 0.0), (0.02, 1e-3), (0.1, 1e-2)]
    many = seeds.fit_many(model, train, keys=[7, 7, 7], config=cfg, val=val,
                          hparams={"learning_rate": [s[0] for s in settings], "weight_decay": [s[1] for s in settings]})
    for i, (lr, wd) in enumerate(settings):
        one = nnlab.fit(model, train, key=jax.random.key(7), config=cfg.replace(learning_rate=lr, weight_decay=wd),
                        val=val)
        _assert_close(seeds.member(many.variables, i)["params"], one.variables["params"], rtol=1e-4)


@pytest.mark.parametrize("keys, error", [
    ([], "keys: expected at least one"),
    (np.zeros((3,), np.int32), "keys: expected typed keys"),
])
def test_bad_keys_are_named(keys, error):
    with pytest.raises((ValueError, TypeError), match=error):
        seeds.member_keys(keys)


def test_bad_hparams_and_max_members_are_named():
    train, _ = _data()
    with pytest.raises(ValueError, match=r"hparams\['learning_rate'\]: expected 2 values"):
        seeds.fit_many(_model(), train, keys=[0, 1], hparams={"learning_rate": [0.1], "weight_decay": [0.0, 0.0]})
    with pytest.raises(ValueError, match="max_members: expected a positive integer, got 0"):
        seeds.fit_many(_model(), train, keys=[0, 1], max_members=0)


@pytest.mark.parametrize("field, value", [("engine", "scan"), ("compute_dtype", "bfloat16"), ("devices", 2)])
def test_fit_many_refuses_what_it_does_not_run(field, value):
    train, _ = _data()
    with pytest.raises(ValueError, match=f"fit_many runs float32 per-step programs on one device .* got {{'{field}'"):
        seeds.fit_many(_model(), train, keys=[0, 1], config=nnlab.TrainConfig(**{field: value}))


def test_ensemble_sums_softmax_probabilities():
    # member 0 prefers class 0 a little, member 1 prefers class 1 strongly: the sum follows member 1
    logits = np.log(np.array([[[0.6, 0.4]], [[0.1, 0.9]]]))
    np.testing.assert_allclose(seeds.ensemble_outputs(logits), [[0.35, 0.65]])
    np.testing.assert_array_equal(seeds.labels_of(seeds.ensemble_outputs(logits)), [1])
    np.testing.assert_allclose(seeds.ensemble_outputs(np.array([[[0.2]], [[0.9]]]), loss="squared_error"), [[0.55]])


def test_single_output_ensemble_keeps_its_threshold():
    """Eight members that all say 0.1 (class 0) must not add up to a vote for class 1."""
    out = seeds.ensemble_outputs(np.full((8, 1, 1), 0.1), loss="squared_error")
    np.testing.assert_allclose(out, [[0.1]])
    np.testing.assert_array_equal(seeds.labels_of(out, loss="squared_error"), [0])


def test_seed_study_counts_by_hand():
    labels = np.array([0, 1, 2, 3, 4])
    preds = np.array([[0, 1, 2, 0, 0],   # wrong on 3, 4
                      [0, 0, 2, 3, 0],   # wrong on 1, 4
                      [0, 1, 2, 3, 4]])  # no errors
    study = seeds.seed_study(preds, labels, ensemble_predictions=np.array([0, 1, 2, 3, 0]))
    assert study["seed_errors"] == [2, 2, 0]
    np.testing.assert_allclose(study["seed_test_error"], [0.4, 0.4, 0.0])
    assert study["pairwise_disagreement"][0] == {"a": 0, "b": 1, "shared_errors": 1, "only_a": 1, "only_b": 1,
                                                  "label_disagreement": 0.4}
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


@pytest.mark.parametrize("command", ["seeds", "sweep"])
def test_cli_members_refuse_checkpoint_flags(command, tmp_path, capsys):
    assert main([command, "xor", "--checkpoint-dir", str(tmp_path)]) == 2
    assert f"--checkpoint-dir / --resume: expected neither with `nnlab {command}`" in capsys.readouterr().err
