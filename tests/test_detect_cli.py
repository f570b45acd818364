"""`nnlab train mnist-detect | mnist-mask-rcnn | mnist-rcnn`: a real run of the command, and the flags it refuses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_train_mnist_detect_writes_scores_speed_device_and_command(mnist_data, tmp_path):
    path = tmp_path / "detect.json"
    flags = ["--train-subset", "2", "--batch-size", "2", "--test-subset", "2", "--epochs", "1", "--engine", "step"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "NNLAB_COMPILATION_CACHE": "off",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",  # the detector's programs run once here: compile them fast
    }
    argv = ["train", "mnist-detect", *flags, "--seed", "3", "--quiet", "--json", str(path)]
    done = subprocess.run([sys.executable, "-m", "nnlab", *argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(path.read_text())
    row = results["faster_rcnn"]
    for key in ("map50", "map"):
        assert 0.0 <= row[key] <= 1.0
    assert row["images_per_second"] > 0 and row["train_seconds"] > 0 and row["final_train_loss"] > 0
    assert (row["epochs"], row["train_scenes"], results["test_scenes"]) == (1, 2, 2)
    assert "mask_ap" not in row  # Faster R-CNN has no masks
    assert results["model"] == results["config"]["model"] == "faster_rcnn" and results["config"]["seed"] == 3
    assert results["config"]["train"]["warmup_epochs"] == 0  # the 1-epoch run is not all warm-up
    assert results["device"] and results["command"] == "nnlab " + " ".join(argv)
    assert f"mnist-detect: box mAP@0.5 {row['map50']:.3f}" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "mnist-detect", "--n-val", "100"], "nnlab: error: --n-val: expected none with the detection run"),
        (["train", "mnist-rcnn", "--checkpoint-dir", "ckpt"], "nnlab: error: --checkpoint-dir: expected none with"),
        (["train", "mnist-mask-rcnn", "--devices", "0"], "nnlab: error: --devices: expected none with the detection"),
        (["train", "xor", "--test-subset", "5"], "nnlab: error: --test-subset: expected it only with a detection run"),
    ],
)
def test_flags_a_run_has_no_use_for_are_refused_before_training(argv, message, capsys):
    assert main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1 and captured.out == ""
