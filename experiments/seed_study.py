"""Learning has a clear random component: S seeds of one network, their differences and ensemble.

The lecture trains the same CNN twice (48 and 49 test errors, different digits wrong) and
proposes the simplest meta-algorithm: sum the outputs of several networks. This trains S
seeds of a named config as one vmapped program and reports the test-error distribution, for
each pair the errors both make and the errors only one of them makes, how many test samples
exactly k of the S models get wrong, and the ensemble's error. Prints tables, writes --json
and a PNG.

    python experiments/seed_study.py --seeds 8 --json experiments/results/seed_study.json \
        --png experiments/results/seed_study.png
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import nnlab  # noqa: E402


def plot(results: dict, path: str) -> None:
    S = len(results["seeds"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.bar(range(S), [100 * e for e in results["seed_test_error"]], color="tab:blue", label="single model")
    ax.axhline(100 * results["test_error_mean"], color="gray", ls="--", label="mean of single models")
    ax.axhline(100 * results["ensemble_test_error"], color="tab:red", label=f"ensemble of {S} (sum of outputs)")
    ax.set(
        xlabel="seed",
        ylabel="test error (%)",
        xticks=range(S),
        xticklabels=results["seeds"],
        ylim=(0, 1.3 * 100 * max(results["seed_test_error"])),
        title="test error per seed",
    )
    ax.legend(fontsize=7, loc="lower right")
    only = np.zeros((S, S), int)
    for p in results["pairwise_disagreement"]:
        only[p["a"], p["b"]], only[p["b"], p["a"]] = p["only_a"], p["only_b"]
    np.fill_diagonal(only, results["seed_errors"])
    ax = axes[1]
    im = ax.imshow(only, cmap="viridis")
    ax.set(
        xlabel="seed b",
        ylabel="seed a",
        xticks=range(S),
        yticks=range(S),
        xticklabels=results["seeds"],
        yticklabels=results["seeds"],
        title="errors of a that b does not make\n(diagonal: all errors of a)",
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[2]
    k = results["wrong_by_exactly_k"]
    ax.bar(range(1, S + 1), k[1:], color="tab:orange")
    ax.set(
        xlabel="k",
        ylabel="test samples",
        xticks=range(1, S + 1),
        title=f"misclassified by exactly k of {S} models\n({k[0]} by none)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="mnist-mlp", choices=sorted(nnlab.configs.CONFIGS))
    p.add_argument("--seeds", type=int, default=8, help="number of seeds S (0 .. S-1)")
    p.add_argument("--epochs", type=int, help="override the config's epochs (for a quick look)")
    p.add_argument("--max-members", type=int, help="train at most this many seeds at once")
    p.add_argument("--data-dir")
    p.add_argument("--json")
    p.add_argument("--png")
    args = p.parse_args()

    cfg = nnlab.configs.get_config(args.config).replace(data_dir=args.data_dir)
    if args.epochs:
        cfg = cfg.replace(train=cfg.train.replace(epochs=args.epochs))
    results, _ = nnlab.run_seeds(cfg, list(range(args.seeds)), max_members=args.max_members)
    print(nnlab.study.format_study(results))
    if args.json:
        nnlab.report.write_json(args.json, results)
    if args.png:
        plot(results, args.png)


if __name__ == "__main__":
    main()
