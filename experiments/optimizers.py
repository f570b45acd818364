"""Normalization and optimizers: the lecture's trough-shaped vs round minimum.

Part 1, an ill-conditioned quadratic E(theta) = (a theta_1^2 + b theta_2^2) / 2 (a trough,
b / a = 25) and a round one (a = b): gradient descent, momentum in the lecture's low-pass form
(m <- beta m + (1 - beta) g), heavy ball (m <- beta m + g) and Adam (nnlab.optim's recipes),
each at the learning rate from a grid that reaches E < 1e-6 in the fewest steps, from S random
starting points on the unit circle (the "seeds"): steps to the tolerance, and trajectories on
the contours. Part 2, the same four optimizers training the MNIST MLP 784-100-100-10 on raw
pixels (all in [0, 1], never centred: the trough) and on per-feature normalized inputs, S seeds
each as one `fit_many` program: training loss and validation error per epoch, test error.

    python experiments/optimizers.py --json experiments/results/optimizers.json \
        --png experiments/results/optimizers.png               # --size small: a quick look
"""

import time

import jax
import jax.numpy as jnp
import matplotlib
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import finish, metadata, parser, pm, settings, split  # noqa: E402

import nnlab  # noqa: E402

SMALL = {"steps": 200, "n_train": 3000, "n_val": 1000, "epochs": 2}
FULL = {"steps": 500, "n_train": 20000, "n_val": 5000, "epochs": 8}
SURFACES = {"trough": (1.0, 25.0), "round": (1.0, 1.0)}
BETA = 0.9
# optimizer -> (nnlab.optim recipe for a learning rate, learning-rate grid for the quadratic)
OPTIMIZERS = {
    "gd": (nnlab.optim.gd, [0.01, 0.02, 0.04, 0.06, 0.07, 0.075, 0.5, 1.0, 1.5]),
    "momentum (low-pass)": (
        lambda lr: nnlab.optim.momentum(lr, BETA, form="lowpass"),
        [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0],
    ),
    "heavy ball": (
        lambda lr: nnlab.optim.momentum(lr, BETA, form="heavy_ball"),
        [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3],
    ),
    "adam": (nnlab.optim.adam, [0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3]),
}
# optimizer -> (TrainConfig optimizer, learning rate) for the MNIST MLP (heavy ball at 0.01 would be the low-pass
# form at 0.1 exactly: m_heavy = m_lowpass / (1 - beta))
MNIST_OPTIMIZERS = {
    "gd": ("sgd", 0.1),
    "momentum (low-pass)": ("momentum", 0.1),
    "heavy ball": ("heavy_ball", 0.05),
    "adam": ("adam", 1e-3),
}
TOL = 1e-6


def descend(tx: optax.GradientTransformation, a: float, b: float, start: jax.Array, steps: int) -> np.ndarray:
    """The iterates theta_0 .. theta_steps [steps + 1, 2] of `tx` on E = (a x^2 + b y^2) / 2."""

    def energy(theta):
        return 0.5 * (a * theta[0] ** 2 + b * theta[1] ** 2)

    def body(carry, _):
        theta, state = carry
        updates, state = tx.update(jax.grad(energy)(theta), state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    _, path = jax.lax.scan(body, (start, tx.init(start)), None, length=steps)
    return np.concatenate([np.asarray(start)[None], np.asarray(path)])


def steps_to_tol(path: np.ndarray, a: float, b: float) -> int | None:
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging path overflows: it never reaches TOL
        e = 0.5 * (a * path[:, 0] ** 2 + b * path[:, 1] ** 2)
    hit = np.flatnonzero(e < TOL)
    return int(hit[0]) if hit.size else None


def quadratic(cfg: dict, seeds: list[int]) -> dict:
    """Per surface and optimizer: the best learning rate of the grid, its steps to TOL per start, the paths."""
    starts = [
        jnp.stack([jnp.cos(t), jnp.sin(t)])
        for t in (jax.random.uniform(nnlab.train.as_key(s), (), minval=0.0, maxval=2 * jnp.pi) for s in seeds)
    ]
    out = {}
    for surface, (a, b) in SURFACES.items():
        for name, (make, grid) in OPTIMIZERS.items():
            best = None
            for lr in grid:
                paths = [descend(make(lr), a, b, s, cfg["steps"]) for s in starts]
                counts = [steps_to_tol(p, a, b) for p in paths]
                score = max(c if c is not None else cfg["steps"] + 1 for c in counts)
                if best is None or score < best["score"]:
                    best = {
                        "learning_rate": lr,
                        "score": score,
                        "steps_to_tol": counts,
                        "paths": [p.tolist() for p in paths],
                    }
            out[f"{surface}/{name}"] = {"surface": surface, "optimizer": name, **best}
    return out


def mnist_runs(cfg: dict, seeds: list[int], data_dir) -> list[dict]:
    train, test = nnlab.mnist(data_dir)
    splits = split(train, test, cfg)
    base = nnlab.nn.mlp([784, 100, 100, 10], activation="relu", input_shape=(28, 28, 1))
    models = {
        "raw pixels": base,
        "normalized": nnlab.nn.with_normalization(base, nnlab.data.fit_normalization(splits.train.x)),
    }
    runs = []
    for inputs, model in models.items():
        for name, (optimizer, lr) in MNIST_OPTIMIZERS.items():
            config = nnlab.TrainConfig(
                epochs=cfg["epochs"], batch_size=128, optimizer=optimizer, learning_rate=lr, momentum=BETA
            )
            result = nnlab.fit_many(model, splits.train, keys=seeds, config=config, val=splits.val, progress=False)
            outputs = nnlab.predict(model, result.variables, splits.test.x, members=True)
            runs.append(
                {
                    "inputs": inputs,
                    "optimizer": name,
                    "learning_rate": lr,
                    "train_loss": [[h["train_loss"] for h in hs] for hs in result.histories],
                    "val_error": [[h["val_error"] for h in hs] for hs in result.histories],
                    "test_error": np.mean(np.argmax(outputs, -1) != splits.test.y[None], axis=1).tolist(),
                    "train_seconds": result.train_seconds,
                }
            )
    return runs


def quadratic_rows(quad: dict, steps: int) -> list[dict]:
    rows = []
    for name in OPTIMIZERS:
        row = {"optimizer": name}
        for surface in SURFACES:
            q = quad[f"{surface}/{name}"]
            reached = [c for c in q["steps_to_tol"] if c is not None]
            row[f"{surface}: lr"] = q["learning_rate"]
            row[f"{surface}: steps to E<1e-6"] = (
                pm(reached, digits=1)
                if len(reached) == len(q["steps_to_tol"])
                else f">{steps} ({len(reached)} of {len(q['steps_to_tol'])})"
            )
        rows.append(row)
    return rows


def mnist_rows(runs: list[dict]) -> list[dict]:
    return [
        {
            "inputs": r["inputs"],
            "optimizer": r["optimizer"],
            "lr": r["learning_rate"],
            "train_loss_epoch1": pm([t[0] for t in r["train_loss"]], digits=3),
            "train_loss_last": pm([t[-1] for t in r["train_loss"]], digits=3),
            "val_error_epoch1_%": pm([v[0] for v in r["val_error"]], 100),
            "test_error_%": pm(r["test_error"], 100),
        }
        for r in runs
    ]


def plot(quad: dict, runs: list[dict], path: str) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for ax, (surface, (a, b)) in zip(axes[:2], SURFACES.items(), strict=False):
        g = np.linspace(-1.2, 1.2, 200)
        X, Y = np.meshgrid(g, g)
        ax.contour(X, Y, 0.5 * (a * X**2 + b * Y**2), levels=np.geomspace(1e-3, 20, 12), colors="lightgray")
        for name in OPTIMIZERS:
            q = quad[f"{surface}/{name}"]
            p = np.array(q["paths"][0])
            n = q["steps_to_tol"][0]
            ax.plot(
                p[: (n or len(p)) + 1, 0],
                p[: (n or len(p)) + 1, 1],
                ".-",
                ms=3,
                lw=1,
                label=f"{name} (lr {q['learning_rate']:g}): {n if n is not None else '>' + str(len(p) - 1)} steps",
            )
        ax.set(xlim=(-1.2, 1.2), ylim=(-1.2, 1.2), aspect="equal", title=f"{surface}: E = ({a:g} x² + {b:g} y²) / 2")
        ax.legend(fontsize=6, loc="lower left")
    for ax, inputs in zip(axes[2:], ("raw pixels", "normalized"), strict=False):
        for r in (r for r in runs if r["inputs"] == inputs):
            loss = np.array(r["train_loss"])
            ax.plot(np.arange(1, loss.shape[1] + 1), loss.mean(0), "o-", ms=3, label=r["optimizer"])
        ax.set(yscale="log", xlabel="epoch", ylabel="training loss (mean over seeds)", title=f"MNIST MLP, {inputs}")
        ax.legend(fontsize=7)
    ylim = (min(ax.get_ylim()[0] for ax in axes[2:]), max(ax.get_ylim()[1] for ax in axes[2:]))
    for ax in axes[2:]:
        ax.set_ylim(ylim)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parser(__doc__).parse_args()
    cfg = settings(args, SMALL, FULL)
    started = time.perf_counter()
    seeds = list(range(cfg["seeds"]))
    quad = quadratic(cfg, seeds)
    print(nnlab.report.format_table(quadratic_rows(quad, cfg["steps"])))
    runs = mnist_runs(cfg, seeds, args.data_dir)
    print(nnlab.report.format_table(mnist_rows(runs)))
    results = {
        "quadratic_rows": quadratic_rows(quad, cfg["steps"]),
        "mnist_rows": mnist_rows(runs),
        "quadratic": quad,
        "mnist": runs,
        "beta": BETA,
        "tolerance": TOL,
        **metadata(args, started, cfg),
    }
    finish(results, args, lambda path: plot(quad, runs, path))


if __name__ == "__main__":
    main()
