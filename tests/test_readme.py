"""The README's command-line flow as a user runs it: from a fresh working directory, with relative paths."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nnlab
from nnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]

# README: `nnlab train NAME --checkpoint-dir DIR ... --resume`, `nnlab eval DIR`, `nnlab.load_model("runs/mnist")`;
# a quick MNIST run (300 training digits, 200 for validation) that checkpoints every epoch.
TRAIN = [
    "train",
    "mnist-mlp",
    "--train-subset",
    "300",
    "--n-val",
    "200",
    "--epochs",
    "24",
    "--patience",
    "0",
    "--quiet",
    "--checkpoint-dir",
    "runs/mnist",
]
LOAD_MODEL = """
import jax, nnlab
m = nnlab.load_model("runs/mnist")            # as in the README
_, test = nnlab.mnist()
logits = jax.jit(m.apply)(m.variables, test.x)
print(int((logits.argmax(axis=1) != test.y).sum()))
"""


def _run(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


@pytest.mark.optax_promotion
def test_readme_flow_from_a_temporary_working_directory(mnist_data, tmp_path, monkeypatch):
    """Finding: relative paths, as in the README's examples, failed (`--checkpoint-dir ck`, `nnlab
    eval ck`, `nnlab.load_model("runs/mnist")`): every checkpoint test used an absolute path.
    Train with checkpoints into a relative folder, kill the process with SIGKILL after its
    second checkpoint, resume, evaluate, load the model in another process: all from a temporary
    working directory. The resumed run ends bitwise as an uninterrupted one."""
    proc = _run(["-m", "nnlab", *TRAIN], tmp_path)
    ckpt = nnlab.Checkpointer(tmp_path / "runs" / "mnist")
    deadline = time.monotonic() + 300
    while len(ckpt.epochs()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed_at = ckpt.epochs()[-1]
    assert 2 <= killed_at < 24

    _finish(_run(["-m", "nnlab", *TRAIN, "--resume", "--json", "resumed.json"], tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN[:-1], "runs/whole", "--json", "whole.json"]) == 0
    _finish(_run(["-m", "nnlab", "eval", "runs/mnist", "--json", "eval.json"], tmp_path))
    resumed, whole, ev = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("resumed", "whole", "eval"))
    assert resumed["params_sha256"] == whole["params_sha256"] and resumed["epochs_run"] == 24
    assert ev["params_sha256"] == resumed["params_sha256"] and ev["test_errors"] == resumed["test_errors"]
    # in another process, with Orbax and JAX only: the same errors (a jitted pass over the whole test set
    # is another program than eval's batches: allow a digit whose two best outputs tie within rounding)
    errors = int(_finish(_run(["-c", LOAD_MODEL], tmp_path)))
    assert abs(errors - ev["test_errors"]) <= 1
