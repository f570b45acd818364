import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import nnlab
from nnlab.checkpoint import from_plain, to_plain
from nnlab.cli import main
from nnlab.train import init_state, make_tx

ROOT = Path(__file__).resolve().parents[1]

# The tiny run the kill tests train: spirals, a 2-16-3 tanh MLP, Adam, validation every epoch.
SETUP = """
import jax, nnlab
train = nnlab.data.spirals(200, key=jax.random.key(1))
val = nnlab.data.spirals(100, key=jax.random.key(2))
model = nnlab.nn.mlp([2, 16, 3], activation="tanh", input_shape=(2,))
config = nnlab.TrainConfig(epochs=12, batch_size=20, learning_rate=1e-2, patience=50)
"""
_ns: dict = {}
exec(SETUP, _ns)
TRAIN, VAL, MODEL, CONFIG = _ns["train"], _ns["val"], _ns["model"], _ns["config"]


def _state(model=MODEL, key=0):
    return init_state(model, make_tx(CONFIG, 10), jnp.zeros((1, 2)), key=jax.random.key(key))


def _python(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the subprocess ended early (rc {proc.returncode}): {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            _sigkill(proc)
            raise AssertionError("timed out waiting for the subprocess")
        time.sleep(0.02)


def _sha(variables) -> str:
    return nnlab.report.params_sha256(variables["params"])


@pytest.mark.optax_promotion
def test_sigkill_after_the_second_checkpoint_then_resume_is_bitwise_identical(tmp_path):
    # each epoch sleeps 0.2 s in a callback (state untouched) so the kill lands mid-run
    proc = _python(SETUP + """
import sys, time
from nnlab.checkpoint import Checkpointer
nnlab.fit(model, train, key=jax.random.key(0), config=config, val=val,
          checkpointer=Checkpointer(sys.argv[1], every=2), callbacks=[lambda *a: time.sleep(0.2)])
""", str(tmp_path))
    ckpt = nnlab.Checkpointer(tmp_path, every=2)
    _wait_for(lambda: len(ckpt.epochs()) >= 2, proc)
    _sigkill(proc)
    killed_at = ckpt.epochs()[-1]
    assert 4 <= killed_at < CONFIG.epochs

    resumed = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL, checkpointer=ckpt, resume=True)
    whole = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL)
    assert _sha(resumed.variables) == _sha(whole.variables)
    assert _sha(resumed.state.variables) == _sha(whole.state.variables)
    assert resumed.best_epoch == whole.best_epoch and resumed.epochs_run == CONFIG.epochs
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(resumed.history) == drop(whole.history)
    assert ckpt.epochs()[-1] == CONFIG.epochs


@pytest.mark.parametrize("stage", ["arrays", "manifest"])
def test_sigkill_while_writing_leaves_the_previous_checkpoint_valid(tmp_path, stage):
    # the subprocess saves epoch 1, then stalls inside the save of epoch 2 (hook patched in
    # by this test: after Orbax wrote the arrays, or while hashing them for the manifest)
    proc = _python("""
import sys, time
from pathlib import Path
import jax, jax.numpy as jnp, nnlab
from nnlab import checkpoint as C
from nnlab.train import init_state, make_tx
model = nnlab.nn.mlp([2, 16, 3], activation="tanh", input_shape=(2,))
state = init_state(model, make_tx(nnlab.TrainConfig(), 10), jnp.zeros((1, 2)), key=jax.random.key(0))
ckpt = C.Checkpointer(sys.argv[1])
ckpt.save(state.replace(epoch=state.epoch + 1))
def stall(*args, **kwargs):
    Path(sys.argv[1], "stalled").touch()
    time.sleep(120)
if sys.argv[2] == "arrays":
    save = C.ocp.StandardCheckpointer.save
    C.ocp.StandardCheckpointer.save = lambda self, *a, **k: (save(self, *a, **k), self.wait_until_finished(), stall())
else:
    C.file_sha256 = stall
ckpt.save(state.replace(epoch=state.epoch + 2))
""", str(tmp_path), stage)
    _wait_for(lambda: (tmp_path / "stalled").exists(), proc)
    _sigkill(proc)

    partial = tmp_path / ".tmp-epoch_000002"
    assert (partial / "arrays").is_dir() and not (partial / "manifest.json").exists()
    ckpt = nnlab.Checkpointer(tmp_path)
    assert ckpt.epochs() == [1] and ckpt.latest().name == "epoch_000001"
    with pytest.raises(nnlab.checkpoint.CheckpointError, match="no manifest.json: an incomplete save"):
        nnlab.checkpoint.read_checkpoint(partial)
    state = _state()
    restored = ckpt.restore(state)
    assert restored.epoch == 1 and _sha(restored.state.variables) == _sha(state.variables)
    ckpt.save(state.replace(epoch=state.epoch + 2))  # the next save clears the leftover
    assert ckpt.epochs() == [1, 2] and not partial.exists()


def test_state_round_trips_bit_for_bit_with_typed_keys(tmp_path):
    state = _state().replace(step=jnp.int32(7))
    ckpt = nnlab.Checkpointer(tmp_path)
    ckpt.save(state)
    restored = ckpt.restore(_state(key=5)).state
    for a, b in zip(jax.tree.leaves(to_plain(state)), jax.tree.leaves(to_plain(restored))):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert jnp.issubdtype(restored.key.dtype, jax.dtypes.prng_key) and int(restored.step) == 7
    assert jax.tree.structure(restored) == jax.tree.structure(state)


@pytest.mark.parametrize("widths, message", [
    ([2, 5, 3], r"mismatched shapes/dtypes \[params/0/W: checkpoint \(16, 2\) float32, model \(5, 2\) float32"),
    ([2, 16, 16, 3], r"missing keys \['params/2/W', 'params/2/s'"),
    ([2, 3], r"unexpected keys \[.*'params/1/W', 'params/1/s'\]"),
])
def test_tree_mismatch_names_keys_and_shapes(tmp_path, widths, message):
    ckpt = nnlab.Checkpointer(tmp_path)
    ckpt.save(_state())
    other = nnlab.nn.mlp(widths, activation="tanh", input_shape=(2,))
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=message):
        ckpt.restore(_state(other))


def _largest_array_file(path: Path) -> Path:
    return max((p for p in (path / "arrays").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip(f: Path):
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 1
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda p: _truncate(_largest_array_file(p)), "was truncated or altered: .* expected .* sha256"),
    (lambda p: _flip(_largest_array_file(p)), "was truncated or altered"),
    (lambda p: _largest_array_file(p).unlink(), "is listed in the manifest but missing"),
    (lambda p: _flip(p / "meta.json"), "meta.json was truncated or altered"),
    (lambda p: (p / "manifest.json").unlink(), "no manifest.json: an incomplete save"),
    (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is damaged"),
])
def test_truncated_or_tampered_checkpoint_is_a_clear_error(tmp_path, damage, message):
    ckpt = nnlab.Checkpointer(tmp_path)
    path = ckpt.save(_state())
    damage(path)
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=message):
        nnlab.checkpoint.read_checkpoint(path, _state())


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


# Orbax's tensorstore callbacks may fire into its closed event loop after a failed write
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("make_unwritable", ["read-only", "full"])
def test_unwritable_folder_is_a_clear_error_and_keeps_the_previous_checkpoint(small_tmpfs, make_unwritable):
    ckpt = nnlab.Checkpointer(small_tmpfs / "run")
    state = _state()
    ckpt.save(state)
    if make_unwritable == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
        expected = "Read-only file system"
    else:
        free = os.statvfs(small_tmpfs)
        (small_tmpfs / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize))
        expected = "No space left on device|RESOURCE_EXHAUSTED|space"
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=rf"could not write the checkpoint of epoch 1 to .*({expected})"
                       r".*the previous checkpoint epoch_000000 is untouched"):
        ckpt.save(state.replace(epoch=state.epoch + 1))
    assert ckpt.epochs() == [0]
    assert _sha(ckpt.restore(_state(key=3)).state.variables) == _sha(state.variables)


def test_async_save_failure_is_raised(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    ckpt = nnlab.Checkpointer(tmp_path / "file" / "run", async_save=True)
    ckpt.save(_state())  # returns at once; the write fails in the background
    with pytest.raises(nnlab.checkpoint.CheckpointError, match="could not write the checkpoint of epoch 0"):
        ckpt.wait()
    good = nnlab.Checkpointer(tmp_path / "run", async_save=True)
    good.save(_state())
    good.wait()
    assert good.epochs() == [0]


@pytest.mark.optax_promotion
def test_keeps_the_last_k_and_the_best(tmp_path):
    ckpt = nnlab.Checkpointer(tmp_path, keep=2)
    result = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG.replace(epochs=8), val=VAL, checkpointer=ckpt)
    best = min(result.history, key=lambda h: (h["val_error"], h["val_loss"]))["epoch"]
    assert best == result.best_epoch
    assert ckpt.epochs() == sorted({7, 8, best}) and ckpt.best().name == f"epoch_{best:06d}"


@pytest.mark.optax_promotion
def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG.replace(epochs=2), val=VAL,
              checkpointer=nnlab.Checkpointer(tmp_path))
    with pytest.raises(ValueError, match="checkpointer: .* already holds checkpoints of a run .*epoch_000002.*resume"):
        nnlab.fit(MODEL, TRAIN, key=jax.random.key(1), config=CONFIG.replace(epochs=2), val=VAL,
                  checkpointer=nnlab.Checkpointer(tmp_path))
    assert nnlab.Checkpointer(tmp_path).epochs() == [1, 2]


@pytest.mark.optax_promotion
def test_a_folder_loads_the_best_variables_even_when_the_best_epoch_was_not_saved(tmp_path):
    ckpt = nnlab.Checkpointer(tmp_path, every=3)
    result = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG.replace(epochs=7), val=VAL, checkpointer=ckpt)
    loaded = nnlab.checkpoint.read_checkpoint(nnlab.checkpoint.find_checkpoint(tmp_path), _state())
    assert _sha(loaded.best_variables) == _sha(result.variables)


@pytest.mark.optax_promotion
def test_load_model_elsewhere_gives_the_trained_outputs(tmp_path):
    cfg = nnlab.RunConfig(model="mnist-mlp", dataset="blobs", model_kwargs={"width": 8, "depth": 1})
    ckpt = nnlab.Checkpointer(tmp_path, config=cfg.to_dict())
    x = jax.random.uniform(jax.random.key(3), (5, 28, 28, 1))
    model = nnlab.nn.with_normalization(nnlab.get_model("mnist-mlp", width=8, depth=1),
                                     nnlab.data.fit_normalization(np.asarray(x)))
    state = init_state(model, make_tx(CONFIG, 10), x[:1], key=jax.random.key(0))
    ckpt.save(state)
    loaded = nnlab.load_model(tmp_path)
    want, _ = model.apply(state.variables, x, train=False)
    np.testing.assert_array_equal(jax.jit(loaded.apply)(loaded.variables, x), want)
    # Orbax alone (no nnlab) reads the same arrays as plain nested dicts
    plain = ocp.StandardCheckpointer().restore(loaded.path / "arrays")["state"]
    np.testing.assert_array_equal(plain["params"]["1"]["W"], state.params[1]["W"])
    norm = plain["model_state"]["normalization"]
    np.testing.assert_array_equal(norm["mean"], state.model_state["normalization"].mean)


def test_from_plain_inverts_to_plain_for_optimizer_states():
    state = _state()
    back = from_plain(to_plain(state), state)
    assert _sha({"params": back.opt_state}) == _sha({"params": state.opt_state})


def test_cli_resume_after_a_lost_tail_and_eval(tmp_path, capsys):
    args = ["train", "xor", "--epochs", "60", "--quiet"]
    run_dir = tmp_path / "ckpt"
    assert main([*args, "--checkpoint-dir", str(run_dir), "--checkpoint-every", "20", "--keep", "5",
                 "--json", str(tmp_path / "whole.json")]) == 0
    ckpt = nnlab.Checkpointer(run_dir)
    assert ckpt.epochs() == [20, 40, 60]
    for e in (40, 60):  # as if killed after epoch 20's checkpoint
        shutil.rmtree(ckpt.path(e))
    assert main([*args, "--checkpoint-dir", str(run_dir), "--resume", "--json", str(tmp_path / "resumed.json")]) == 0
    whole, resumed = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("whole", "resumed"))
    assert resumed["params_sha256"] == whole["params_sha256"] and resumed["epochs_run"] == 60
    assert main(["eval", str(run_dir), "--json", str(tmp_path / "eval.json")]) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert ev["params_sha256"] == whole["params_sha256"] and ev["test_error"] == whole["test_error"]
    capsys.readouterr()
    assert main([*args[:3], "61", "--quiet", "--checkpoint-dir", str(run_dir), "--resume"]) == 2
    assert "was written by another config (fields ['train'] differ)" in capsys.readouterr().err
    assert main(["train", "xor", "--resume", "--quiet"]) == 2
    assert "--resume: expected --checkpoint-dir DIR to resume from, got none" in capsys.readouterr().err
