"""Transfer learning, the lecture's way: take a pretrained network, swap the output layer and
train with little effort, essentially only the output layer.

A small CNN is pretrained on MNIST digits 0-4 and saved as a checkpoint. For digits 5-9 with
10, 100 and 1,000 labelled samples per class it is then trained three ways, each for about
the same number of steps: from scratch (fresh weights), head-only (pretrained body frozen
with an Optax mask via `nnlab.optim.freeze`, new output layer trained) and full fine-tuning
(pretrained body and new head, all trained). Test accuracy on all test digits 5-9.

    python experiments/transfer.py --json experiments/results/transfer.json --png experiments/results/transfer.png
"""

import argparse
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import nnlab

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ("from scratch", "head only", "full fine-tuning")


class SmallCNN(nn.Module):
    """conv 3x3x16 - pool - conv 3x3x32 - pool (the body) - dense classes (the head).

    x: [batch, 28, 28, 1] -> [batch, classes]
    """

    classes: int = 5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train
        for i, channels in enumerate((16, 32)):
            x = nn.max_pool(nn.relu(nn.Conv(channels, (3, 3), name=f"conv{i}")(x)), (2, 2), (2, 2))
        return nn.Dense(self.classes, name="head")(x.reshape(x.shape[0], -1))


def cnn() -> nnlab.Model:
    return nnlab.nn.with_normalization(
        nnlab.from_linen(SmallCNN(), input_shape=(28, 28, 1), name="small-cnn"),
        nnlab.data.fixed_normalization(0.1307, 0.3081),
    )


def digits(data: nnlab.Dataset, first: int) -> nnlab.Dataset:
    """The samples of digits first..first+4, relabelled 0-4."""
    keep = (data.y >= first) & (data.y < first + 5)
    return nnlab.data.make_dataset(
        data.x[keep], data.y[keep] - first, num_classes=5, name=f"digits {first}-{first + 4}"
    )


def per_class(data: nnlab.Dataset, n: int, *, seed: int) -> nnlab.Dataset:
    """`n` random samples of each class."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(data.y == c))[:n] for c in range(data.num_classes)])
    return data.subset(rng.permutation(idx))


def pretrain(train: nnlab.Dataset, folder: str, epochs: int) -> dict:
    """Trains the CNN on `train`, saves it, and returns its parameters as read back from the checkpoint."""
    ckpt = nnlab.Checkpointer(folder)
    nnlab.fit(cnn(), train, key=jax.random.key(0), config=nnlab.TrainConfig(epochs=epochs), checkpointer=ckpt)
    return nnlab.checkpoint.read_checkpoint(ckpt.latest()).state["params"]  # plain nested dicts of NumPy arrays


def fine_tune(mode: str, pretrained: dict, train: nnlab.Dataset, *, steps: int, seed: int, lr: float):
    """Trains for about `steps` steps as `mode` says; returns the FitResult."""
    model = cnn()
    batch = min(64, train.n)
    config = nnlab.TrainConfig(epochs=-(-steps // (train.n // batch)), batch_size=batch, learning_rate=lr)
    trainable = {name: mode != "head only" or name == "head" for name in ("conv0", "conv1", "head")}
    tx = nnlab.optim.freeze(
        nnlab.optim.adam(config.learning_rate), {name: {"kernel": t, "bias": t} for name, t in trainable.items()}
    )
    state = nnlab.train.init_state(model, tx, jnp.asarray(train.x[:1]), key=jax.random.key(seed))
    if mode != "from scratch":  # the pretrained body, the freshly initialized head
        params = {**jax.tree.map(jnp.asarray, pretrained), "head": state.params["head"]}
        state = state.replace(params=params, opt_state=tx.init(params))
    return nnlab.fit(model, train, key=jax.random.key(seed), config=config, state=state, tx=tx, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="labelled samples per class")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300, help="training steps per fine-tuning run")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate of every fine-tuning run")
    p.add_argument("--pretrain-epochs", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()

    train, test = nnlab.mnist(args.data_dir)
    source, target, target_test = digits(train, 0), digits(train, 5), digits(test, 5)
    with tempfile.TemporaryDirectory() as folder:
        pretrained = pretrain(source, folder, args.pretrain_epochs)
    rows = []
    for n in args.sizes:
        for mode in MODES:
            acc = []
            for seed in range(args.seeds):
                result = fine_tune(
                    mode, pretrained, per_class(target, n, seed=seed), steps=args.steps, seed=seed, lr=args.lr
                )
                ev = nnlab.evaluate(cnn(), result.variables, target_test.x, target_test.y, num_classes=5)
                acc.append(100 * (1 - ev.error_rate))
            rows.append(
                {
                    "per_class": n,
                    "mode": mode,
                    "test_acc_%": float(np.mean(acc)),
                    "std_%": float(np.std(acc)),
                    "seeds": args.seeds,
                    "train_s": round(result.train_seconds, 1),
                    "acc_per_seed": acc,
                }
            )
            print(
                nnlab.report.format_table(rows[-1:], ["per_class", "mode", "test_acc_%", "std_%", "train_s"]),
                flush=True,
            )
    print(nnlab.report.format_table(rows, ["per_class", "mode", "test_acc_%", "std_%", "seeds"]))
    if args.json:
        nnlab.report.write_json(
            args.json, {"rows": rows, "args": vars(args), "n_test": target_test.n, **nnlab.report.environment()}
        )
    if args.png:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for mode in MODES:
            sel = [r for r in rows if r["mode"] == mode]
            ax.errorbar(
                [r["per_class"] for r in sel],
                [r["test_acc_%"] for r in sel],
                [r["std_%"] for r in sel],
                marker="o",
                capsize=3,
                label=mode,
            )
        ax.set(
            xscale="log",
            xlabel="labelled samples per class (digits 5-9)",
            ylabel="test accuracy (%)",
            title="CNN pretrained on digits 0-4",
        )
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
