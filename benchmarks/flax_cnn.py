"""nnlab vs the Flax MNIST example's loop vs PyTorch eager, same CNN, same batch, one process.

nnlab runs as a user runs it: `nnlab.fit` (its per-epoch wall times from the history, test
accuracy from a callback, outside the timed part). The contenders run in rounds, each for
all its epochs, in a different order every round (so load on a shared machine hits all of
them alike); the figures are medians over the rounds.

  python benchmarks/flax_cnn.py --n-train 6400 --epochs 4            # seconds per epoch
  python benchmarks/flax_cnn.py --epochs 4 --target 0.99 --json r.json  # time to 99% on full MNIST
  python benchmarks/flax_cnn.py --engines step,unroll,scan --bf16     # every loop strategy, bfloat16

Reports per contender: compile (first epoch minus a steady one), seconds per steady epoch
(median), images per second, test accuracy per epoch and training seconds to `--target`
(compile excluded), and ratios against the Flax example loop.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

import nnlab

BATCH, LR, MOMENTUM = 128, 0.1, 0.9


class FlaxExampleCNN(nn.Module):
    """flax/examples/mnist/train.py's CNN, verbatim."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=32, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=64, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(features=256)(x)
        x = nn.relu(x)
        x = nn.Dense(features=10)(x)
        return x


@jax.jit
def _flax_apply_model(state, images, labels):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        loss = jnp.mean(optax.softmax_cross_entropy(logits=logits, labels=jax.nn.one_hot(labels, 10)))
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return grads, loss, jnp.mean(jnp.argmax(logits, -1) == labels)


@jax.jit
def _flax_update_model(state, grads):
    return state.apply_gradients(grads=grads)


class _EpochByEpoch:
    """run(epochs) from a fresh start, built on the subclass's setup(), epoch() and test_accuracy()."""

    def __init__(self, train, test, seed):
        self.args = (train, test, seed)

    def run(self, epochs: int) -> tuple[list[float], list[float]]:
        self.setup(*self.args)
        times, accuracies = [], []
        for _ in range(epochs):
            times.append(self.epoch())
            accuracies.append(self.test_accuracy())
        return times, accuracies


class FlaxExample(_EpochByEpoch):
    """The Flax MNIST example's train_epoch: host-side batches, two jitted calls per step."""

    name = "flax-example"

    def setup(self, train, test, seed):
        self.x, self.y, self.test = train.x, train.y, test
        self.rng = jax.random.key(seed)
        cnn = FlaxExampleCNN()
        self.rng, init_rng = jax.random.split(self.rng)
        params = cnn.init(init_rng, jnp.ones([1, 28, 28, 1]))["params"]
        self.state = train_state.TrainState.create(apply_fn=cnn.apply, params=params, tx=optax.sgd(LR, MOMENTUM))
        self.predict = jax.jit(lambda params, x: jnp.argmax(cnn.apply({"params": params}, x), -1))

    def epoch(self) -> float:
        t0 = time.perf_counter()
        self.rng, rng = jax.random.split(self.rng)
        steps = len(self.x) // BATCH
        perms = jax.random.permutation(rng, len(self.x))[: steps * BATCH].reshape((steps, BATCH))
        losses, accuracies = [], []
        for perm in perms:
            grads, loss, accuracy = _flax_apply_model(self.state, self.x[perm, ...], self.y[perm, ...])
            self.state = _flax_update_model(self.state, grads)
            losses.append(loss)
            accuracies.append(accuracy)
        np.mean(losses), np.mean(accuracies)
        return time.perf_counter() - t0

    def test_accuracy(self) -> float:
        pred = np.concatenate(
            [self.predict(self.state.params, self.test.x[i : i + 1000]) for i in range(0, len(self.test.x), 1000)]
        )
        return float(np.mean(pred == self.test.y))


class NnlabFit:
    """`nnlab.fit` of the flax-cnn config (what `nnlab train flax-cnn` runs) with a chosen engine and dtype."""

    def __init__(self, train, test, seed, engine, compute_dtype):
        self.name = f"nnlab[{engine},{compute_dtype}]"
        self.train, self.test, self.seed = train, test, seed
        self.model = nnlab.get_model("flax-cnn")
        self.config = nnlab.configs.get_config("flax-cnn").train.replace(engine=engine, compute_dtype=compute_dtype)

    def run(self, epochs: int) -> tuple[list[float], list[float]]:
        accuracies = []

        def test(epoch, state, record):
            accuracies.append(
                nnlab.evaluate(self.model, state.variables, self.test.x, self.test.y, num_classes=10).accuracy
            )

        r = nnlab.fit(
            self.model,
            self.train,
            key=self.seed,
            config=self.config.replace(epochs=epochs),
            callbacks=[test],
            progress=False,
        )
        self.name = f"nnlab[{r.engine},{self.config.compute_dtype}]" if self.config.engine == "auto" else self.name
        return r.epoch_seconds, accuracies


class TorchEager(_EpochByEpoch):
    """The same CNN and SGD in PyTorch eager, data as in-memory tensors."""

    name = "pytorch-eager"

    def setup(self, train, test, seed):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        tnn = torch.nn
        self.model = tnn.Sequential(
            tnn.Conv2d(1, 32, 3, padding=1),
            tnn.ReLU(),
            tnn.AvgPool2d(2),
            tnn.Conv2d(32, 64, 3, padding=1),
            tnn.ReLU(),
            tnn.AvgPool2d(2),
            tnn.Flatten(),
            tnn.Linear(3136, 256),
            tnn.ReLU(),
            tnn.Linear(256, 10),
        )
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x = torch.from_numpy(np.ascontiguousarray(train.x.transpose(0, 3, 1, 2)))
        self.y = torch.from_numpy(train.y.astype(np.int64))
        self.test_x = torch.from_numpy(np.ascontiguousarray(test.x.transpose(0, 3, 1, 2)))
        self.test_y = test.y

    def epoch(self) -> float:
        torch = self.torch
        t0 = time.perf_counter()
        steps = len(self.y) // BATCH
        perm = torch.randperm(len(self.y))[: steps * BATCH].view(steps, BATCH)
        losses = []
        for idx in perm:
            self.opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
            loss.backward()
            self.opt.step()
            losses.append(loss.detach())
        torch.stack(losses).mean().item()
        return time.perf_counter() - t0

    def test_accuracy(self) -> float:
        with self.torch.no_grad():
            pred = np.concatenate(
                [self.model(self.test_x[i : i + 1000]).argmax(-1).numpy() for i in range(0, len(self.test_y), 1000)]
            )
        return float(np.mean(pred == self.test_y))


def summary(times: list[float], accuracies: list[float], n: int, target: float) -> dict:
    """Compile time, steady epoch time (median after the first), images/s, seconds to `target`."""
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    compile_s = max(times[0] - steady, 0.0)
    reached = next((i for i, a in enumerate(accuracies) if a >= target), None)
    return {
        "epoch_seconds": times,
        "test_accuracy": accuracies,
        "compile_seconds": compile_s,
        "seconds_per_epoch": steady,
        "images_per_second": n / steady,
        "epochs_to_target": None if reached is None else reached + 1,
        "seconds_to_target": None if reached is None else sum(times[: reached + 1]) - compile_s,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=60_000, help="training images (the first N of MNIST)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--target", type=float, default=0.99, help="test accuracy for the time-to-target figure")
    p.add_argument("--engines", default="auto", help="nnlab engines to run, comma-separated")
    p.add_argument("--bf16", action="store_true", help="also run nnlab with compute_dtype='bfloat16'")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even where it is installed")
    p.add_argument("--rounds", type=int, default=1, help="run every contender this many times, order rotated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (default: keep freed memory, as the nnlab command does)",
    )
    args = p.parse_args(argv)
    kept = not args.system_malloc and nnlab.train.keep_freed_memory()  # before any JAX computation

    train, test = nnlab.mnist()
    train = train.take(args.n_train)
    contenders = [FlaxExample(train, test, args.seed)]
    contenders += [NnlabFit(train, test, args.seed, e, "float32") for e in args.engines.split(",")]
    if args.bf16:
        contenders.append(NnlabFit(train, test, args.seed, "auto", "bfloat16"))
    versions = {}
    if not args.no_torch:
        try:
            import torch

            contenders.append(TorchEager(train, test, args.seed))
            versions = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
        except ImportError:
            print("PyTorch is not installed: left out", file=sys.stderr)
    rounds: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order if r % 2 == 0 else order[::-1]:
            times, accuracies = c.run(args.epochs)
            rounds.setdefault(c.name, []).append(summary(times, accuracies, train.n, args.target))
            print(
                f"round {r} {c.name:24s} epochs {' '.join(f'{t:.3f}' for t in times)} s, test accuracy "
                f"{' '.join(f'{a:.4f}' for a in accuracies)}",
                flush=True,
            )
    results = {
        name: {
            **runs[-1],
            **{
                k: statistics.median(run[k] for run in runs)
                for k in ("seconds_per_epoch", "images_per_second", "compile_seconds")
            },
            "rounds": runs,
        }
        for name, runs in rounds.items()
    }
    base = results["flax-example"]["seconds_per_epoch"]
    torch_s = results.get("pytorch-eager", {}).get("seconds_per_epoch")
    rows = []
    for name, r in results.items():
        r["ratio_to_flax_example"] = r["seconds_per_epoch"] / base
        r["ratio_to_pytorch"] = None if torch_s is None else r["seconds_per_epoch"] / torch_s
        rows.append(
            {
                "contender": name,
                **{
                    k: r[k]
                    for k in (
                        "seconds_per_epoch",
                        "images_per_second",
                        "compile_seconds",
                        "ratio_to_flax_example",
                        "ratio_to_pytorch",
                        "seconds_to_target",
                    )
                },
                "final_accuracy": r["test_accuracy"][-1],
            }
        )
    print(nnlab.report.format_table(rows, list(rows[0])))
    out = {
        "benchmark": "flax-cnn",
        "batch_size": BATCH,
        "n_train": train.n,
        "epochs": args.epochs,
        "target": args.target,
        "rounds": args.rounds,
        "results": results,
        **nnlab.report.environment(),
        "flax_version": flax.__version__,
        **versions,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "keep_freed_memory": kept,
        "command": "python " + shlex.join(sys.argv),
    }
    if args.json:
        nnlab.report.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
