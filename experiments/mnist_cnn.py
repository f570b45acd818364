"""The lecture's deep CNN on MNIST (lecture: 48 and 49 test errors, 0.48% / 0.49%, in two runs).

Trains the `nnlab train mnist-cnn` configuration (a 171,868-parameter funnel, split 50,000 /
10,000 / 10,000, dropout + L2 weight decay + shifts / rotations / zooms drawn anew in every
batch) and tests the epoch best on validation. After every epoch it also records the test
error of that epoch's parameters and rewrites --json, so a run cut short still leaves its
figures. Prints the history, writes --json and a PNG of the misclassified test digits.

    python experiments/mnist_cnn.py --json experiments/results/mnist_cnn.json \\
        --png experiments/results/mnist_cnn_errors.png
"""

import argparse
import shlex
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import nnlab  # noqa: E402


def plot_misclassified(x: np.ndarray, y: np.ndarray, pred: np.ndarray, path: str, title: str) -> None:
    """A grid of the misclassified digits x: [n, 28, 28, 1] (the first 100), each titled 'true -> predicted'."""
    idx = nnlab.evaluation.misclassified(pred, y)[:100]
    cols = 10
    rows = max(1, -(-len(idx) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.05 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx, strict=False):
        ax.imshow(x[i, :, :, 0], cmap="gray_r")
        ax.set_title(f"{y[i]} -> {pred[i]}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()

    cfg = nnlab.configs.get_config("mnist-cnn").replace(
        data_dir=args.data_dir, seed=args.seed, train_subset=args.train_subset
    )
    if args.epochs:
        cfg = cfg.replace(train=cfg.train.replace(epochs=args.epochs))
    splits = nnlab.load_splits(cfg)
    model = nnlab.build_model(cfg, splits.train)
    test = splits.test
    command = "python " + shlex.join(sys.argv)
    history = []

    def test_each_epoch(epoch, state, record):
        ev = nnlab.evaluate(model, state.variables, test.x, test.y, num_classes=test.num_classes)
        history.append({**record, "test_error": ev.error_rate})
        best = min(history, key=lambda h: (h["val_error"], h["val_loss"]))
        print(
            f"epoch {epoch}: val {100 * record['val_error']:.2f}%  test {100 * ev.error_rate:.2f}%  "
            f"{record['seconds']:.0f} s",
            flush=True,
        )
        if args.json:
            nnlab.report.write_json(
                args.json,
                {
                    "status": f"running: {epoch} of {cfg.train.epochs} epochs",
                    "command": command,
                    "best_val_epoch": best["epoch"],
                    "test_error_at_best_val": best["test_error"],
                    "history": history,
                    **nnlab.report.environment(),
                    "config": cfg.to_dict(),
                },
            )

    results, fitted = nnlab.run(cfg, progress=False, callbacks=[test_each_epoch])
    results.update(status="finished", command=command, history=history)
    print(
        nnlab.report.format_table(history, ["epoch", "train_loss", "train_error", "val_error", "test_error", "seconds"])
    )
    print(
        f"mnist-cnn: test error {100 * results['test_error']:.2f}% ({results['test_errors']}/{results['n_test']}) "
        f"at the best validation epoch {results['best_epoch']} of {results['epochs_run']}, {results['params']:,} "
        f"parameters, {results['train_seconds'] / 60:.1f} min on {results['device']}"
    )
    if args.json:
        nnlab.report.write_json(args.json, results)
    if args.png:
        pred = nnlab.predict_labels(nnlab.predict(model, fitted.variables, test.x))
        plot_misclassified(
            test.x,
            test.y,
            np.asarray(pred),
            args.png,
            f"mnist-cnn: {results['test_errors']} misclassified of {results['n_test']} test digits (true -> predicted)",
        )


if __name__ == "__main__":
    main()
