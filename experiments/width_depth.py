"""Width vs depth, and what a layer costs.

"One hidden layer can approximate any sensible function, but more layers need fewer neurons":
MLPs with (nearly) equal parameter budgets, one wide hidden layer against several narrow
ones, (1) on the 2-D two-spirals problem (about 1,000 parameters) and (2) on MNIST (about
90,000, the lecture's 784-100-100-10), S seeds each as one `fit_many` program. (3) Where the
parameters of a CNN sit: the same convolutional body on Fashion-MNIST with a fully connected
head, with global average pooling instead, and with a 1x1 bottleneck before its last 3x3
convolution; parameters and multiply-accumulates from `nnlab.nn.summary` beside the error.

    python experiments/width_depth.py --json experiments/results/width_depth.json \
        --png experiments/results/width_depth.png              # --size small: a quick look
"""

import time

import flax.linen as nn
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import compilation_cache, finish, metadata, parser, pm, settings, subset  # noqa: E402

import nnlab  # noqa: E402
from nnlab.nn import GlobalAvgPool, MaxPool, conv, conv1x1  # noqa: E402

SMALL = {"spiral_epochs": 30, "mnist_train": 3000, "mnist_epochs": 1, "cnn_train": 1000, "cnn_epochs": 1}
FULL = {"spiral_epochs": 400, "mnist_train": None, "mnist_epochs": 10, "cnn_train": 6000, "cnn_epochs": 4}
# hidden widths with (nearly) equal parameter counts
SPIRAL_NETS = {"1 x 200": [200], "2 x 30": [30, 30], "4 x 17": [17, 17, 17, 17]}
MNIST_NETS = {"1 x 113": [113], "2 x 100": [100, 100], "4 x 85": [85, 85, 85, 85]}


def mlp_study(nets: dict, train, val, test, in_shape, config, seeds) -> list[dict]:
    rows = []
    for name, hidden in nets.items():
        sizes = [int(np.prod(in_shape)), *hidden, train.num_classes]
        model = nnlab.nn.mlp(sizes, activation="relu", input_shape=in_shape)
        if len(in_shape) > 1:
            model = nnlab.nn.with_normalization(model, nnlab.data.fit_normalization(train.x))
        result = nnlab.fit_many(model, train, keys=seeds, config=config, val=val, progress=False)
        out = nnlab.predict(model, result.variables, test.x, members=True)
        errors = np.mean(np.argmax(out, -1) != test.y[None], axis=1)
        rows.append(
            {
                "net": name,
                "hidden": hidden,
                "params": nnlab.nn.summary(model, show=False).params,
                "test_errors": errors.tolist(),
                "test_error_%": pm(errors, 100),
                "train_loss_last": pm([h[-1]["train_loss"] for h in result.histories], digits=4),
                "train_seconds": result.train_seconds,
            }
        )
    return rows


class SmallCNN(nn.Module):
    """conv3x3 16 | pool 2 | conv3x3 32 | pool 2 | [1x1 16 ->] conv3x3 64 | flatten or GAP | dense 10."""

    head: str
    bottleneck: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        del train
        h = MaxPool(2)(nn.relu(conv(16, 3, name="conv1")(x)))
        h = MaxPool(2)(nn.relu(conv(32, 3, name="conv2")(h)))
        if self.bottleneck:
            h = nn.relu(conv1x1(16, name="reduce")(h))
        h = nn.relu(conv(64, 3, name="conv3")(h))
        h = GlobalAvgPool()(h) if self.head == "gap" else h.reshape(h.shape[0], -1)
        return nn.Dense(10, name="logits")(h)


CNNS = {
    "fully connected head": SmallCNN("fc"),
    "global average pooling": SmallCNN("gap"),
    "GAP + 1x1 bottleneck": SmallCNN("gap", bottleneck=True),
}


def cnn_study(train, test, cfg, seeds) -> list[dict]:
    config = nnlab.TrainConfig(epochs=cfg["cnn_epochs"], batch_size=100, learning_rate=2e-3, engine="step")
    rows = []
    for name, module in CNNS.items():
        model = nnlab.from_linen(module, input_shape=(28, 28, 1))
        cost = nnlab.nn.summary(model, show=False)
        result = nnlab.fit_many(model, train, keys=seeds, config=config, max_members=1, progress=False)
        out = nnlab.predict(model, result.variables, test.x, members=True)
        errors = np.mean(np.argmax(out, -1) != test.y[None], axis=1)
        head = [c for c in cost.layers if c.name == "logits"][0]
        rows.append(
            {
                "net": name,
                "params": cost.params,
                "head_params": head.params,
                "MACs": cost.macs,
                "test_errors": errors.tolist(),
                "test_error_%": pm(errors, 100),
                "train_seconds": result.train_seconds,
                "layers": [c._asdict() for c in cost.layers],
            }
        )
    return rows


def plot(spiral_rows, mnist_rows, cnn_rows, path: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, rows, title in ((axes[0], spiral_rows, "two spirals"), (axes[1], mnist_rows, "MNIST")):
        for i, r in enumerate(rows):
            e = 100 * np.array(r["test_errors"])
            ax.errorbar([i], [e.mean()], yerr=[[e.mean() - e.min()], [e.max() - e.mean()]], fmt="o", capsize=4)
            ax.plot(np.full(len(e), i), e, "k.", ms=4)
        ax.set(
            xticks=range(len(rows)),
            xticklabels=[f"{r['net']}\n{r['params']:,} params" for r in rows],
            ylabel="test error (%)",
            title=f"{title}: equal parameter budgets (mean, min..max, seeds)",
        )
    ax = axes[2]
    for r in cnn_rows:
        e = 100 * np.array(r["test_errors"])
        ax.errorbar(
            [r["params"]],
            [e.mean()],
            yerr=[[e.mean() - e.min()], [e.max() - e.mean()]],
            fmt="o",
            capsize=4,
            label=f"{r['net']}: {r['MACs'] / 1e6:.2f} M MACs",
        )
    ax.set(xscale="log", xlabel="parameters", ylabel="test error (%)", title="Fashion-MNIST CNN heads")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parser(__doc__).parse_args()
    cfg = settings(args, SMALL, FULL)
    started = time.perf_counter()
    compilation_cache()
    seeds = list(range(cfg["seeds"]))
    key = nnlab.train.as_key(0)
    sp_train, sp_val, sp_test = (
        nnlab.data.spirals(n, key=nnlab.train.stream(key, s))
        for n, s in ((1000, "split"), (500, "init"), (2000, "data"))
    )
    spiral_cfg = nnlab.TrainConfig(epochs=cfg["spiral_epochs"], batch_size=100, learning_rate=1e-2, schedule="cosine")
    spiral_rows = mlp_study(SPIRAL_NETS, sp_train, sp_val, sp_test, (2,), spiral_cfg, seeds)
    print(nnlab.report.format_table(spiral_rows, ["net", "params", "train_loss_last", "test_error_%"]))
    train, test = nnlab.mnist(args.data_dir)
    splits = nnlab.data.train_val_test(
        subset(train, cfg["mnist_train"]),
        test,
        n_val=min(10000, (cfg["mnist_train"] or 60000) // 6),
        key=nnlab.train.stream(key, "split"),
    )
    mnist_cfg = nnlab.TrainConfig(epochs=cfg["mnist_epochs"], batch_size=128, learning_rate=1e-3, schedule="cosine")
    mnist_rows = mlp_study(MNIST_NETS, splits.train, splits.val, splits.test, (28, 28, 1), mnist_cfg, seeds)
    print(nnlab.report.format_table(mnist_rows, ["net", "params", "train_loss_last", "test_error_%"]))
    ftrain, ftest = nnlab.fashion_mnist(args.data_dir)
    cnn_rows = cnn_study(subset(ftrain, cfg["cnn_train"]), ftest, cfg, seeds)
    print(nnlab.report.format_table(cnn_rows, ["net", "params", "head_params", "MACs", "test_error_%"]))
    results = {"spirals": spiral_rows, "mnist": mnist_rows, "cnn": cnn_rows, **metadata(args, started, cfg)}
    finish(results, args, lambda path: plot(spiral_rows, mnist_rows, cnn_rows, path))


if __name__ == "__main__":
    main()
