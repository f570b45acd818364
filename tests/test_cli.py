import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import nnlab
from nnlab.cli import main
from nnlab.report import write_json

REQUIRED = [
    "test_error",
    "test_errors",
    "n_test",
    "params",
    "epochs_run",
    "train_seconds",
    "device",
    "jax_version",
    "seed",
    "params_sha256",
    "epoch_seconds",
    "history",
]


def test_train_xor_writes_json(tmp_path, capsys):
    path = tmp_path / "out" / "xor.json"
    assert main(["train", "xor", "--epochs", "300", "--seed", "3", "--json", str(path), "--quiet"]) == 0
    results = json.loads(path.read_text())
    assert set(REQUIRED) <= set(results)
    assert results["seed"] == 3 and results["epochs_run"] == 300 and len(results["epoch_seconds"]) == 300
    assert results["n_test"] == 4 and results["test_error"] == results["test_errors"] / 4
    assert results["jax_version"] == jax.__version__ and len(results["params_sha256"]) == 64
    assert results["config"]["train"]["epochs"] == 300
    assert "xor: test error" in capsys.readouterr().out


def test_same_seed_same_sha_from_the_cli(tmp_path):
    shas = []
    for i in range(2):
        main(["train", "xor", "--epochs", "50", "--json", str(tmp_path / f"{i}.json"), "--quiet"])
        shas.append(json.loads((tmp_path / f"{i}.json").read_text())["params_sha256"])
    assert shas[0] == shas[1]


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NNLAB_DATA_DIR", str(tmp_path))
    assert main(["train", "mnist-mlp", "--data-dir", str(tmp_path / "none"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"nnlab: error: mnist: data_dir {tmp_path / 'none'} does not hold the data" in err


def test_bad_flag_value_is_a_clear_error(capsys):
    assert main(["train", "xor", "--lr", "-1", "--quiet"]) == 2
    assert "learning_rate: expected a positive number, got -1.0" in capsys.readouterr().err


def test_python_dash_m_and_import_leave_jax_config_alone():
    code = (
        "import jax; before = dict(jax.config.values); import nnlab; "
        "after = dict(jax.config.values); assert before == after, [k for k in before if before[k] != after[k]]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "nnlab", "train", "--help"], capture_output=True, text=True, check=True)
    assert "--train-subset" in out.stdout


def test_json_results_are_readable_by_others(tmp_path):
    write_json(tmp_path / "r.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~umask


# --- hardening (issue 10): each test names the finding it covers --------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _nnlab(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_training_cleanly_with_a_final_checkpoint_and_one_line(tmp_path, signum):
    """Finding: Ctrl-C printed 70-140 lines of tracebacks and left `.tmp-*` folders; SIGTERM
    exited with no word. Now: the epoch ends, a final checkpoint is written, one line says what
    was saved and how to resume, the exit code is 130 / 143, and nothing temporary is left."""
    proc = _nnlab(
        "train",
        "xor",
        "--epochs",
        "1000000",
        "--quiet",
        "--checkpoint-dir",
        "ck",
        "--checkpoint-every",
        "1000",
        cwd=tmp_path,
    )
    ckpt = nnlab.Checkpointer(tmp_path / "ck")
    deadline = time.monotonic() + 300
    while not ckpt.epochs():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    name = signal.Signals(signum).name
    notice, final = err.splitlines()  # the notice when the signal came, then the outcome
    assert "Traceback" not in err and notice.startswith(f"nnlab: {name} received: stopping at the end of this epoch")
    match = re.fullmatch(
        rf"nnlab: interrupted by {name} after epoch (\d+): the newest checkpoint is "
        rf"(\S+); resume with: nnlab train xor --epochs 1000000 --quiet --checkpoint-dir ck "
        rf"--checkpoint-every 1000 --resume",
        final,
    )
    assert match, final
    epoch = int(match.group(1))
    assert ckpt.epochs()[-1] == epoch and match.group(2) == str(ckpt.path(epoch))
    assert all(p.name == ".nnlab-lock" or re.fullmatch(r"epoch_\d{6}", p.name) for p in ckpt.directory.iterdir())
    # the printed command resumes (here told to stop 5 epochs later)
    assert (
        main(
            [
                "train",
                "xor",
                "--epochs",
                str(epoch + 5),
                "--quiet",
                "--checkpoint-dir",
                str(tmp_path / "ck"),
                "--checkpoint-every",
                "1000",
                "--resume",
            ]
        )
        == 0
    )
    assert ckpt.epochs()[-1] == epoch + 5


def test_ctrl_c_outside_the_training_loop_is_one_line(tmp_path, monkeypatch, capsys):
    """Finding: Ctrl-C printed 70-140 lines of tracebacks (here: while data loads or the test
    set is evaluated, outside the training loop)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nnlab.cli, "run", interrupted)
    assert main(["train", "xor", "--quiet"]) == 130
    assert capsys.readouterr().err == "nnlab: interrupted by SIGINT: no checkpoint was saved\n"
    nnlab.Checkpointer(tmp_path / "ck").save(
        nnlab.train.init_state(
            nnlab.get_model("xor-mlp"),
            nnlab.train.make_tx(nnlab.TrainConfig(), 1),
            np.zeros((1, 2), np.float32),
            key=jax.random.key(0),
        )
    )
    assert main(["train", "xor", "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]) == 130
    assert capsys.readouterr().err == (
        f"nnlab: interrupted by SIGINT: the newest checkpoint is {tmp_path}/ck/"
        f"epoch_000000; resume with: nnlab train xor --quiet --checkpoint-dir "
        f"{tmp_path}/ck --resume\n"
    )


def test_output_paths_are_checked_before_training(tmp_path, capsys):
    """Finding: `--json` into a folder or an unwritable place failed only after training, losing
    the results."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (["--json", str(tmp_path / "folder")], "--json: expected a file path, got .*folder' \\(a folder\\)"),
        (
            ["--json", str(tmp_path / "file" / "r.json")],
            "--json: expected a file path, got .* is a file, not a folder\\)",
        ),
        (["--checkpoint-dir", str(tmp_path / "file")], "--checkpoint-dir: expected a folder, got .*file' \\(a file\\)"),
    ]
    for flags, message in cases:
        assert main(["train", "xor", "--quiet", *flags]) == 2
        captured = capsys.readouterr()
        assert re.fullmatch(f"nnlab: error: {message}\n", captured.err) and captured.out == ""  # nothing trained
    assert main(["eval", str(tmp_path / "none"), "--json", str(tmp_path / "folder")]) == 2
    assert "--json: expected a file path" in capsys.readouterr().err


def test_a_huge_seed_is_a_one_line_error(capsys):
    """Finding: `--seed 99999999999999999999` crashed with OverflowError."""
    assert main(["train", "xor", "--seed", "99999999999999999999", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "nnlab: error: seed: expected an integer seed in [0, 4294967295], got 99999999999999999999\n"
    )


def test_programming_errors_are_not_disguised_as_user_errors(monkeypatch):
    """Finding: the CLI's catch of TypeError turned programming errors into one-line
    "nnlab: error:" messages. A bug (here: a parameter count that comes back None) must show
    its traceback."""
    monkeypatch.setattr(nnlab._run, "count_params", lambda params: None)
    with pytest.raises(TypeError, match="NoneType"):
        main(["train", "xor", "--epochs", "2", "--quiet"])


def test_user_errors_are_one_line_and_debug_shows_the_traceback(capsys):
    """Finding (CLI part of the build list): every user error one line, `--debug` for the traceback."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "xor", "--epochs", "many"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "nnlab: error: argument --epochs: invalid int value: 'many' (see `nnlab train --help`)\n"
    )
    with pytest.raises(ValueError, match="learning_rate: expected a positive number, got -1.0"):
        main(["train", "xor", "--lr", "-1", "--quiet", "--debug"])
    with pytest.raises(ValueError, match="learning_rate"):
        main(["--debug", "train", "xor", "--lr", "-1", "--quiet"])


@pytest.mark.optax_promotion
def test_divergence_exits_non_zero_and_eval_serves_the_last_finite_epoch(tmp_path, capsys):
    """Finding: with a huge learning rate the loss turned NaN, the run exited 0, the NaN epoch was
    kept as "best", checkpointed and served by `nnlab eval`."""
    args = [
        "train",
        "xor",
        "--optimizer",
        "adam",
        "--lr",
        "3e38",
        "--epochs",
        "6",
        "--quiet",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"nnlab: error: epoch (\d+): training diverged \(.*\); likely cause: the learning rate 3e\+38 "
        r"is too large .*Epoch \1 was not kept\n",
        err,
    ), err
    diverged = int(err.split()[3].rstrip(":"))
    assert nnlab.Checkpointer(tmp_path / "ck").epochs()[-1] == diverged - 1 and not (tmp_path / "r.json").exists()
    assert main(["eval", str(tmp_path / "ck"), "--json", str(tmp_path / "eval.json")]) == 0
    assert np.isfinite(json.loads((tmp_path / "eval.json").read_text())["test_loss"])


def test_results_files_are_strict_json(tmp_path):
    """Finding: `--json` held bare `NaN`, which is not JSON: non-finite numbers are written as null."""
    write_json(
        tmp_path / "r.json",
        {
            "loss": float("nan"),
            "history": [{"val_loss": float("inf")}],
            "array": np.array([1.0, -np.inf]),
            "scalar": np.float32("nan"),
            "ok": 0.5,
        },
    )

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse) == {
        "loss": None,
        "history": [{"val_loss": None}],
        "array": [1.0, None],
        "scalar": None,
        "ok": 0.5,
    }


@pytest.mark.optax_promotion
def test_train_subset_counts_training_samples_after_the_validation_split(mnist_data, tmp_path):
    """Finding: `--train-subset 5000` was refused ("n_val: expected fewer than the 5000 training
    samples, got 10000": the subset was cut before the validation split), and `--train-subset
    10001` failed on the variance. Now N training samples, the configured validation split."""
    full = nnlab.load_splits(nnlab.configs.get_config("mnist-mlp"))
    for n in (300, 5000, 10_001):
        splits = nnlab.load_splits(nnlab.configs.get_config("mnist-mlp").replace(train_subset=n))
        assert (splits.train.n, splits.val.n) == (n, 10_000)
        np.testing.assert_array_equal(splits.val.y, full.val.y)  # the same validation split as a full run
        np.testing.assert_array_equal(splits.train.x, full.train.x[:n])
    with pytest.raises(
        ValueError,
        match="train_subset: expected at most the 50000 training samples left after "
        "holding out 10000 for validation, got 50001",
    ):
        nnlab.load_splits(nnlab.configs.get_config("mnist-mlp").replace(train_subset=50_001))

    # a quick run from a few hundred samples (`--n-val` sets the validation split's size)
    assert (
        main(
            [
                "train",
                "mnist-mlp",
                "--train-subset",
                "300",
                "--n-val",
                "500",
                "--epochs",
                "2",
                "--quiet",
                "--json",
                str(tmp_path / "quick.json"),
            ]
        )
        == 0
    )
    quick = json.loads((tmp_path / "quick.json").read_text())
    assert quick["config"]["train_subset"] == 300 and quick["config"]["n_val"] == 500
    assert quick["epochs_run"] == 2 and quick["n_test"] == 10_000
