"""Batch normalization: "faster learning, also through larger SGD steps".

The same deep MLP (6 hidden layers of 100 ReLU units, He initialisation, per-feature input
normalization) with and without batch normalization after every hidden layer, trained with
plain mini-batch SGD at learning rates spanning three decades, S seeds each, on Fashion-MNIST.
All learning rates and seeds of one network are members of one `fit_many` program (the
learning rate is a per-member hyperparameter). Reported per learning rate: the epoch at which
the validation error first reaches the target, the best validation error, the test error, and
how many seeds diverged; and the largest learning rate at which every seed still trains.

    python experiments/batchnorm.py --json experiments/results/batchnorm.json \
        --png experiments/results/batchnorm.png                # --size small: a quick look
"""

import time

import flax.linen as nn
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import finish, metadata, parser, pm, settings, split  # noqa: E402

import nnlab  # noqa: E402
from nnlab.nn import BatchNorm  # noqa: E402

SMALL = {"learning_rates": [0.1, 3.0], "n_train": 2000, "n_val": 1000, "epochs": 2, "target": 0.4}
FULL = {
    "learning_rates": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
    "n_train": 20000,
    "n_val": 5000,
    "epochs": 10,
    "target": 0.16,
}
TRAINS = 0.5  # a member "trains" when it does not diverge and its best validation error is below this


class DeepMLP(nn.Module):
    """x: [b, 28, 28, 1] -> [b, 10]: `depth` x (dense `width`, [batch norm], ReLU), dense 10."""

    batch_norm: bool
    depth: int = 6
    width: int = 100

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = x.reshape(x.shape[0], -1)
        for i in range(self.depth):
            h = nn.Dense(
                self.width, use_bias=not self.batch_norm, kernel_init=nn.initializers.he_normal(), name=f"dense{i + 1}"
            )(h)
            if self.batch_norm:
                h = BatchNorm(name=f"bn{i + 1}")(h, train=train)
            h = nn.relu(h)
        return nn.Dense(10, name="logits")(h)


def train_net(batch_norm: bool, splits, cfg: dict, seeds: list[int]) -> dict:
    norm = nnlab.data.fit_normalization(splits.train.x)
    model = nnlab.nn.with_normalization(nnlab.from_linen(DeepMLP(batch_norm), input_shape=(28, 28, 1)), norm)
    lrs = [lr for lr in cfg["learning_rates"] for _ in seeds]
    config = nnlab.TrainConfig(epochs=cfg["epochs"], batch_size=128, optimizer="sgd")
    result = nnlab.fit_many(
        model,
        splits.train,
        keys=[s for _ in cfg["learning_rates"] for s in seeds],
        config=config,
        val=splits.val,
        hparams={"learning_rate": lrs},
        progress=False,
    )
    outputs = nnlab.predict(model, result.variables, splits.test.x, members=True)  # [S, n, 10]
    test_errors = np.mean(np.argmax(outputs, -1) != splits.test.y[None, :], axis=1)
    members = []
    for i, lr in enumerate(lrs):
        curve = [h["val_error"] for h in result.histories[i]]
        reached = next((h["epoch"] for h in result.histories[i] if h["val_error"] <= cfg["target"]), None)
        best = min((e for e in curve if np.isfinite(e)), default=float("nan"))
        members.append(
            {
                "learning_rate": lr,
                "seed": i % len(seeds),
                "val_error_curve": curve,
                "epochs_to_target": reached,
                "best_val_error": best,
                "test_error": float(test_errors[i]),
                "diverged": result.diverged[i],
                "trains": result.diverged[i] == 0 and best < TRAINS,
            }
        )
    return {"batch_norm": batch_norm, "train_seconds": result.train_seconds, "members": members}


def rows_of(runs: list[dict], cfg: dict) -> list[dict]:
    rows = []
    for lr in cfg["learning_rates"]:
        row = {"learning_rate": lr}
        for r in runs:
            tag = "BN" if r["batch_norm"] else "no BN"
            m = [x for x in r["members"] if x["learning_rate"] == lr]
            reached = [x["epochs_to_target"] for x in m if x["epochs_to_target"] is not None]
            row[f"{tag}: epochs to target"] = (
                f"{np.mean(reached):.1f} ({len(reached)}/{len(m)})" if reached else f"- (0/{len(m)})"
            )
            row[f"{tag}: best val %"] = pm([x["best_val_error"] for x in m], 100)
            row[f"{tag}: test %"] = pm([x["test_error"] for x in m], 100)
            row[f"{tag}: diverged"] = sum(x["diverged"] > 0 for x in m)
        rows.append(row)
    return rows


def largest_training_lr(run: dict) -> float | None:
    ok = [
        lr
        for lr in sorted({x["learning_rate"] for x in run["members"]})
        if all(x["trains"] for x in run["members"] if x["learning_rate"] == lr)
    ]
    return max(ok) if ok else None


def plot(runs: list[dict], cfg: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for r, marker in zip(runs, ("s--", "o-"), strict=False):
        tag = "with BN" if r["batch_norm"] else "without BN"
        best = [[x["best_val_error"] for x in r["members"] if x["learning_rate"] == lr] for lr in cfg["learning_rates"]]
        axes[0].errorbar(
            cfg["learning_rates"],
            [100 * np.mean(b) for b in best],
            yerr=[100 * np.std(b, ddof=1) for b in best],
            fmt=marker,
            capsize=3,
            label=tag,
        )
        lr = largest_training_lr(r)
        if lr is not None:
            curves = np.array([x["val_error_curve"] for x in r["members"] if x["learning_rate"] == lr])
            axes[1].plot(np.arange(1, curves.shape[1] + 1), 100 * curves.mean(0), marker, label=f"{tag}, lr={lr:g}")
        lr_same = 0.1
        curves = np.array([x["val_error_curve"] for x in r["members"] if x["learning_rate"] == lr_same])
        if curves.size and np.all(np.isfinite(curves)):
            axes[1].plot(
                np.arange(1, curves.shape[1] + 1),
                100 * curves.mean(0),
                marker,
                alpha=0.4,
                label=f"{tag}, lr={lr_same:g}",
            )
    axes[0].axhline(100 * cfg["target"], color="gray", lw=0.8, ls=":", label="target")
    axes[0].set(
        xscale="log",
        xlabel="SGD learning rate",
        ylabel="best validation error (%)",
        ylim=(0, 100),
        title="best validation error (mean ± std over seeds)",
    )
    axes[0].legend()
    axes[1].axhline(100 * cfg["target"], color="gray", lw=0.8, ls=":")
    axes[1].set(
        xlabel="epoch",
        ylabel="validation error (%)",
        ylim=(0, 40),
        title="validation curves: largest training lr, and lr 0.1",
    )
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parser(__doc__).parse_args()
    cfg = settings(args, SMALL, FULL)
    started = time.perf_counter()
    train, test = nnlab.fashion_mnist(args.data_dir)
    splits = split(train, test, cfg)
    seeds = list(range(cfg["seeds"]))
    runs = [train_net(bn, splits, cfg, seeds) for bn in (False, True)]
    rows = rows_of(runs, cfg)
    print(nnlab.report.format_table(rows))
    largest = {("BN" if r["batch_norm"] else "no BN"): largest_training_lr(r) for r in runs}
    print(f"largest learning rate at which every seed trains (best validation error < {TRAINS:.0%}): {largest}")
    results = {"rows": rows, "largest_training_lr": largest, "runs": runs, **metadata(args, started, cfg)}
    finish(results, args, lambda path: plot(runs, cfg, path))


if __name__ == "__main__":
    main()
