"""Saturation: sigmoid, tanh, ReLU and PReLU in a deep MLP.

The lecture: the sigmoid's derivative is at most 1/4, so back-propagation through many
sigmoid layers multiplies the gradient by small factors and the first layers barely learn;
ReLU passes the gradient unchanged where it is active. A 784-(100 x 10)-10 MLP on
Fashion-MNIST with each activation (Glorot initialisation for sigmoid and tanh, He for ReLU
and PReLU, per-feature input normalization), trained with plain SGD, S seeds each as one
`fit_many` program. Reported: the norm of dE/dW per layer at initialisation, after the first
epoch and at the end (on a fixed batch of 1,000 training images; parameters captured by a
callback), and the validation and test error reached.

    python experiments/activations.py --json experiments/results/activations.json \
        --png experiments/results/activations.png              # --size small: a quick look
"""

import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import finish, metadata, parser, pm, settings, split  # noqa: E402

import nnlab  # noqa: E402

SMALL = {"depth": 6, "n_train": 3000, "n_val": 1000, "epochs": 2}
FULL = {"depth": 10, "n_train": 20000, "n_val": 5000, "epochs": 10}
ACTIVATIONS = ("sigmoid", "tanh", "relu", "prelu")
LEARNING_RATE = 0.1


def layer_grad_norms(model, variables, x, y) -> list[float]:
    """||dE/dW_l|| (Frobenius) for every layer l of the functional MLP, E the mean cross-entropy on (x, y)."""

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, train=False)
        return nnlab.losses.softmax_cross_entropy(out, y)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    return [float(jnp.linalg.norm(g["W"])) for g in grads]


class Snapshots:
    """A callback keeping host copies of every member's parameters at the chosen epochs."""

    def __init__(self, epochs):
        self.epochs, self.params = set(epochs), {}

    def __call__(self, epoch, state, records):
        if epoch in self.epochs:
            self.params[epoch] = jax.tree.map(np.asarray, state.params)
        return False


def study(activation: str, splits, cfg: dict, seeds: list[int]) -> dict:
    sizes = [784, *[100] * cfg["depth"], 10]
    norm = nnlab.data.fit_normalization(splits.train.x)
    model = nnlab.nn.with_normalization(nnlab.nn.mlp(sizes, activation=activation, input_shape=(28, 28, 1)), norm)
    config = nnlab.TrainConfig(epochs=cfg["epochs"], batch_size=128, optimizer="sgd", learning_rate=LEARNING_RATE)
    snaps = Snapshots([1, cfg["epochs"]])
    result = nnlab.fit_many(
        model, splits.train, keys=seeds, config=config, val=splits.val, callbacks=[snaps], progress=False
    )
    x, y = splits.train.x[:1000], splits.train.y[:1000]
    norms = {"init": [], "epoch 1": [], "last epoch": []}
    for i, seed in enumerate(seeds):
        init = model.init(nnlab.train.stream(jax.random.key(seed), "init"), x[:1])
        norms["init"].append(layer_grad_norms(model, init, x, y))
        for name, epoch in (("epoch 1", 1), ("last epoch", cfg["epochs"])):
            params = nnlab.train.member(snaps.params[epoch], i)
            norms[name].append(layer_grad_norms(model, {**init, "params": params}, x, y))
    out = nnlab.predict(model, result.variables, splits.test.x, members=True)
    best_val = [h[b - 1]["val_error"] for h, b in zip(result.histories, result.best_epochs, strict=False)]
    return {
        "activation": activation,
        "grad_norms": norms,
        "best_val_error": best_val,
        "test_error": np.mean(np.argmax(out, -1) != splits.test.y[None], axis=1).tolist(),
        "val_error_curve": [[h["val_error"] for h in hs] for hs in result.histories],
        "train_seconds": result.train_seconds,
    }


def rows_of(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        init = np.array(r["grad_norms"]["init"])
        last = np.array(r["grad_norms"]["last epoch"])
        rows.append(
            {
                "activation": r["activation"],
                "grad_layer1_init": f"{init[:, 0].mean():.2e}",
                "grad_last_init": f"{init[:, -1].mean():.2e}",
                "ratio_first/last_init": f"{np.mean(init[:, 0] / init[:, -1]):.2e}",
                "ratio_first/last_end": f"{np.mean(last[:, 0] / last[:, -1]):.2e}",
                "val_error_%": pm(r["best_val_error"], 100),
                "test_error_%": pm(r["test_error"], 100),
            }
        )
    return rows


def plot(runs: list[dict], path: str) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for ax, stage in zip(axes[:3], ("init", "epoch 1", "last epoch"), strict=False):
        for r in runs:
            g = np.array(r["grad_norms"][stage])
            layers = np.arange(1, g.shape[1] + 1)
            ax.plot(layers, g.mean(0), "o-", ms=3, label=r["activation"])
            ax.fill_between(layers, g.min(0), g.max(0), alpha=0.2)
        ax.set(
            yscale="log", xlabel="layer (1 = input side)", ylabel="||dE/dW||", title=f"gradient norm per layer: {stage}"
        )
        ax.legend(fontsize=7)
    ax = axes[3]
    for r in runs:
        c = np.array(r["val_error_curve"])
        ax.plot(np.arange(1, c.shape[1] + 1), 100 * c.mean(0), "o-", ms=3, label=r["activation"])
    ax.set(xlabel="epoch", ylabel="validation error (%)", ylim=(0, 100), title="validation error (mean over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parser(__doc__).parse_args()
    cfg = settings(args, SMALL, FULL)
    started = time.perf_counter()
    train, test = nnlab.fashion_mnist(args.data_dir)
    splits = split(train, test, cfg)
    runs = [study(a, splits, cfg, list(range(cfg["seeds"]))) for a in ACTIVATIONS]
    print(nnlab.report.format_table(rows_of(runs)))
    results = {"rows": rows_of(runs), "runs": runs, "learning_rate": LEARNING_RATE, **metadata(args, started, cfg)}
    finish(results, args, lambda path: plot(runs, path))


if __name__ == "__main__":
    main()
