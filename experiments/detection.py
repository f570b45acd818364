"""Finding digits: R-CNN, Faster R-CNN and Mask R-CNN on 128 x 128 scenes of MNIST digits.

Each model is trained and scored by `nnlab.detect.train_and_score` (as `nnlab train mnist-detect`
does): Faster R-CNN and Mask R-CNN train through `nnlab.fit` (the detector as a Model whose objective
takes the targets pytree); R-CNN's CNN too, on selective-search proposals, then its linear
SVMs with Optax on the CNN's features. All are scored with pycocotools' COCOeval on held-out
test scenes (built from MNIST's test digits only), and the inference speed of R-CNN (selective
search + the CNN once per proposal) and Faster R-CNN (one pass) is measured side by side.

    python experiments/detection.py --models faster_rcnn --train 3000 --epochs 8 --test 1000 \\
        --json experiments/results/detect.json --png experiments/results/detect.png

On a CPU add `--engine step`: the 'auto' engine unrolls 8 steps of these large programs into one,
which takes minutes to compile there (on a GPU it scans, one step compiled once).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import nnlab

MODELS = nnlab.detect.DETECTORS


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {MODELS}")
    p.add_argument("--train", type=int, default=3000, help="training scenes")
    p.add_argument("--test", type=int, default=1000, help="held-out test scenes")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--rcnn-epochs", type=int, default=2)
    p.add_argument(
        "--rcnn-train",
        type=int,
        default=500,
        help="R-CNN trains on the first N training scenes: its selective search runs on the host, about 0.13 s "
        "per scene on one core",
    )
    p.add_argument("--svm-steps", type=int, default=300)
    p.add_argument("--speed-images", type=int, default=16, help="test scenes timed for images/s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--engine",
        default="auto",
        choices=nnlab.train.ENGINES,
        help="nnlab.fit's engine; 'step' on a CPU: 'auto' unrolls 8 detector steps into one program there, "
        "which takes minutes to compile",
    )
    p.add_argument("--data-dir", help="folder with MNIST's IDX files (default: nnlab's search order)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--png", metavar="PATH")
    args = p.parse_args(argv)
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        p.error(f"--models: expected names among {MODELS}, got {sorted(unknown)}")
    for flag in ("json", "png"):  # checked before training, so that results are never lost at the end
        path = getattr(args, flag)
        if path and not Path(path).absolute().parent.is_dir():
            p.error(f"--{flag}: expected a file path in an existing folder, got {path!r}")
    return args


def train_config(args, epochs: int) -> nnlab.TrainConfig:
    return nnlab.TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        optimizer="adam",
        learning_rate=args.learning_rate,
        schedule="cosine",
        warmup_epochs=min(1, epochs - 1),
        engine=args.engine,
    )


def main(argv=None) -> dict:
    args = parse(argv)
    key = jax.random.key(args.seed)
    k_train, k_test = jax.random.split(key)
    train = nnlab.data.mnist_scenes(args.train, key=k_train, split="train", data_dir=args.data_dir)
    test = nnlab.data.mnist_scenes(args.test, key=k_test, split="test", data_dir=args.data_dir)
    results, shown = {}, None
    for name in args.models.split(","):
        is_rcnn = name == "rcnn"
        row, out = nnlab.detect.train_and_score(
            name,
            train.take(args.rcnn_train) if is_rcnn else train,
            test,
            config=train_config(args, args.rcnn_epochs if is_rcnn else args.epochs),
            seed=args.seed,
            svm_steps=args.svm_steps,
            speed_images=args.speed_images,
        )
        results[name] = row
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        if shown is None or name == "mask_rcnn":
            shown = (name, out)
    if args.png and shown is not None:
        name, out = shown
        k = 8
        masks = None
        if out.masks is not None:
            masks = (
                np.asarray(
                    nnlab.detect.paste_masks(
                        jnp.asarray(out.masks[:k]),
                        jnp.asarray(out.boxes[:k]),
                        test.images.shape[1],
                        test.images.shape[2],
                    )
                )
                > 0.5
            )
        nnlab.detect.draw_detections(
            args.png,
            test.images[:k],
            out.boxes[:k],
            out.labels[:k],
            out.valid[:k],
            scores=out.scores[:k],
            masks=masks,
            class_names=test.class_names,
            gt_boxes=test.boxes[:k],
            gt_valid=test.valid[:k],
            title=f"{name} on test scenes (dashed: ground truth)",
        )
    environment = nnlab.report.environment()
    report = {
        **results,
        "train_scenes": args.train,
        "test_scenes": args.test,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "device": environment["device"],
        "command": "python " + shlex.join(sys.argv),
        "environment": environment,
    }
    if args.json:
        nnlab.report.write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
