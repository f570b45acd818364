"""Per-epoch logging: TensorBoard event files read back with TensorBoard's own reader, JSON Lines,
one run per member of `fit_many`, and the CLI's --logdir."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import nnlab

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

ROOT = Path(__file__).resolve().parents[1]


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _data():
    train = nnlab.data.blobs(256, key=jax.random.key(0))
    val = nnlab.data.blobs(128, key=jax.random.key(1))
    model = nnlab.nn.mlp([2, 8, train.num_classes], activation="tanh", input_shape=(2,))
    return model, train, val


@pytest.mark.optax_promotion
def test_fit_events_and_jsonl_hold_the_history(tmp_path):
    model, train, val = _data()
    config = nnlab.TrainConfig(epochs=4, batch_size=64, learning_rate=1e-2)
    with nnlab.train.Logger(tmp_path) as logger:
        result = nnlab.fit(model, train, key=0, config=config, val=val, callbacks=[logger], progress=False)
    scalars = _scalars(tmp_path / "run")
    assert set(scalars) == {"train/loss", "train/error", "val/loss", "val/error", "time/epoch_seconds"}
    for tag, key in (
        ("train/loss", "train_loss"),
        ("train/error", "train_error"),
        ("val/loss", "val_loss"),
        ("val/error", "val_error"),
        ("time/epoch_seconds", "seconds"),
    ):
        steps, values = zip(*scalars[tag], strict=True)
        assert list(steps) == [1, 2, 3, 4]
        np.testing.assert_allclose(values, [h[key] for h in result.history], rtol=1e-6, atol=1e-7)  # float32 in events
    lines = nnlab.train.read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["run"], r["member"], r["epoch"]) for r in lines] == [("run", 0, e) for e in (1, 2, 3, 4)]
    for line, h in zip(lines, result.history, strict=True):
        assert {k: line[k] for k in nnlab.train._logging.METRICS} == {k: h[k] for k in nnlab.train._logging.METRICS}


@pytest.mark.optax_promotion
def test_fit_many_writes_one_run_per_member(tmp_path):
    model, train, val = _data()
    config = nnlab.TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2)
    logger = nnlab.train.Logger(tmp_path, runs=["lr_small", "lr_large"])
    result = nnlab.fit_many(
        model,
        train,
        keys=[0, 0],
        config=config,
        val=val,
        callbacks=[logger],
        progress=False,
        hparams={"learning_rate": [1e-3, 1e-1]},
    )
    logger.close()
    for i, run in enumerate(["lr_small", "lr_large"]):
        steps, values = zip(*_scalars(tmp_path / run)["val/error"], strict=True)
        assert list(steps) == [1, 2, 3]
        np.testing.assert_allclose(values, [h["val_error"] for h in result.histories[i]], rtol=1e-6, atol=1e-7)
    # the two members differ, so each run holds its own member's numbers
    assert result.histories[0][-1]["train_loss"] != result.histories[1][-1]["train_loss"]
    lines = nnlab.train.read_jsonl(tmp_path / "metrics.jsonl")
    assert sorted((r["member"], r["epoch"]) for r in lines) == [(m, e) for m in (0, 1) for e in (1, 2, 3)]


def test_stopped_members_and_non_finite_values(tmp_path):
    logger = nnlab.train.Logger(tmp_path, tensorboard=False)
    record = {
        "epoch": 5,
        "train_loss": float("nan"),
        "train_error": 0.5,
        "val_loss": float("inf"),
        "val_error": None,
        "seconds": 0.25,
    }
    assert logger(5, None, [None, record]) is False  # a callback that never stops training
    logger.close()
    lines = nnlab.train.read_jsonl(tmp_path / "metrics.jsonl")
    assert lines == [
        {
            "member": 1,
            "run": "member_1",
            "epoch": 5,
            "train_loss": None,
            "train_error": 0.5,
            "val_loss": None,
            "val_error": None,
            "seconds": 0.25,
        }
    ]
    assert not list(tmp_path.glob("member_*"))  # no event files without tensorboard


@pytest.mark.parametrize("runs", [["a", "a"], ["a", ""]])
def test_bad_run_names_are_rejected(tmp_path, runs):
    with pytest.raises(ValueError, match="runs: expected distinct, non-empty"):
        nnlab.train.Logger(tmp_path, runs=runs)


def test_cli_logdir(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNLAB_COMPILATION_CACHE": "off"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnlab",
            "train",
            "xor",
            "--epochs",
            "6",
            "--quiet",
            "--logdir",
            str(tmp_path / "logs"),
            "--json",
            str(tmp_path / "r.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    history = json.loads((tmp_path / "r.json").read_text())["history"]
    steps, values = zip(*_scalars(tmp_path / "logs" / "run")["train/loss"], strict=True)
    assert list(steps) == list(range(1, 7))
    np.testing.assert_allclose(values, [h["train_loss"] for h in history], rtol=1e-6, atol=1e-7)
    lines = nnlab.train.read_jsonl(tmp_path / "logs" / "metrics.jsonl")
    assert [r["train_loss"] for r in lines] == [h["train_loss"] for h in history]
