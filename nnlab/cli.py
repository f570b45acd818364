"""The `nnlab` command: a thin layer over the library (`nnlab --help`)."""

from __future__ import annotations

import argparse
import linecache
import os
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import jax

from . import configs
from . import data as D
from ._paths import check_output_path
from ._run import RunConfig, evaluate_checkpoint, run, run_detection, run_seeds
from ._signals import Interrupted
from .checkpoint import Checkpointer, CheckpointWarning
from .detect import DetectionConfig
from .nn import MODELS, get_model, summary
from .optim import OPTIMIZERS
from .report import format_table, write_json
from .study import format_study
from .sweep import DEFAULT_SPACE, KNOBS, grid, random_search, sweep
from .train import COMPUTE_DTYPES, ENGINES, as_key, keep_freed_memory

# the TrainConfig fields the training flags set (each flag's dest is its field)
_TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "momentum",
    "schedule",
    "weight_decay",
    "l1",
    "patience",
    "engine",
    "compute_dtype",
    "devices",
    "member_shards",
)

# the flags of `nnlab train` a detection run takes (each flag's dest): TrainConfig fields, then its own
_DETECTION_TRAIN_FIELDS = tuple(
    f for f in _TRAIN_FIELDS if f not in ("l1", "patience", "compute_dtype", "devices", "member_shards")
)
_DETECTION_FLAGS = (*_DETECTION_TRAIN_FIELDS, "seed", "data_dir", "train_subset", "test_subset", "json", "quiet")
# what every command's arguments hold besides its flags; --checkpoint-every and --keep act only with --checkpoint-dir
_NOT_FLAGS = ("command", "name", "debug", "checkpoint_every", "keep")


class _Parser(argparse.ArgumentParser):
    """argparse with nnlab's one-line errors: `nnlab: error: ...`, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"nnlab: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="number of epochs (the maximum, with early stopping)")
    p.add_argument("--batch-size", type=int, help="mini-batch size (0: full batch)")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, dest="learning_rate", metavar="LR", help="learning rate")
    p.add_argument("--momentum", type=float, help="momentum / low-pass factor beta")
    p.add_argument("--schedule", choices=("constant", "cosine", "step", "exponential"))
    p.add_argument("--weight-decay", type=float, help="L2 lambda (decoupled decay for adamw)")
    p.add_argument("--l1", type=float, help="L1 lambda")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument(
        "--engine", choices=ENGINES, help="loop strategy (auto: unrolled chunks on CPU, scanned epochs on GPU/TPU)"
    )
    p.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, help="bfloat16: mixed precision, float32 parameters")
    p.add_argument(
        "--devices", type=int, help="train on this many devices (0: all): data parallel, or see --member-shards"
    )
    p.add_argument(
        "--member-shards",
        type=int,
        metavar="K",
        help="split the seeds of `nnlab seeds` over K groups of the devices (the rest: data parallel)",
    )
    p.add_argument("--seed", type=int, help="seed of initialization, data order and dropout")
    p.add_argument("--data-dir", help="folder with the IDX files (or with <dataset>/ inside)")
    p.add_argument(
        "--train-subset",
        type=int,
        metavar="N",
        help="train on N samples only, taken after the validation split is held out",
    )
    p.add_argument("--n-val", type=int, metavar="N", help="validation samples held out of the training set (0: none)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch table")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="save checkpoints (Orbax) into DIR")
    p.add_argument("--checkpoint-every", type=int, default=1, metavar="N", help="save every N epochs (and at the end)")
    p.add_argument("--keep", type=int, default=3, metavar="K", help="keep the last K checkpoints (and the best)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --checkpoint-dir")


def _train_changes(args: argparse.Namespace, fields: tuple[str, ...]) -> dict[str, Any]:
    """The TrainConfig fields among `fields` the user gave a flag for; 0 means None for the batch size
    (full batch) and the patience (no early stopping)."""
    train = {field: getattr(args, field) for field in fields if getattr(args, field) is not None}
    for field in ("batch_size", "patience"):
        if train.get(field) == 0:
            train[field] = None
    return train


def config_from_args(name: str, args: argparse.Namespace) -> RunConfig:
    """The named default config with the flags the user gave applied on top."""
    cfg = configs.get_config(name)
    train = _train_changes(args, _TRAIN_FIELDS)
    changes = {
        f: getattr(args, f) for f in ("seed", "data_dir", "train_subset", "n_val") if getattr(args, f) is not None
    }
    return cfg.replace(train=cfg.train.replace(**train), **changes)


def detection_config_from_args(name: str, args: argparse.Namespace) -> DetectionConfig:
    """The named default detection config with the flags the user gave applied on top; a flag a
    detection run has no use for (a validation split, checkpoints, devices, ...) is refused."""
    flags = ", ".join("--lr" if f == "learning_rate" else f"--{f.replace('_', '-')}" for f in _DETECTION_FLAGS)
    for dest, given in vars(args).items():
        if dest not in (*_DETECTION_FLAGS, *_NOT_FLAGS) and given is not None and given is not False:
            raise ValueError(
                f"--{dest.replace('_', '-')}: expected none with the detection run `nnlab train {name}` "
                f"(it takes {flags}), got {given!r}"
            )
    cfg = configs.get_detection_config(name)
    train = _train_changes(args, _DETECTION_TRAIN_FIELDS)
    if "epochs" in train:  # warm-up shorter than the run, as experiments/detection.py sets it
        train["warmup_epochs"] = min(cfg.train.warmup_epochs, max(train["epochs"] - 1, 0))
    changes = {
        "seed": args.seed,
        "data_dir": args.data_dir,
        "train_scenes": args.train_subset,
        "test_scenes": args.test_subset,
    }
    return cfg.replace(train=cfg.train.replace(**train), **{k: v for k, v in changes.items() if v is not None})


def _save(results: dict[str, Any], args: argparse.Namespace) -> int:
    """Writes `results` to --json (when given), with the command that produced them."""
    results["command"] = "nnlab " + shlex.join(sys.argv[1:])
    if args.json:
        write_json(args.json, results)
        print(f"results written to {args.json}")
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before any training, so that results are never lost at the end."""
    if getattr(args, "json", None):
        check_output_path(args.json, name="--json", folder=False)
    if getattr(args, "checkpoint_dir", None):
        check_output_path(args.checkpoint_dir, name="--checkpoint-dir", folder=True)


def _setup(args: argparse.Namespace, *, checkpoints: bool = True) -> tuple[RunConfig, dict[str, Any]]:
    """The config of a training command and the run / run_seeds keyword arguments of its checkpoint flags
    (`checkpoints=False`: a command that trains several programs refuses them); outputs checked first."""
    if not checkpoints and (args.checkpoint_dir or args.resume):
        raise ValueError(
            f"--checkpoint-dir / --resume: expected neither with `nnlab {args.command}` "
            f"(its settings train as several programs), got {args.checkpoint_dir or '--resume'}"
        )
    cfg = config_from_args(args.name, args)
    if args.resume and args.checkpoint_dir is None:
        raise ValueError("--resume: expected --checkpoint-dir DIR to resume from, got none")
    _check_outputs(args)
    return cfg, {
        "checkpoint_dir": args.checkpoint_dir,
        "resume": args.resume,
        "keep": args.keep,
        "checkpoint_every": args.checkpoint_every,
        "progress": False if args.quiet else None,
    }


def _train_detector(args: argparse.Namespace) -> int:
    cfg = detection_config_from_args(args.name, args)
    _check_outputs(args)
    results, _ = run_detection(cfg, progress=False if args.quiet else None)
    row = results[cfg.model]
    masks = f", mask AP {row['mask_ap']:.3f}" if "mask_ap" in row else ""
    print(
        f"{args.name}: box mAP@0.5 {row['map50']:.3f}, mAP@[.5:.95] {row['map']:.3f}{masks} on "
        f"{results['test_scenes']} test scenes; {row['images_per_second']:.1f} images/s, "
        f"{row['train_seconds']:.1f} s of training on {results['device']}"
    )
    return _save(results, args)


def _train(args: argparse.Namespace) -> int:
    if args.name in configs.DETECTION_CONFIGS:
        return _train_detector(args)
    if getattr(args, "test_subset", None) is not None:
        raise ValueError(
            f"--test-subset: expected it only with a detection run, got {args.test_subset} with {args.name}"
        )
    cfg, options = _setup(args)
    results, _ = run(cfg, **options, logdir=args.logdir)
    if not args.quiet:
        print(
            format_table(results["history"], ["epoch", "train_loss", "train_error", "val_loss", "val_error", "seconds"])
        )
    print(
        f"{args.name}: test error {100 * results['test_error']:.2f}% ({results['test_errors']}/{results['n_test']}), "
        f"best epoch {results['best_epoch']} of {results['epochs_run']}, {results['params']:,} parameters, "
        f"{results['train_seconds']:.1f} s on {results['device']} ({results['engine']} engine)"
    )
    return _save(results, args)


def _seeds(args: argparse.Namespace) -> int:
    cfg, options = _setup(args)
    results, _ = run_seeds(cfg, list(range(cfg.seed, cfg.seed + args.seeds)), max_members=args.max_members, **options)
    print(format_study(results))
    return _save(results, args)


def _parse_param(text: str) -> tuple[str, list[Any] | tuple[float, ...]]:
    """'width=100,200' -> ('width', [100, 200]); 'learning_rate=1e-4:1e-2' -> a (low, high) range."""
    name, sep, values = text.partition("=")
    if not sep or name not in KNOBS:
        raise ValueError(
            f"--param: expected NAME=V1,V2,... or NAME=LOW:HIGH with NAME in {sorted(KNOBS)}, got {text!r}"
        )
    cast = str if name == "activation" else (int if name in ("batch_size", "width", "depth") else float)
    if ":" in values:
        return name, tuple(float(v) for v in values.split(":", 1))
    return name, [cast(v) for v in values.split(",")]


def _sweep(args: argparse.Namespace) -> int:
    cfg, options = _setup(args, checkpoints=False)
    space: Mapping[str, list[Any] | tuple[float, ...]] = (
        dict(_parse_param(p) for p in args.param) if args.param else DEFAULT_SPACE
    )
    settings = random_search(space, args.random, key=as_key(cfg.seed)) if args.random else grid(space)
    results = sweep(
        cfg,
        settings,
        pilot_epochs=args.pilot_epochs or None,
        pilot_subset=args.pilot_subset,
        max_members=args.max_members,
        progress=options["progress"],
    )
    if results["pilot"]:
        dropped = [r for r in results["pilot"] if not r["learned"]]
        print(
            f"pilot ({args.pilot_epochs} epochs on {args.pilot_subset} samples): {len(dropped)} of "
            f"{len(results['pilot'])} settings did not learn and were dropped"
        )
        if dropped:
            print(format_table(dropped, [*space, "val_error"]))
    print(format_table(results["rows"], [*space, "val_error", "test_error", "best_epoch", "epochs_run", "program"]))
    best = results["best"]
    print(
        f"best on validation: {', '.join(f'{k}={best[k]}' for k in space)}: validation error "
        f"{100 * best['val_error']:.2f}%, test error {100 * best['test_error']:.2f}%; "
        f"{len(results['rows'])} settings in {results['programs']} program(s) on {results['device']}"
    )
    return _save(results, args)


def _eval(args: argparse.Namespace) -> int:
    _check_outputs(args)
    results = evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir)
    print(
        f"{results['checkpoint']}: {results['model']} on {results['dataset']}: test error "
        f"{100 * results['test_error']:.2f}% ({results['test_errors']}/{results['n_test']})"
    )
    return _save(results, args)


def _demo(args: argparse.Namespace) -> int:
    """Trains the lecture's MNIST MLP on MNIST found on disk or downloaded; a compact summary off a terminal."""
    D.locate("mnist", args.data_dir, mirror=args.mirror)
    args.name, args.quiet = "mnist-mlp", args.quiet or not sys.stdout.isatty()
    return _train(args)


def _add_data_parser(sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """`nnlab data download|verify|where NAME`."""
    p_data = sub.add_parser("data", parents=[common], help="download, verify or locate MNIST / Fashion-MNIST")
    actions = p_data.add_subparsers(dest="action", required=True)
    helps = {
        "download": "fetch the files a folder lacks from the mirrors, checking each SHA-256",
        "verify": "check the files nnlab would read against their SHA-256",
        "where": "print the folder nnlab reads the set from (or would download it into)",
    }
    for action, text in helps.items():
        p = actions.add_parser(action, parents=[common], help=text)
        p.add_argument("name", choices=sorted(D.PUBLISHED), help="which data set")
        p.add_argument(
            "--data-dir", help="data root (the set lives in DATA_DIR/NAME/); default $NNLAB_DATA_DIR or ~/.cache/nnlab"
        )
        if action == "download":
            p.add_argument(
                "--mirror",
                metavar="URL",
                help="base URL tried first, laid out as URL/NAME/FILE (default $NNLAB_DATA_MIRROR)",
            )


def _summary(args: argparse.Namespace) -> int:
    summary(get_model(args.model))
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.action == "download":
        print(D.download(args.name, args.data_dir, mirror=args.mirror))
    elif args.action == "verify":
        for path, status in D.verify_folder(args.name, args.data_dir):
            print(f"{path}: {status}")
    else:
        found = D.find(args.name, args.data_dir)
        print(found if found is not None else D.data_root(args.data_dir) / args.name)
        if found is None:
            print(f"{args.name}: not there yet; `nnlab data download {args.name}` fetches it", file=sys.stderr)
    return 0


_PACKAGE = str(Path(__file__).resolve().parent) + os.sep


def is_user_error(e: BaseException) -> bool:
    """Whether `e` is for the user to fix: a refusal nnlab raised on purpose (a ValueError,
    TypeError or ArithmeticError from a `raise` statement in nnlab's own code) or a failure of
    the user's files (OSError). A TypeError or ValueError from a bug, or from a library, is not."""
    if isinstance(e, OSError):
        return True
    if not isinstance(e, (ValueError, TypeError, ArithmeticError)) or e.__traceback__ is None:
        return False
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    return filename.startswith(_PACKAGE) and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")


def _interrupted(e: Interrupted, argv: list[str], args: argparse.Namespace) -> int:
    """One line: what was saved and how to resume; the exit code 128 + signal (130, 143)."""
    if e.checkpoint is None and getattr(args, "checkpoint_dir", None):  # interrupted outside the training loop
        e = Interrupted(
            e.signum, epoch=e.epoch, during_epoch=e.during_epoch, checkpoint=Checkpointer(args.checkpoint_dir).latest()
        )
    line = f"nnlab: {e.describe()}"
    if e.checkpoint is not None:
        line += f"; resume with: nnlab {shlex.join(argv if '--resume' in argv else [*argv, '--resume'])}"
    print(line, file=sys.stderr)
    return e.exit_code


def _raise_interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    raise Interrupted(signum)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    print(f"nnlab: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
    )
    parser = _Parser(prog="nnlab", description="Train and study the lecture's neural networks.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help)

    p_train = command("train", "train a named model and test it")
    p_train.add_argument("name", choices=sorted(configs.CONFIGS | configs.DETECTION_CONFIGS), help="what to train")
    _add_train_args(p_train)
    p_train.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="detection runs: score on N test scenes only (--train-subset: N training scenes)",
    )
    p_summary = command("summary", "print a named model's layers: output shapes, parameters, operations")
    p_summary.add_argument("model", choices=sorted(MODELS), help="which model")
    p_demo = command("demo", "train the lecture's MNIST MLP (MNIST is downloaded when not found)")
    _add_train_args(p_demo)
    p_demo.add_argument("--mirror", metavar="URL", help="base URL tried first for MNIST (default $NNLAB_DATA_MIRROR)")
    for p in (p_train, p_demo):
        p.add_argument("--logdir", metavar="DIR", help="per-epoch metrics: DIR/metrics.jsonl and TensorBoard files")
    _add_data_parser(sub, common)
    p_seeds = command("seeds", "train S seeds of a named model as one vmapped program, compare, ensemble")
    p_seeds.add_argument("name", choices=sorted(configs.CONFIGS), help="what to train")
    p_seeds.add_argument("--seeds", type=int, default=8, help="number of seeds S: --seed, --seed + 1, ... (default 8)")
    p_seeds.add_argument("--max-members", type=int, metavar="M", help="train at most M seeds at once (chunks)")
    _add_train_args(p_seeds)
    p_sweep = command("sweep", "grid or random search, chosen on validation, reported on test")
    p_sweep.add_argument("name", choices=sorted(configs.CONFIGS), help="the config to start from")
    p_sweep.add_argument(
        "--param",
        action="append",
        metavar="NAME=V1,V2|NAME=LOW:HIGH",
        help=f"a knob to search ({', '.join(KNOBS)}); repeat for several (default: {DEFAULT_SPACE})",
    )
    p_sweep.add_argument("--random", type=int, metavar="N", help="draw N random settings instead of the full grid")
    p_sweep.add_argument("--pilot-epochs", type=int, default=3, help="epochs of the pilot stage (0: no pilot)")
    p_sweep.add_argument("--pilot-subset", type=int, default=5000, help="training samples of the pilot stage")
    p_sweep.add_argument("--max-members", type=int, metavar="M", help="train at most M settings at once (chunks)")
    _add_train_args(p_sweep)
    p_eval = command("eval", "test a saved model (a checkpoint, or a folder of them: its best)")
    p_eval.add_argument("checkpoint", help="checkpoint folder (epoch_*) or --checkpoint-dir of a run")
    p_eval.add_argument("--data-dir", help="folder with the IDX files (or with <dataset>/ inside)")
    p_eval.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    return parser


_COMMANDS = {
    "train": _train,
    "summary": _summary,
    "demo": _demo,
    "data": _data,
    "seeds": _seeds,
    "sweep": _sweep,
    "eval": _eval,
}


def _compilation_cache() -> None:
    """Switches on JAX's persistent compilation cache in ~/.cache/nnlab/jax (or $NNLAB_COMPILATION_CACHE;
    'off' disables it), so a repeated command loads its compiled programs instead of compiling them."""
    folder = os.environ.get("NNLAB_COMPILATION_CACHE", str(Path.home() / ".cache" / "nnlab" / "jax"))
    if folder != "off":
        # jax 0.10's Config.update(self, name, val) has no annotations (an untyped call under strict mypy)
        jax.config.update("jax_compilation_cache_dir", folder)  # type: ignore[no-untyped-call]
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    """The `nnlab` command. Every user error is one line `nnlab: error: ...` and exit code 2
    (`--debug`: the traceback instead); SIGINT / SIGTERM end with one line and 130 / 143."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    _compilation_cache()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("always", category=CheckpointWarning)
            warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except Interrupted as e:
        return _interrupted(e, argv, args)
    except KeyboardInterrupt:
        return _interrupted(Interrupted(signal.SIGINT), argv, args)
    except Exception as e:
        if getattr(args, "debug", False) or not is_user_error(e):
            raise
        print(f"nnlab: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def command() -> int:
    """The `nnlab` executable (and `python -m nnlab`): `main()` in a process of its own, which first
    keeps freed memory for reuse (`nnlab.train.keep_freed_memory`; NNLAB_KEEP_FREED_MEMORY=0: not).
    `main()` called from Python leaves the allocator of the calling process alone."""
    if os.environ.get("NNLAB_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(main())
