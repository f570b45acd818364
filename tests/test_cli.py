import json
import os
import stat
import subprocess
import sys

import jax

from nnlab import write_json
from nnlab.cli import main

REQUIRED = ["test_error", "test_errors", "n_test", "params", "epochs_run", "train_seconds", "device",
            "jax_version", "seed", "params_sha256", "epoch_seconds", "history"]


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
    code = ("import jax; before = dict(jax.config.values); import nnlab; "
            "after = dict(jax.config.values); assert before == after, [k for k in before if before[k] != after[k]]")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "nnlab", "train", "--help"], capture_output=True, text=True, check=True)
    assert "--train-subset" in out.stdout


def test_json_results_are_readable_by_others(tmp_path):
    write_json(tmp_path / "r.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~umask
