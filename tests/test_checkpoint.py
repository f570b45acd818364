import gc
import json
import os
import re
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    proc = _python(
        SETUP
        + """
import sys, time
from nnlab.checkpoint import Checkpointer
nnlab.fit(model, train, key=jax.random.key(0), config=config, val=val,
          checkpointer=Checkpointer(sys.argv[1], every=2), callbacks=[lambda *a: time.sleep(0.2)])
""",
        str(tmp_path),
    )
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


@pytest.mark.parametrize(
    "stage, partial", [("arrays", "epoch_000002.orbax-checkpoint-tmp"), ("manifest", "epoch_000002")]
)
def test_sigkill_while_writing_leaves_the_previous_checkpoint_valid(tmp_path, stage, partial):
    # the subprocess saves epoch 1, then stalls inside the save of epoch 2 (hook patched in
    # by this test: before Orbax renames its temporary folder into place, or after that,
    # while nnlab hashes the files for the manifest)
    proc = _python(
        """
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
    C.ocp.StandardCheckpointHandler.finalize = lambda self, *a, **k: stall()
else:
    C.file_sha256 = stall
ckpt.save(state.replace(epoch=state.epoch + 2))
""",
        str(tmp_path),
        stage,
    )
    _wait_for(lambda: (tmp_path / "stalled").exists(), proc)
    _sigkill(proc)

    partial = tmp_path / partial
    assert partial.is_dir() and not (partial / "manifest.json").exists()
    ckpt = nnlab.Checkpointer(tmp_path)
    assert ckpt.epochs() == [1] and ckpt.latest().name == "epoch_000001"
    with pytest.raises(nnlab.checkpoint.CheckpointError, match="no manifest.json: an incomplete save"):
        nnlab.checkpoint.read_checkpoint(partial)
    state = _state()
    restored = ckpt.restore(state)
    assert restored.epoch == 1 and _sha(restored.state.variables) == _sha(state.variables)
    ckpt.save(state.replace(epoch=state.epoch + 2))  # the next save clears the leftover
    assert ckpt.epochs() == [1, 2] and sorted(p.name for p in tmp_path.iterdir()) == [
        ".nnlab-lock",
        "epoch_000001",
        "epoch_000002",
        "stalled",
    ]


def test_state_round_trips_bit_for_bit_with_typed_keys(tmp_path):
    state = _state().replace(step=jnp.int32(7))
    ckpt = nnlab.Checkpointer(tmp_path)
    ckpt.save(state)
    restored = ckpt.restore(_state(key=5)).state
    for a, b in zip(jax.tree.leaves(to_plain(state)), jax.tree.leaves(to_plain(restored)), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert jnp.issubdtype(restored.rng["dropout"].dtype, jax.dtypes.prng_key) and int(restored.step) == 7
    assert jax.tree.structure(restored) == jax.tree.structure(state)


@pytest.mark.parametrize(
    "widths, message",
    [
        ([2, 5, 3], r"mismatched shapes/dtypes \[params/0/W: checkpoint \(16, 2\) float32, model \(5, 2\) float32"),
        ([2, 16, 16, 3], r"missing keys \['params/2/W', 'params/2/s'"),
        ([2, 3], r"unexpected keys \[.*'params/1/W', 'params/1/s'\]"),
    ],
)
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


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: _truncate(_largest_array_file(p)), "was truncated or altered: .* expected .* sha256"),
        (lambda p: _flip(_largest_array_file(p)), "was truncated or altered"),
        (lambda p: _largest_array_file(p).unlink(), "is listed in the manifest but missing"),
        (lambda p: _flip(p / "meta.json"), "meta.json was truncated or altered"),
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json: an incomplete save"),
        (lambda p: (p / "manifest.json").write_text("{"), "manifest.json is damaged"),
    ],
)
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
    ckpt = nnlab.Checkpointer(small_tmpfs / "run").open()  # held open, as `fit` holds it
    state = _state()
    ckpt.save(state)
    if make_unwritable == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
        expected = "Read-only file system"
    else:
        free = os.statvfs(small_tmpfs)
        (small_tmpfs / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize))
        expected = "No space left on device|RESOURCE_EXHAUSTED|space"
    with pytest.raises(
        nnlab.checkpoint.CheckpointError,
        match=rf"could not write the checkpoint of epoch 1 to .*({expected})"
        r".*the previous checkpoint epoch_000000 is untouched",
    ):
        ckpt.save(state.replace(epoch=state.epoch + 1))
    ckpt.close()
    assert ckpt.epochs() == [0]
    assert _sha(ckpt.restore(_state(key=3)).state.variables) == _sha(state.variables)
    gc.collect()  # the failed write's unawaited Orbax coroutines: collected here, under this test's filter


def test_a_failed_background_save_is_raised_by_wait(small_tmpfs):
    # in its own process, which must also end: with Orbax's own asynchronous mode, threads left
    # waiting by the failed write kept the process alive for their 20-minute timeout
    script = """
import subprocess, sys
from pathlib import Path
import jax, jax.numpy as jnp, nnlab
from nnlab.train import init_state, make_tx
model = nnlab.nn.mlp([2, 16, 3], activation="tanh", input_shape=(2,))
state = init_state(model, make_tx(nnlab.TrainConfig(), 10), jnp.zeros((1, 2)), key=jax.random.key(0))
ckpt = nnlab.Checkpointer(Path(sys.argv[1], "run"), async_save=True).open()
ckpt.save(state)
ckpt.wait()
subprocess.run(["mount", "-o", "remount,ro", sys.argv[1]], check=True)
try:
    ckpt.save(state.replace(epoch=state.epoch + 1))
    print("save returned", flush=True)
    ckpt.wait()
except nnlab.checkpoint.CheckpointError as e:
    print("raised:", e, flush=True)
ckpt.close()
print("epochs:", ckpt.epochs(), flush=True)
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(small_tmpfs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
        timeout=300,
    ).stdout
    assert re.search(
        r"raised: checkpoint_dir: could not write the checkpoint of epoch 1 to .*Read-only file system"
        r".*the previous checkpoint epoch_000000 is untouched",
        out,
    ), out
    assert out.rstrip().endswith("epochs: [0]")


def test_async_save_into_a_path_that_cannot_be_a_folder_fails_at_once(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    ckpt = nnlab.Checkpointer(tmp_path / "file" / "run", async_save=True)
    with pytest.raises(
        nnlab.checkpoint.CheckpointError, match="cannot write checkpoints to .*file/run .*Not a directory"
    ):
        ckpt.save(_state())
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
    nnlab.fit(
        MODEL,
        TRAIN,
        key=jax.random.key(0),
        config=CONFIG.replace(epochs=2),
        val=VAL,
        checkpointer=nnlab.Checkpointer(tmp_path),
    )
    with pytest.raises(ValueError, match="checkpointer: .* already holds checkpoints of a run .*epoch_000002.*resume"):
        nnlab.fit(
            MODEL,
            TRAIN,
            key=jax.random.key(1),
            config=CONFIG.replace(epochs=2),
            val=VAL,
            checkpointer=nnlab.Checkpointer(tmp_path),
        )
    assert nnlab.Checkpointer(tmp_path).epochs() == [1, 2]


@pytest.mark.optax_promotion
def test_a_folder_loads_the_best_variables_even_when_the_best_epoch_was_not_saved(tmp_path):
    ckpt = nnlab.Checkpointer(tmp_path, every=3)
    result = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG.replace(epochs=7), val=VAL, checkpointer=ckpt)
    loaded = nnlab.checkpoint.read_checkpoint(nnlab.checkpoint.find_checkpoint(tmp_path), nnlab.train.stack([_state()]))
    assert _sha(nnlab.train.member(loaded.best_variables, 0)) == _sha(result.variables)


@pytest.mark.optax_promotion
def test_load_model_elsewhere_gives_the_trained_outputs(tmp_path):
    cfg = nnlab.RunConfig(model="mnist-mlp", dataset="blobs", model_kwargs={"width": 8, "depth": 1})
    ckpt = nnlab.Checkpointer(tmp_path, config=cfg.to_dict())
    x = jax.random.uniform(jax.random.key(3), (5, 28, 28, 1))
    model = nnlab.nn.with_normalization(
        nnlab.get_model("mnist-mlp", width=8, depth=1), nnlab.data.fit_normalization(np.asarray(x))
    )
    state = init_state(model, make_tx(CONFIG, 10), x[:1], key=jax.random.key(0))
    ckpt.save(state)
    loaded = nnlab.load_model(tmp_path)
    want, _ = model.apply(state.variables, x, train=False)
    # a jitted and an un-jitted forward pass are different programs: equal up to float rounding
    np.testing.assert_allclose(jax.jit(loaded.apply)(loaded.variables, x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.apply(loaded.variables, x), want)  # the same program: bitwise
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
    assert (
        main(
            [
                *args,
                "--checkpoint-dir",
                str(run_dir),
                "--checkpoint-every",
                "20",
                "--keep",
                "5",
                "--json",
                str(tmp_path / "whole.json"),
            ]
        )
        == 0
    )
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
    assert main([*args, "--lr", "0.3", "--checkpoint-dir", str(run_dir), "--resume"]) == 2
    assert "was written with other settings: train.learning_rate: checkpoint 0.5, now 0.3" in capsys.readouterr().err
    assert main(["train", "xor", "--resume", "--quiet"]) == 2
    assert "--resume: expected --checkpoint-dir DIR to resume from, got none" in capsys.readouterr().err


# --- hardening (issue 10): each test names the finding it covers --------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry below `folder`: (size, mtime_ns, sha256) of files, (-1, -1, '') of folders."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (
            (st.st_size, st.st_mtime_ns, nnlab.report.file_sha256(p)) if p.is_file() else (-1, -1, "")
        )
    return out


def _rewrite(path: Path, name: str, data: bytes) -> None:
    """Replaces `path/name` and updates its manifest entry, as someone who knows the format would."""
    (path / name).write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest[name] = {"sha256": nnlab.report.file_sha256(path / name), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.optax_promotion
def test_relative_paths_work_from_any_working_directory(tmp_path, monkeypatch, capsys):
    """Finding: `nnlab train xor --checkpoint-dir ck` (a relative folder) failed after the first
    epoch (Orbax requires absolute paths); `nnlab eval ck` and `nnlab.load_model("runs/mnist")`
    failed the same way."""
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "xor",
                "--epochs",
                "30",
                "--quiet",
                "--checkpoint-dir",
                "runs/xor",
                "--checkpoint-every",
                "10",
                "--json",
                "out/xor.json",
            ]
        )
        == 0
    )
    results = json.loads(Path("out/xor.json").read_text())
    assert main(["eval", "runs/xor", "--json", "eval.json"]) == 0
    assert json.loads(Path("eval.json").read_text())["params_sha256"] == results["params_sha256"]
    loaded = nnlab.load_model("runs/xor")
    assert loaded.path == tmp_path / "runs" / "xor" / "epoch_000030"
    assert _sha(loaded.variables) == results["params_sha256"]
    assert nnlab.checkpoint.read_checkpoint("runs/xor/epoch_000030").epoch == 30
    ckpt = nnlab.Checkpointer("runs/xor")  # resolved where it enters: a later chdir changes nothing
    monkeypatch.chdir(tmp_path / "out")
    assert ckpt.latest() == tmp_path / "runs" / "xor" / "epoch_000030"
    xor = nnlab.configs.get_config("xor").train
    template = nnlab.train.stack(
        [init_state(nnlab.get_model("xor-mlp"), make_tx(xor, 1), jnp.zeros((1, 2)), key=jax.random.key(0))]
    )
    assert ckpt.restore(template).epoch == 30


def test_a_save_removes_only_its_own_temporaries(tmp_path):
    """Finding: every `.tmp-*` entry in the checkpoint folder was deleted on save, a user's own
    `.tmp-mydata/` included (and another process's save in progress: see the lock test)."""
    (tmp_path / ".tmp-mydata").mkdir()
    (tmp_path / ".tmp-mydata" / "notes.txt").write_text("mine")
    (tmp_path / ".tmp-epoch_000001").mkdir()
    (tmp_path / "epoch_000003.orbax-checkpoint-tmp").mkdir()  # Orbax's own temporary name: its leftover
    ckpt = nnlab.Checkpointer(tmp_path)
    ckpt.save(_state())
    assert (tmp_path / ".tmp-mydata" / "notes.txt").read_text() == "mine"
    assert (tmp_path / ".tmp-epoch_000001").is_dir()
    assert not (tmp_path / "epoch_000003.orbax-checkpoint-tmp").exists()
    assert ckpt.epochs() == [0]


@pytest.mark.optax_promotion
def test_a_second_writer_fails_at_once_and_touches_nothing(tmp_path):
    """Finding: two processes writing one folder crashed one and pruned the other's checkpoints.
    A process holds the folder (as `fit` does while it trains); a second writer, in another
    process, fails at once and changes no byte; once the first is gone, writing works."""
    holder = _python(
        """
import sys, time
from pathlib import Path
import jax, jax.numpy as jnp, nnlab
from nnlab.train import init_state, make_tx
model = nnlab.nn.mlp([2, 16, 3], activation="tanh", input_shape=(2,))
state = init_state(model, make_tx(nnlab.TrainConfig(), 10), jnp.zeros((1, 2)), key=jax.random.key(0))
ckpt = nnlab.Checkpointer(sys.argv[1]).open()
ckpt.save(state.replace(epoch=state.epoch + 1))
Path(sys.argv[2]).touch()
time.sleep(300)
""",
        str(tmp_path / "run"),
        str(tmp_path / "ready"),
    )
    _wait_for(lambda: (tmp_path / "ready").exists(), holder)
    before = _tree(tmp_path)
    busy = "is being written by another process .*holds the lock .*nnlab-lock"
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=busy):
        nnlab.fit(
            MODEL,
            TRAIN,
            key=jax.random.key(1),
            config=CONFIG,
            val=VAL,
            checkpointer=nnlab.Checkpointer(tmp_path / "run"),
            resume=True,
        )
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=busy):
        nnlab.Checkpointer(tmp_path / "run", keep=1).save(_state().replace(epoch=jnp.int32(5)))
    assert _tree(tmp_path) == before
    _sigkill(holder)  # the kernel releases its lock
    ckpt = nnlab.Checkpointer(tmp_path / "run", keep=1)
    ckpt.save(_state().replace(epoch=jnp.int32(5)))
    assert ckpt.epochs() == [5]


@pytest.mark.parametrize("entry", ["../../outside.txt", "ABSOLUTE", "arrays/../../outside.txt", "link"])
def test_manifest_entries_outside_the_checkpoint_are_refused_unread(tmp_path, monkeypatch, entry):
    """Finding: a manifest entry `../../etc/passwd` or `/etc/shadow` was read and hashed: files
    outside the checkpoint were opened. Here the outside file's true hash is in the manifest, so
    only confinement can refuse it; a spy on the hash function shows it is never read."""
    path = nnlab.Checkpointer(tmp_path / "run").save(_state())
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of any checkpoint")
    if entry == "ABSOLUTE":
        entry = str(outside)
    if entry == "link":
        (path / "link").symlink_to(outside)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest[entry] = {"sha256": nnlab.report.file_sha256(outside), "bytes": outside.stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))
    hashed = []
    real_sha = nnlab.checkpoint.file_sha256
    monkeypatch.setattr(nnlab.checkpoint, "file_sha256", lambda p: (hashed.append(os.path.realpath(p)), real_sha(p))[1])
    with pytest.raises(
        nnlab.checkpoint.CheckpointError, match="(not a file path inside|leads out of) the checkpoint folder"
    ):
        nnlab.checkpoint.read_checkpoint(path)
    assert str(outside) not in hashed


@pytest.mark.parametrize(
    "manifest, message",
    [
        ("{}", r"is damaged \(expected a JSON object with one entry per file, got dict"),
        ("[]", r"is damaged \(expected a JSON object with one entry per file, got list"),
        ('{"meta.json": "abc"}', r"is damaged \(entry 'meta.json': expected"),
        ("DROP_ARRAY", r"does not cover 1 file\(s\) of the checkpoint \(arrays/"),
        ("DROP_META", r"does not cover 1 file\(s\) of the checkpoint \(meta.json\)"),
    ],
)
def test_a_manifest_that_verifies_nothing_is_refused(tmp_path, manifest, message):
    """Finding: an empty manifest `{}` verified nothing and passed; a manifest that is a JSON
    list crashed with AttributeError. A manifest must cover meta.json and every array file."""
    path = nnlab.Checkpointer(tmp_path).save(_state())
    entries = json.loads((path / "manifest.json").read_text())
    if manifest == "DROP_ARRAY":
        dropped = str(_largest_array_file(path).relative_to(path))
        manifest = json.dumps({k: v for k, v in entries.items() if k != dropped})
    elif manifest == "DROP_META":
        manifest = json.dumps({k: v for k, v in entries.items() if k != "meta.json"})
    (path / "manifest.json").write_text(manifest)
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=message):
        nnlab.checkpoint.read_checkpoint(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("arrays_sha256"), r"meta.json is damaged \(expected an epoch number and arrays_sha256\)"),
        (lambda m: m.update(log=[]), r"meta.json is damaged \(log: expected an object\)"),
        (
            lambda m: m.update(log={"histories": 3}),
            r"meta.json is damaged \(log: unexpected values for \['histories'\]\)",
        ),
        (lambda m: m.update(epoch="7"), r"meta.json is damaged \(expected an epoch number"),
    ],
)
def test_a_damaged_meta_file_is_a_checkpoint_error(tmp_path, change, message):
    """Finding: meta.json without `arrays_sha256` crashed with KeyError (a damaged file must give
    CheckpointError, never another exception), even with a manifest rewritten to match."""
    path = nnlab.Checkpointer(tmp_path).save(_state())
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    _rewrite(path, "meta.json", json.dumps(meta).encode())
    with pytest.raises(nnlab.checkpoint.CheckpointError, match=message):
        nnlab.checkpoint.read_checkpoint(path)


@pytest.mark.optax_promotion
def test_resume_falls_back_to_the_newest_valid_checkpoint_with_a_warning(tmp_path):
    """Finding: when the latest checkpoint was corrupt, `--resume` did not fall back to the
    previous one. Here the run lost its tail after epoch 4, whose checkpoint is damaged: resume
    warns, continues from epoch 2 and ends bitwise as the uninterrupted run."""
    ckpt = nnlab.Checkpointer(tmp_path, every=2, keep=10)
    whole = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL, checkpointer=ckpt)
    for e in range(6, CONFIG.epochs + 1, 2):
        shutil.rmtree(ckpt.path(e))
    _flip(_largest_array_file(ckpt.path(4)))
    with pytest.warns(
        nnlab.checkpoint.CheckpointWarning,
        match=r"skipping .*epoch_000004, which is damaged .*truncated or "
        r"altered.*using the newest valid checkpoint before it",
    ):
        resumed = nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL, checkpointer=ckpt, resume=True)
    assert _sha(resumed.variables) == _sha(whole.variables) and resumed.epochs_run == CONFIG.epochs
    assert ckpt.epochs()[-1] == CONFIG.epochs
    nnlab.checkpoint.read_checkpoint(ckpt.path(4))  # rewritten whole by the resumed run


def test_resume_with_more_epochs_continues_and_changed_settings_are_named(tmp_path, capsys):
    """Findings: `--resume --epochs 20` on a 10-epoch run was refused instead of continuing, and
    a changed setting was reported only as "fields ['train'] differ"."""
    common = ["train", "xor", "--quiet", "--checkpoint-dir", str(tmp_path / "run")]
    assert main([*common, "--epochs", "10"]) == 0
    assert main([*common, "--epochs", "20", "--resume", "--json", str(tmp_path / "continued.json")]) == 0
    assert main(["train", "xor", "--quiet", "--epochs", "20", "--json", str(tmp_path / "whole.json")]) == 0
    continued, whole = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("continued", "whole"))
    assert continued["epochs_run"] == 20 and [h["epoch"] for h in continued["history"]] == list(range(1, 21))
    assert continued["params_sha256"] == whole["params_sha256"]  # XOR's schedule is constant: nothing changed
    capsys.readouterr()
    assert main([*common, "--epochs", "20", "--resume", "--lr", "0.3", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was written with other settings: " in err
    assert "seed: checkpoint 0, now 1" in err and "train.learning_rate: checkpoint 0.5, now 0.3" in err
    assert main([*common, "--epochs", "15", "--resume"]) == 2
    assert "train.epochs: checkpoint 20, now 15" in capsys.readouterr().err


@pytest.mark.optax_promotion
def test_a_second_signal_during_a_checkpoint_write_lets_the_write_complete(tmp_path, monkeypatch):
    """Finding: Ctrl-C left `.tmp-*` folders (a write cut off). The first SIGINT ends training at
    the end of the epoch; a second one that arrives while a checkpoint is being written takes
    effect only once the write is complete."""
    ckpt = nnlab.Checkpointer(tmp_path, every=100)
    real = nnlab.checkpoint._add_manifest

    def signal_twice_then_write(folder, meta):
        os.kill(os.getpid(), signal.SIGINT)  # the second signal: the first came from the callback
        real(folder, meta)

    monkeypatch.setattr(nnlab.checkpoint, "_add_manifest", signal_twice_then_write)
    first = lambda epoch, state, record: epoch == 3 and os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    with pytest.raises(nnlab.train.Interrupted) as stop:
        nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL, checkpointer=ckpt, callbacks=[first])
    assert stop.value.exit_code == 128 + signal.SIGINT and stop.value.checkpoint == ckpt.path(3)
    assert ckpt.epochs() == [3] and sorted(p.name for p in tmp_path.iterdir()) == [".nnlab-lock", "epoch_000003"]
    assert (
        nnlab.checkpoint.read_checkpoint(ckpt.path(3)).log["stopped"] is False
    )  # interrupted is not stopped: resume continues


@pytest.mark.optax_promotion
def test_a_second_signal_mid_epoch_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    """Finding: Ctrl-C printed 70-140 lines of tracebacks (here the API's side: one exception
    that says what was kept)."""
    ckpt = nnlab.Checkpointer(tmp_path, every=2)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in a background job

    def twice(epoch, state, record):
        if epoch == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(
        nnlab.train.Interrupted,
        match=r"interrupted by SIGINT during epoch 3 \(that epoch is lost\): "
        r"the newest checkpoint is .*epoch_000002",
    ):
        nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, val=VAL, checkpointer=ckpt, callbacks=[twice])
    assert ckpt.epochs() == [2]
    assert signal.getsignal(signal.SIGINT) is before  # fit restored the handler


# Hypothesis: whatever the bytes of manifest.json or meta.json, reading gives a checkpoint or a
# CheckpointError, never another exception.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)
_ENTRY = st.fixed_dictionaries({"sha256": st.text(max_size=70) | _JSON, "bytes": st.integers() | _JSON})
_NAMES = st.sampled_from(
    [
        "meta.json",
        "arrays/_METADATA",
        "../x",
        "/etc/hostname",
        "",
        ".",
        "a\x00b",
        "arrays",
        "arrays/../meta.json",
        "x" * 300,
    ]
) | st.text(max_size=30)


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    return nnlab.Checkpointer(tmp_path_factory.mktemp("saved")).save(_state())


def _reads_or_refuses(path: Path) -> None:
    try:
        nnlab.checkpoint.read_checkpoint(path, _state())
    except nnlab.checkpoint.CheckpointError:
        pass


def _manifest_bytes(real: dict):
    """Raw bytes, any JSON, and the real manifest with entries dropped, renamed or replaced."""
    edited = st.lists(st.tuples(_NAMES, _ENTRY | _JSON), max_size=3).map(
        lambda extra: {**{k: v for i, (k, v) in enumerate(real.items()) if i % 3}, **dict(extra)}
    )
    return st.binary(max_size=200) | _JSON.map(json.dumps).map(str.encode) | edited.map(json.dumps).map(str.encode)


def _meta_bytes(real: dict):
    """Raw bytes, any JSON, and the real meta data with fields replaced by any JSON value."""
    edited = st.dictionaries(st.sampled_from([*real, "log", "epoch"]), _JSON, max_size=3).map(lambda d: {**real, **d})
    log = st.dictionaries(
        st.sampled_from(["history", "best", "best_epoch", "since_best", "stopped"]), _JSON, max_size=3
    ).map(lambda d: {**real, "log": {**real["log"], **d}})
    return (
        st.binary(max_size=200) | _JSON.map(json.dumps).map(str.encode) | (edited | log).map(json.dumps).map(str.encode)
    )


@pytest.mark.parametrize("name", ["manifest.json", "meta.json"])
def test_any_bytes_in_manifest_or_meta_give_a_checkpoint_or_a_checkpoint_error(
    saved_checkpoint, tmp_path_factory, name
):
    """Finding: a manifest that is a JSON list, or meta.json without `arrays_sha256`, crashed with
    AttributeError / KeyError. For meta.json the manifest is rewritten to match, so that the
    bytes reach the parser behind the hashes."""
    real = json.loads((saved_checkpoint / name).read_text())
    strategy = _manifest_bytes(real) if name == "manifest.json" else _meta_bytes(real)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=strategy)
    def check(data: bytes):
        path = Path(shutil.copytree(saved_checkpoint, tmp_path_factory.mktemp("case") / "ckpt"))
        if name == "manifest.json":
            (path / name).write_bytes(data)
        else:
            _rewrite(path, name, data)
        _reads_or_refuses(path)
        shutil.rmtree(path)

    check()


@pytest.mark.optax_promotion
def test_a_seed_study_killed_after_its_second_checkpoint_resumes_bitwise(tmp_path):
    """3 members in one program, each with its own early stopping: killed with SIGKILL once two
    checkpoints exist, resumed, it ends bitwise as the uninterrupted study."""
    proc = _python(
        SETUP
        + """
import sys, time
from nnlab.checkpoint import Checkpointer
nnlab.fit_many(model, train, keys=[0, 1, 2], config=config.replace(patience=3), val=val,
               checkpointer=Checkpointer(sys.argv[1], every=2), callbacks=[lambda *a: time.sleep(0.2)])
""",
        str(tmp_path),
    )
    ckpt = nnlab.Checkpointer(tmp_path, every=2)
    _wait_for(lambda: len(ckpt.epochs()) >= 2, proc)
    _sigkill(proc)
    assert 4 <= ckpt.epochs()[-1] < CONFIG.epochs
    config = CONFIG.replace(patience=3)
    resumed = nnlab.fit_many(MODEL, TRAIN, keys=[0, 1, 2], config=config, val=VAL, checkpointer=ckpt, resume=True)
    whole = nnlab.fit_many(MODEL, TRAIN, keys=[0, 1, 2], config=config, val=VAL)
    assert _sha(resumed.variables) == _sha(whole.variables) and _sha(resumed.state.variables) == _sha(
        whole.state.variables
    )
    assert (resumed.best_epochs, resumed.epochs_run) == (whole.best_epochs, whole.epochs_run)
    drop = lambda hs: [[{k: v for k, v in r.items() if k != "seconds"} for r in h] for h in hs]  # noqa: E731
    assert drop(resumed.histories) == drop(whole.histories)
