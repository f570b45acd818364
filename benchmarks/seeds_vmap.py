"""Seeds as an axis: what S vmapped members cost against S separate runs / one model.

CPU part (always): the MNIST MLP (default recipe, a few epochs), S seeds as one `fit_many`
program against S sequential `fit` calls, as ratios of training seconds (total, compilation
included, and per epoch after the first) in the same process; and against the other way to
use this machine's cores: P processes at once (one XLA thread each), each training S / P seeds
with `fit` one after another (wall time from their start to the last one's end, data loading
and imports excluded).

CNN part (on a GPU, or with --cnn anywhere): the Flax MNIST example CNN, seconds per epoch of
S vmapped members against one, for two formulations of its convolutions: Linen `nn.Conv`
(which XLA turns into grouped convolutions under vmap) and patches + matrix multiply (which
vmap turns into a batched matrix multiply).

    python benchmarks/seeds_vmap.py --json benchmarks/results/seeds_vmap_cpu.json
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import nnlab


class PatchConv(nn.Module):
    """A SAME 3x3 convolution as patches [b, h, w, 9c] @ kernel [9c, features] (+ bias)."""

    features: int

    @nn.compact
    def __call__(self, x):
        patches = jax.lax.conv_general_dilated_patches(
            x, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "OIHW", "NHWC")
        )
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (patches.shape[-1], self.features))
        return patches @ kernel + self.param("bias", nn.initializers.zeros, (self.features,))


class FlaxExampleCNN(nn.Module):
    """The Flax MNIST example CNN: conv32-pool-conv64-pool-dense256-dense10."""

    patches: bool = False

    @nn.compact
    def __call__(self, x, *, train):
        del train
        for features in (32, 64):
            x = PatchConv(features)(x) if self.patches else nn.Conv(features, (3, 3))(x)
            x = nn.avg_pool(nn.relu(x), (2, 2), (2, 2))
        x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def _steady_epoch_seconds(histories) -> float:
    """Median seconds of the epochs after the first (which includes compilation)."""
    return float(np.median([h["seconds"] for h in histories[0][1:]]))


def _train_config(cfg, epochs: int, augmentation: bool):
    """The recipe for `epochs` epochs without early stopping, its augmentation on or off."""
    train = cfg.train.replace(epochs=epochs, patience=None)
    return train if augmentation else train.replace(augmentation=nnlab.data.Augmentation())


def cpu_mlp(members: int, epochs: int, rounds: int, procs: int, data_dir, keep: bool, augmentation: bool) -> list[dict]:
    """Rounds of (S vmapped, S sequential, P processes), in turn so that a busy machine slows all alike."""
    cfg = nnlab.configs.get_config("mnist-mlp").replace(data_dir=data_dir)
    train_cfg = _train_config(cfg, epochs, augmentation)
    splits = nnlab.load_splits(cfg)
    model = nnlab.build_model(cfg, splits.train)
    rows = []
    for r in range(rounds):
        many = nnlab.fit_many(
            model, splits.train, keys=list(range(members)), config=train_cfg, val=splits.val, progress=False
        )
        sequential = [
            nnlab.fit(model, splits.train, key=jax.random.key(i), config=train_cfg, val=splits.val, progress=False)
            for i in range(members)
        ]
        seq_seconds = sum(r.train_seconds for r in sequential)
        seq_epoch = sum(float(np.median(r.epoch_seconds[1:])) for r in sequential)
        rows.append(
            {
                "round": r,
                "model": "mnist-mlp",
                "members": members,
                "epochs": epochs,
                "augmentation": augmentation,
                "vmapped_train_s": many.train_seconds,
                "sequential_train_s": seq_seconds,
                "speedup_total": seq_seconds / many.train_seconds,
                "vmapped_epoch_s": _steady_epoch_seconds(many.histories),
                "sequential_epoch_s": seq_epoch,
                "speedup_per_epoch": seq_epoch / _steady_epoch_seconds(many.histories),
            }
        )
        if procs > 1:
            par = processes(members, epochs, procs, data_dir, keep, augmentation)
            rows[-1].update(
                par,
                processes=procs,
                vs_processes_total=par["processes_train_s"] / many.train_seconds,
                vs_processes_per_epoch=par["processes_epoch_s"] / _steady_epoch_seconds(many.histories),
            )
    return rows


_HERE = os.path.dirname(os.path.abspath(__file__))  # the workers import _train_config from here
_WORKER = """
import json, sys, time
import jax, nnlab
members, epochs, data_dir, go, keep, augmentation, here = json.loads(sys.argv[1])
sys.path.insert(0, here)
from seeds_vmap import _train_config
if keep:
    nnlab.train.keep_freed_memory()
cfg = nnlab.configs.get_config("mnist-mlp").replace(data_dir=data_dir)
splits = nnlab.load_splits(cfg)
model = nnlab.build_model(cfg, splits.train)
train = _train_config(cfg, epochs, augmentation)
while time.time() < go:  # all processes start training together
    time.sleep(0.005)
start = time.time()
runs = [nnlab.fit(model, splits.train, key=jax.random.key(i), config=train, val=splits.val, progress=False)
        for i in members]
print(json.dumps({"start": start, "end": time.time(), "epoch_s": [r.epoch_seconds for r in runs]}))
"""


def processes(members: int, epochs: int, procs: int, data_dir, keep: bool, augmentation: bool) -> dict:
    """`procs` processes at once, one XLA:CPU thread each, training members / procs seeds each with `fit`."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        "NNLAB_COMPILATION_CACHE": "off",
    }
    go = time.time() + 30  # time to import jax and load MNIST in every process
    parts = np.array_split(np.arange(members), procs)
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, json.dumps([p.tolist(), epochs, data_dir, go, keep, augmentation, _HERE])],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in parts
    ]
    outs = [json.loads(job.communicate()[0].strip().splitlines()[-1]) for job in jobs]
    if any(job.returncode for job in jobs):
        raise RuntimeError("processes: a worker failed")
    wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    # per epoch after the first: the slower process's sum over its seeds
    epoch = max(sum(float(np.median(e[1:])) for e in o["epoch_s"]) for o in outs)
    return {"processes_train_s": wall, "processes_epoch_s": epoch}


def cnn(members: int, epochs: int, train_subset: int | None, data_dir) -> list[dict]:
    train, _ = nnlab.mnist(data_dir)
    if train_subset:
        train = train.take(train_subset)
    cfg = nnlab.TrainConfig(epochs=epochs, batch_size=128, optimizer="sgd", learning_rate=0.1)
    rows = []
    for patches in (False, True):
        model = nnlab.from_linen(FlaxExampleCNN(patches=patches), input_shape=(28, 28, 1))
        one = nnlab.fit_many(model, train, keys=[0], config=cfg, progress=False)
        many = nnlab.fit_many(model, train, keys=list(range(members)), config=cfg, progress=False)
        t1, ts = _steady_epoch_seconds(one.histories), _steady_epoch_seconds(many.histories)
        rows.append(
            {
                "model": "flax-example-cnn",
                "conv": "patches @ kernel" if patches else "nn.Conv",
                "members": members,
                "one_epoch_seconds": t1,
                "members_epoch_seconds": ts,
                "cost_vs_one_model": ts / t1,
            }
        )
    return rows


def _median_seconds(f, *args, calls: int) -> float:
    """Median wall seconds of `calls` calls of f(*args), after one call to compile."""
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bounds(members: int) -> list[dict]:
    """What limits the vmapped MLP on this machine: the recipe's augmentation per batch of 128
    (one member, and all members' batches in one call) and the rate of the first layer's matrix
    product [128, 784] @ [784, 100] (one member, members as one batched product) against a
    large product (2048^3)."""
    aug = nnlab.configs.get_config("mnist-mlp").train.augmentation
    k_images, k_augment, k_x, k_w, k_big = jax.random.split(jax.random.key(0), 5)
    augment = jax.jit(lambda x, k: nnlab.data.augment(aug, x, key=k))
    product = jax.jit(lambda x, w: jnp.einsum("sbi,sio->sbo", x, w))
    rows = []
    for s in (1, members):
        x = jax.random.uniform(k_images, (s * 128, 28, 28, 1))
        t = _median_seconds(augment, x, k_augment, calls=50)
        rows.append({"measure": f"augmentation, {s} x 128 images", "ms": 1e3 * t, "gflops": None})
    for s in (1, members):
        x, w = jax.random.normal(k_x, (s, 128, 784)), jax.random.normal(k_w, (s, 784, 100))
        t = _median_seconds(product, x, w, calls=200)
        flop = 2 * s * 128 * 784 * 100
        rows.append({"measure": f"{s} x [128,784]@[784,100]", "ms": 1e3 * t, "gflops": flop / t / 1e9})
    a = jax.random.normal(k_big, (2048, 2048))
    t = _median_seconds(jax.jit(jnp.matmul), a, a, calls=10)
    rows.append({"measure": "[2048,2048]@[2048,2048]", "ms": 1e3 * t, "gflops": 2 * 2048**3 / t / 1e9})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2: the first includes compilation)")
    p.add_argument("--rounds", type=int, default=2, help="MLP part: alternating rounds of vmapped / sequential")
    p.add_argument("--processes", type=int, default=2, help="MLP part: P parallel processes (1: none)")
    p.add_argument("--cnn", action="store_true", help="run the CNN part on any backend (default: on a GPU only)")
    p.add_argument("--cnn-train-subset", type=int, help="CNN part: first N training samples only")
    p.add_argument("--skip-mlp", action="store_true")
    p.add_argument("--no-augmentation", action="store_true", help="MLP part: the recipe without its augmentation")
    p.add_argument("--bounds", action="store_true", help="also time the augmentation and the matrix products alone")
    p.add_argument("--data-dir")
    p.add_argument("--json")
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (default: keep freed memory, as the nnlab command does)",
    )
    args = p.parse_args()
    kept = not args.system_malloc and nnlab.train.keep_freed_memory()  # before any JAX computation
    results = {**nnlab.report.environment(), "keep_freed_memory": kept, "command": "python " + shlex.join(sys.argv)}
    if not args.skip_mlp:
        results["mlp"] = cpu_mlp(
            args.members, args.epochs, args.rounds, args.processes, args.data_dir, kept, not args.no_augmentation
        )
        print(nnlab.report.format_table(results["mlp"]))
    if args.bounds:
        results["bounds"] = bounds(args.members)
        print(nnlab.report.format_table(results["bounds"]))
    if args.cnn or jax.default_backend() == "gpu":
        results["cnn"] = cnn(args.members, args.epochs, args.cnn_train_subset, args.data_dir)
        print(nnlab.report.format_table(results["cnn"]))
    if args.json:
        nnlab.report.write_json(args.json, results)


if __name__ == "__main__":
    main()
