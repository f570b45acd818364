r"""Bring your own NNX model: the Flax MNIST example's CNN, written in Flax NNX, trained through
nnlab with S seeds as one vmapped program (each seed its own initialization, data order and
optimizer state), then each seed's test error, their ensemble, and seed 0 back as the NNX module.

Training follows Flax's MNIST example (and nnlab's `flax-cnn` config): SGD with heavy-ball
momentum 0.9 at learning rate 0.1, batch 128, 10 epochs, pixels in [0, 1]. Prints a table,
writes --json and a PNG. The full setting:

    NNLAB_DATA_DIR=../shared/data python experiments/nnx_seeds.py --seeds 8 \
        --json experiments/results/nnx_seeds.json --png experiments/results/nnx_seeds.png

A quick look: --epochs 1 --train-subset 2000 --seeds 2.
"""

import argparse
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import nnlab  # noqa: E402


class CNN(nnx.Module):
    """The CNN of Flax's MNIST example in NNX (as in Flax's NNX MNIST tutorial):
    x: [batch, 28, 28, 1] -> conv3x3 32, relu, avgpool 2 -> conv3x3 64, relu, avgpool 2
    -> dense 256, relu -> dense 10: logits [batch, 10]."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
        return self.linear2(x)


def make_cnn(rngs: nnx.Rngs) -> CNN:
    return CNN(rngs=rngs)


def plot(results: dict, path: str) -> None:
    S = len(results["seeds"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    ax.bar(range(S), [100 * e for e in results["seed_test_error"]], color="tab:blue", label="single seed")
    ax.axhline(100 * results["test_error_mean"], color="gray", ls="--", label="mean of the seeds")
    ax.axhline(100 * results["ensemble_test_error"], color="tab:red", label=f"ensemble of {S}")
    ax.set(xlabel="seed", ylabel="test error (%)", xticks=range(S), title="NNX CNN through nnlab: test error per seed")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    for s, losses in zip(results["seeds"], results["train_loss"], strict=False):
        ax.plot(range(1, len(losses) + 1), losses, marker="o", ms=3, label=f"seed {s}")
    ax.set(xlabel="epoch", ylabel="training loss (running mean)", yscale="log", title="training loss per seed")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="number of seeds S (0 .. S-1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-subset", type=int, help="train on the first N training digits only (a quick look)")
    p.add_argument("--data-dir")
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()

    train, test = nnlab.mnist(args.data_dir)
    if args.train_subset:
        train = nnlab.data.make_dataset(
            train.x[: args.train_subset],
            train.y[: args.train_subset],
            num_classes=10,
            name=f"mnist[:{args.train_subset}]",
        )
    model = nnlab.nn.from_nnx(make_cnn, input_shape=(28, 28, 1), name="flax-cnn-nnx")
    config = nnlab.TrainConfig(
        epochs=args.epochs, batch_size=128, optimizer="heavy_ball", learning_rate=0.1, momentum=0.9
    )
    seeds = list(range(args.seeds))
    result = nnlab.fit_many(model, train, keys=seeds, config=config)
    outputs = nnlab.predict(model, result.variables, test.x, members=True)  # [S, n, 10]
    ensemble = nnlab.predict_labels(nnlab.study.ensemble_outputs(outputs))
    study = nnlab.study.seed_study(nnlab.predict_labels(outputs), test.y, ensemble_predictions=ensemble)

    own = nnlab.nn.to_nnx(make_cnn, nnlab.train.member(result.variables, 0))  # seed 0 as the user's module
    own.eval()
    own_errors = int(
        sum(
            np.sum(nnlab.predict_labels(own(test.x[i : i + 1000])) != test.y[i : i + 1000])
            for i in range(0, test.n, 1000)
        )
    )

    results = {
        "model": model.name,
        "params": nnlab.report.count_params(nnlab.train.member(result.variables["params"], 0)),
        "n_train": train.n,
        "seeds": seeds,
        **study,
        "train_loss": [[h["train_loss"] for h in hist] for hist in result.histories],
        "seed0_as_nnx_module_test_errors": own_errors,
        "config": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "optimizer": config.optimizer,
            "learning_rate": config.learning_rate,
            "momentum": config.momentum,
        },
        **nnlab.report.environment(),
    }
    rows = [
        {"seed": s, "test_error_%": 100 * e, "test_errors": n, "final_train_loss": loss[-1]}
        for s, e, n, loss in zip(
            seeds, study["seed_test_error"], study["seed_errors"], results["train_loss"], strict=False
        )
    ]
    print(nnlab.report.format_table(rows))
    print(
        f"{model.name} ({results['params']:,} parameters), {len(seeds)} seeds on {train.n} digits, "
        f"{config.epochs} epochs: test error mean {100 * study['test_error_mean']:.2f}% "
        f"(std {100 * study['test_error_std']:.2f}); ensemble {100 * study['ensemble_test_error']:.2f}%; "
        f"seed 0 back as the NNX module: {own_errors} test errors (nnlab: {study['seed_errors'][0]})"
    )
    if args.json:
        nnlab.report.write_json(args.json, results)
    if args.png:
        plot(results, args.png)


if __name__ == "__main__":
    main()
