"""Time to the lecture's 2.4% on MNIST, compilation included: nnlab's main job against a plain
Flax per-step loop of the same network.

- `nnlab train mnist-mlp` as a user runs it (a subprocess, `--json`): its setup (initialization
  and its compilation) plus the seconds of its epochs up to the first whose validation error is
  at or below the target, the first epoch with its compilation; run with an empty persistent
  compilation cache (cold) and again (warm).
- plain loop: 784-100-100-10 ReLU, Adam 1e-3, batch 128, pixels in [0, 1] (as the Flax example), no
  augmentation; one jitted step per batch (Flax's MNIST example's style), the validation error
  after every epoch; the same 50,000 / 10,000 split as nnlab.

    NNLAB_DATA_DIR=../shared/data python benchmarks/time_to_target.py --json benchmarks/results/time_to_target.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnlab


def _reached(seconds: list[float], errors: list[float], target: float, setup: float) -> dict:
    """Seconds (`setup` included) until the first epoch at or below `target` (None if never), and that epoch."""
    row = {"epoch": None, "seconds": None, "setup_s": setup, "first_epoch_s": seconds[0]}
    for i, e in enumerate(errors):
        if e <= target:
            return {**row, "epoch": i + 1, "seconds": setup + float(sum(seconds[: i + 1]))}
    return row


def nnlab_cli(cache: Path, epochs: int, target: float, keep: bool) -> dict:
    """`nnlab train mnist-mlp` in a subprocess with the persistent compilation cache in `cache`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        env = {**os.environ, "NNLAB_COMPILATION_CACHE": str(cache), "NNLAB_KEEP_FREED_MEMORY": "1" if keep else "0"}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nnlab",
                "train",
                "mnist-mlp",
                "--epochs",
                str(epochs),
                "--quiet",
                "--json",
                str(out),
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = json.loads(out.read_text())
    history = results["history"]
    return _reached(
        [h["seconds"] for h in history], [h["val_error"] for h in history], target, results["setup_seconds"]
    )


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for width in (100, 100):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


def plain_loop(epochs: int, target: float, data_dir) -> dict:
    """The plain per-step Flax loop on nnlab's split (time starts at the first step, data on the host)."""
    splits = nnlab.load_splits(nnlab.configs.get_config("mnist-mlp").replace(data_dir=data_dir))
    x, y = splits.train.x.reshape(len(splits.train.x), -1), splits.train.y
    xv = splits.val.x.reshape(len(splits.val.x), -1)
    model, tx = MLP(), optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb).mean()

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def errors(params, xb, yb):
        return jnp.sum(jnp.argmax(model.apply(params, xb), -1) != yb)

    start = time.perf_counter()
    params = model.init(jax.random.key(0), x[:1])
    opt_state = tx.init(params)
    setup = time.perf_counter() - start
    rng = np.random.default_rng(0)
    seconds, val = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x))
        for b in range(len(x) // 128):
            idx = order[b * 128 : (b + 1) * 128]
            params, opt_state = step(params, opt_state, x[idx], y[idx])
        val.append(int(errors(params, xv, splits.val.y)) / len(xv))
        seconds.append(time.perf_counter() - t0)
    return _reached(seconds, val, target, setup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", type=float, default=0.024, help="validation error to reach (default 0.024)")
    p.add_argument("--epochs", type=int, default=25, help="epochs of each run (the target must fall inside)")
    p.add_argument("--data-dir")
    p.add_argument("--json")
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (default: keep freed memory, as the nnlab command does)",
    )
    args = p.parse_args()
    kept = not args.system_malloc and nnlab.train.keep_freed_memory()  # before any JAX computation
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name, run in (
            ("nnlab train mnist-mlp (cold cache)", lambda: nnlab_cli(Path(cache), args.epochs, args.target, kept)),
            ("nnlab train mnist-mlp (warm cache)", lambda: nnlab_cli(Path(cache), args.epochs, args.target, kept)),
            ("plain Flax per-step loop", lambda: plain_loop(args.epochs, args.target, args.data_dir)),
        ):
            rows.append({"contender": name, **run()})
            print(nnlab.report.format_table(rows[-1:]), flush=True)
    base = rows[-1]["seconds"]
    for r in rows:
        r["vs_plain_loop"] = None if r["seconds"] is None or base is None else r["seconds"] / base
    print(nnlab.report.format_table(rows))
    if args.json:
        nnlab.report.write_json(
            args.json, {**nnlab.report.environment(), "keep_freed_memory": kept, "target": args.target, "rows": rows}
        )


if __name__ == "__main__":
    main()
