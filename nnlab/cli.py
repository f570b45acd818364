"""The `nnlab` command: a thin layer over the library (`nnlab --help`)."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import configs
from ._run import RunConfig, run
from .data import DataNotFoundError, load_dataset
from .nn import MODELS, get_model, summary
from .optim import OPTIMIZERS
from .report import format_table, write_json

# CLI flag -> TrainConfig field
_TRAIN_FLAGS = {
    "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "learning_rate",
    "momentum": "momentum", "schedule": "schedule", "weight_decay": "weight_decay", "l1": "l1",
    "patience": "patience",
}


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="number of epochs (the maximum, with early stopping)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (0: full batch)")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--momentum", type=float, help="momentum / low-pass factor beta")
    p.add_argument("--schedule", choices=("constant", "cosine", "step", "exponential"))
    p.add_argument("--weight-decay", type=float, help="L2 lambda (decoupled decay for adamw)")
    p.add_argument("--l1", type=float, help="L1 lambda")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--seed", type=int, help="seed of initialization, data order and dropout")
    p.add_argument("--data-dir", help="folder with the IDX files (or with <dataset>/ inside)")
    p.add_argument("--train-subset", type=int, metavar="N", help="use only the first N training samples")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch table")


def config_from_args(name: str, args: argparse.Namespace) -> RunConfig:
    """The named default config with the flags the user gave applied on top."""
    cfg = configs.get_config(name)
    train = {}
    for flag, field in _TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            train[field] = value
    if train.get("batch_size") == 0:
        train["batch_size"] = None
    if train.get("patience") == 0:
        train["patience"] = None
    changes = {"train": cfg.train.replace(**train)}
    for field in ("seed", "data_dir", "train_subset"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    return cfg.replace(**changes)


def _train(name: str, args: argparse.Namespace) -> int:
    cfg = config_from_args(name, args)
    results, _ = run(cfg, progress=False if args.quiet else None)
    results["command"] = "nnlab " + shlex.join(sys.argv[1:])
    if not args.quiet:
        print(format_table(results["history"], ["epoch", "train_loss", "train_error", "val_loss", "val_error", "seconds"]))
    print(f"{name}: test error {100 * results['test_error']:.2f}% ({results['test_errors']}/{results['n_test']}), "
          f"best epoch {results['best_epoch']} of {results['epochs_run']}, {results['params']:,} parameters, "
          f"{results['train_seconds']:.1f} s on {results['device']}")
    if args.json:
        write_json(args.json, results)
        print(f"results written to {args.json}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        load_dataset("mnist", args.data_dir)
    except DataNotFoundError as e:
        print(f"MNIST not found ({e}); training XOR instead.", file=sys.stderr)
        return _train("xor", args)
    return _train("mnist-mlp", args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nnlab", description="Train and study the lecture's neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train a named model and test it")
    p_train.add_argument("name", choices=sorted(configs.CONFIGS), help="what to train")
    _add_train_args(p_train)
    p_summary = sub.add_parser("summary", help="print a named model's layers: output shapes, parameters, operations")
    p_summary.add_argument("model", choices=sorted(MODELS), help="which model")
    p_demo = sub.add_parser("demo", help="train the MNIST MLP, or XOR where no MNIST files are found")
    _add_train_args(p_demo)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args.name, args)
        if args.command == "summary":
            summary(get_model(args.model))
            return 0
        return _demo(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"nnlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
