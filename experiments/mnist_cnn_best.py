"""The lecture's ~170,000-parameter CNN (`mnist-cnn`) over S seeds, as one vmapped program:
each seed's test error (epoch best on validation), their mean, and the ensemble's.

Meant for a GPU (the members' convolutions are vmapped; on this CPU one epoch of 3 members takes
minutes): `python experiments/mnist_cnn_best.py --seeds 3 --epochs 80 --json
experiments/results/mnist_cnn_best.json`. A quick look on a CPU: `--epochs 1 --train-subset 2000`.
"""

import argparse

import nnlab


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, help="override the config's epochs (46)")
    p.add_argument("--train-subset", type=int, help="only the first N training images (quick look)")
    p.add_argument("--max-members", type=int, help="train at most this many seeds at once")
    p.add_argument("--data-dir")
    p.add_argument("--json")
    args = p.parse_args()
    cfg = nnlab.configs.get_config("mnist-cnn").replace(data_dir=args.data_dir, train_subset=args.train_subset)
    if args.epochs:
        cfg = cfg.replace(train=cfg.train.replace(epochs=args.epochs))
    if args.train_subset:
        cfg = cfg.replace(n_val=args.train_subset // 6)
    results, _ = nnlab.run_seeds(cfg, list(range(args.seeds)), max_members=args.max_members)
    print(nnlab.study.format_study(results))
    if args.json:
        nnlab.report.write_json(args.json, results)


if __name__ == "__main__":
    main()
