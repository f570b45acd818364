"""The lecture's "3-layer network" 784-100-100-10 on MNIST (lecture: 2.4% test error).

Trains the default `nnlab train mnist-mlp` configuration (normalization, Adam with a cosine
schedule, L2 weight decay, early stopping on the 10,000-sample validation split, shifts /
rotations / zooms on the fly) and, for comparison, the same without augmentation.
Prints a table, writes --json and a PNG of the validation curves.

    python experiments/mnist_mlp.py --json experiments/results/mnist_mlp.json --png experiments/results/mnist_mlp.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import nnlab  # noqa: E402


def variants(base: nnlab.RunConfig) -> dict[str, nnlab.RunConfig]:
    return {
        "default (with augmentation)": base,
        "no augmentation": base.replace(train=base.train.replace(augmentation=nnlab.data.Augmentation())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()

    base = nnlab.configs.get_config("mnist-mlp").replace(data_dir=args.data_dir, seed=args.seed)
    rows, runs = [], {}
    for name, cfg in variants(base).items():
        results, _ = nnlab.run(cfg)
        runs[name] = results
        rows.append(
            {
                "variant": name,
                "test_error_%": 100 * results["test_error"],
                "test_errors": results["test_errors"],
                "val_error_%": 100 * results["val_error"],
                "best_epoch": results["best_epoch"],
                "epochs_run": results["epochs_run"],
                "params": results["params"],
                "train_s": round(results["train_seconds"], 1),
            }
        )
    print(nnlab.report.format_table(rows))
    if args.json:
        nnlab.report.write_json(args.json, {"rows": rows, "runs": runs, **nnlab.report.environment()})
    if args.png:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, r in runs.items():
            epochs = [h["epoch"] for h in r["history"]]
            ax.plot(epochs, [100 * h["val_error"] for h in r["history"]], label=f"{name}: validation")
            ax.plot(epochs, [100 * h["train_error"] for h in r["history"]], "--", label=f"{name}: training")
        ax.axhline(2.4, color="gray", lw=0.8, label="lecture: 2.4% test")
        ax.set(xlabel="epoch", ylabel="error (%)", ylim=(0, 5), title="MNIST MLP 784-100-100-10")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
