"""Finding digits: R-CNN, Faster R-CNN and Mask R-CNN on 128 x 128 scenes of MNIST digits.

Faster R-CNN and Mask R-CNN train through `nnlab.fit` (the detector as a Model whose objective
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
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnlab
from nnlab.detect import FasterRCNNConfig, RCNNConfig

MODELS = ("faster_rcnn", "mask_rcnn", "rcnn")


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


def fit_detector(model: nnlab.Model, data: nnlab.Dataset, config: nnlab.TrainConfig, seed: int):
    """nnlab.fit from a state initialised outside it (the detectors' init compiles fast on its own)."""
    tx = nnlab.train.make_tx(config, data.n // config.batch_size)
    state = nnlab.train.init_state(model, tx, jnp.asarray(data.x[:1]), key=jax.random.key(seed))
    return nnlab.fit(model, data, key=seed, config=config, state=state, tx=tx)


def images_per_second(run, n: int) -> float:
    """Images per second of `run()` (which processes n images), after one warm-up call."""
    jax.block_until_ready(run())
    start = time.perf_counter()
    jax.block_until_ready(run())
    return n / (time.perf_counter() - start)


def scores(test, detections) -> dict:
    s = nnlab.detect.coco_scores(
        test.boxes,
        test.labels,
        test.valid,
        detections,
        height=test.images.shape[1],
        width=test.images.shape[2],
        gt_masks=test.masks() if detections.masks is not None else None,
        class_names=test.class_names,
    )
    out = {"map50": s["bbox"]["map50"], "map": s["bbox"]["map"]}
    if "segm" in s:
        out["mask_ap"], out["mask_ap50"] = s["segm"]["map"], s["segm"]["map50"]
    return out


def batched(fn, images, batch: int = 50):
    """fn over images in batches, Detections concatenated (the last batch padded, then cut)."""
    parts = []
    for start in range(0, images.shape[0], batch):
        chunk = images[start : start + batch]
        pad = batch - chunk.shape[0]
        out = fn(jnp.asarray(np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])))
        n = chunk.shape[0]
        parts.append(jax.tree.map(lambda a, n=n: np.asarray(a)[:n], out))
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def two_stage(name: str, args, train, test) -> tuple[dict, object]:
    det = (nnlab.detect.mask_rcnn if name == "mask_rcnn" else nnlab.detect.faster_rcnn)(FasterRCNNConfig())
    result = fit_detector(det.as_model(), train.dataset(), train_config(args, args.epochs), args.seed)
    detect = jax.jit(det.detect)
    out = batched(lambda x: detect(result.variables, x), test.images)
    speed_x = jnp.asarray(test.images[: args.speed_images])
    row = {
        **scores(test, out),
        "train_seconds": result.train_seconds,
        "epochs": args.epochs,
        "final_train_loss": result.history[-1]["train_loss"],
        "images_per_second": images_per_second(lambda: detect(result.variables, speed_x), args.speed_images),
    }
    return row, out


def rcnn(args, train, test) -> tuple[dict, object]:
    r = nnlab.detect.rcnn(RCNNConfig())
    train = train.take(args.rcnn_train)
    start = time.perf_counter()
    proposals, valid = nnlab.detect.propose_regions(train.images)
    targets = {**train.targets(), "proposals": proposals, "proposals_valid": valid}
    data = nnlab.Dataset(train.images, targets, train.num_classes, "scenes+proposals")
    result = fit_detector(r.as_model(), data, train_config(args, args.rcnn_epochs), args.seed)
    svm_data = jax.jit(r.svm_data)
    feats, t, ok = (
        np.asarray(a)
        for a in svm_data(
            result.variables, jnp.asarray(train.images[:500]), jax.tree.map(lambda a: jnp.asarray(a[:500]), targets)
        )
    )
    feats, t = feats[ok], t[ok]
    svm = r.svm_init(jax.random.key(args.seed), jnp.asarray(feats))
    tx = optax.adam(1e-2)
    opt = tx.init(svm["params"])

    @jax.jit
    def svm_step(params, opt):
        g = jax.grad(
            lambda p: jnp.mean(r.svm_objective({"params": p}, jnp.asarray(feats), jnp.asarray(t), train=True)[0])
        )(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt

    params = svm["params"]
    for _ in range(args.svm_steps):
        params, opt = svm_step(params, opt)
    train_seconds = time.perf_counter() - start
    detect = jax.jit(r.detect)
    test_props, test_valid = nnlab.detect.propose_regions(test.images)
    parts = []
    for s in range(0, test.n, 50):
        parts.append(
            jax.tree.map(
                np.asarray,
                detect(
                    result.variables,
                    {"params": params},
                    jnp.asarray(test.images[s : s + 50]),
                    jnp.asarray(test_props[s : s + 50]),
                    jnp.asarray(test_valid[s : s + 50]),
                ),
            )
        )
    out = jax.tree.map(lambda *a: np.concatenate(a), *parts)
    speed = test.images[: args.speed_images]

    def run():  # the whole R-CNN inference: selective search, then the CNN once per proposal
        props, ok = nnlab.detect.propose_regions(speed)
        return detect(result.variables, {"params": params}, jnp.asarray(speed), jnp.asarray(props), jnp.asarray(ok))

    row = {
        **scores(test, out),
        "train_seconds": train_seconds,
        "train_scenes": train.n,
        "epochs": args.rcnn_epochs,
        "images_per_second": images_per_second(run, args.speed_images),
    }
    return row, out


def main(argv=None) -> dict:
    args = parse(argv)
    key = jax.random.key(args.seed)
    k_train, k_test = jax.random.split(key)
    train = nnlab.data.mnist_scenes(args.train, key=k_train, split="train", data_dir=args.data_dir)
    test = nnlab.data.mnist_scenes(args.test, key=k_test, split="test", data_dir=args.data_dir)
    results, shown = {}, None
    for name in args.models.split(","):
        row, out = rcnn(args, train, test) if name == "rcnn" else two_stage(name, args, train, test)
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
