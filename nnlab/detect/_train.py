"""Training and scoring one detector on scenes, as `nnlab train mnist-detect` and experiments/detection.py do it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._checks import check_positive, check_seed
from ..data import Dataset, Scenes
from ..nn import Model
from ..train import FitResult, TrainConfig, fit, init_state, make_tx
from ._coco import coco_scores
from ._detector import Detections
from ._faster_rcnn import FasterRCNNConfig, faster_rcnn, mask_rcnn
from ._proposals import propose_regions
from ._rcnn import RCNNConfig, rcnn

DETECTORS = ("faster_rcnn", "mask_rcnn", "rcnn")
"""The detectors `train_and_score` trains, by name."""

SVM_SCENES = 500  # R-CNN's SVMs train on the CNN features of the first 500 training scenes' regions
EVAL_BATCH = 50  # test scenes per detection call


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """A detection run (`nnlab train mnist-detect`): which detector, on how many scenes, trained how.

    model: 'faster_rcnn', 'mask_rcnn' or 'rcnn'
    train: nnlab.fit's settings (for R-CNN: of its CNN, fine-tuned on selective-search proposals)
    train_scenes / test_scenes: 128 x 128 scenes of 1-5 MNIST training / test digits
      (`nnlab.data.mnist_scenes`, from the keys split off `seed`)
    svm_steps: Adam steps (learning rate 1e-2) of R-CNN's linear SVMs, full batch
    speed_images: test scenes whose inference is timed for images per second
    seed: scenes, initialization and data order (an integer in [0, 2**32 - 1])
    """

    model: str
    train: TrainConfig = TrainConfig()
    train_scenes: int = 3000
    test_scenes: int = 1000
    svm_steps: int = 300
    speed_images: int = 16
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.model not in DETECTORS:
            raise ValueError(f"model: expected one of {DETECTORS}, got {self.model!r}")
        for name in ("train_scenes", "test_scenes", "svm_steps", "speed_images"):
            check_positive(getattr(self, name), name=name, integer=True)
        check_seed(self.seed)

    @property
    def dataset(self) -> str:
        """The data a detection run trains on (for its results)."""
        return "mnist-scenes"

    def replace(self, **changes: Any) -> DetectionConfig:
        """A copy with `changes` (field=value) applied and checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON data (what --json records)."""
        return dataclasses.asdict(self)


def _fit(model: Model, data: Dataset, config: TrainConfig, seed: int, progress: bool | None) -> FitResult:
    """nnlab.fit from a state initialised outside it (the detectors' init compiles fast on its own)."""
    tx = make_tx(config, data.n // (config.batch_size or data.n))
    state = init_state(model, tx, jnp.asarray(data.x[:1]), key=jax.random.key(seed))
    return fit(model, data, key=seed, config=config, state=state, tx=tx, progress=progress)


def _images_per_second(run: Callable[[], Any], n: int) -> float:
    """Images per second of `run()` (which processes n images), after one warm-up call."""
    jax.block_until_ready(run())
    start = time.perf_counter()
    jax.block_until_ready(run())
    return n / (time.perf_counter() - start)


def _scores(test: Scenes, detections: Detections) -> dict[str, float]:
    """COCOeval's box mAP@0.5 and mAP@[.5:.95] (and mask AP, AP@0.5 when there are masks)."""
    s = coco_scores(
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


def _batched(fn: Callable[..., Detections], *arrays: np.ndarray) -> Detections:
    """fn over the arrays (first axis: scenes) in batches of EVAL_BATCH, Detections concatenated on the
    host (the last batch padded with zeros, then cut), so that fn compiles for one shape."""
    n = arrays[0].shape[0]
    batch = min(EVAL_BATCH, n)
    parts = []
    for start in range(0, n, batch):
        chunks = [a[start : start + batch] for a in arrays]
        size = chunks[0].shape[0]
        padded = [np.concatenate([c, np.zeros((batch - size, *c.shape[1:]), c.dtype)]) for c in chunks]
        out = fn(*(jnp.asarray(p) for p in padded))
        parts.append(jax.tree.map(lambda a, size=size: np.asarray(a)[:size], out))
    return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def _two_stage(
    name: str, train: Scenes, test: Scenes, config: TrainConfig, seed: int, speed_images: int, progress: bool | None
) -> tuple[dict[str, Any], Detections]:
    det = (mask_rcnn if name == "mask_rcnn" else faster_rcnn)(FasterRCNNConfig())
    result = _fit(det.as_model(), train.dataset(), config, seed, progress)
    detect = jax.jit(det.detect)
    out = _batched(lambda x: detect(result.variables, x), test.images)
    speed_x = jnp.asarray(test.images[:speed_images])
    row = {
        **_scores(test, out),
        "train_seconds": result.train_seconds,
        "final_train_loss": result.history[-1]["train_loss"],
        "images_per_second": _images_per_second(lambda: detect(result.variables, speed_x), speed_x.shape[0]),
    }
    return row, out


def _rcnn(
    train: Scenes,
    test: Scenes,
    config: TrainConfig,
    seed: int,
    svm_steps: int,
    speed_images: int,
    progress: bool | None,
) -> tuple[dict[str, Any], Detections]:
    r = rcnn(RCNNConfig())
    start = time.perf_counter()
    proposals, valid = propose_regions(train.images)
    targets = {**train.targets(), "proposals": proposals, "proposals_valid": valid}
    data = Dataset(train.images, targets, train.num_classes, "scenes+proposals")  # type: ignore[arg-type]
    result = _fit(r.as_model(), data, config, seed, progress)
    svm_data = jax.jit(r.svm_data)
    few = jax.tree.map(lambda a: jnp.asarray(a[:SVM_SCENES]), targets)
    all_feats, all_t, ok = (
        np.asarray(a) for a in svm_data(result.variables, jnp.asarray(train.images[:SVM_SCENES]), few)
    )
    feats, t = jnp.asarray(all_feats[ok]), jnp.asarray(all_t[ok])
    tx = optax.adam(1e-2)
    params = r.svm_init(jax.random.key(seed), feats)["params"]
    opt = tx.init(params)

    @jax.jit
    def svm_step(params: Any, opt: Any) -> tuple[Any, Any]:
        g = jax.grad(lambda p: jnp.mean(r.svm_objective({"params": p}, feats, t, train=True)[0]))(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt

    for _ in range(svm_steps):
        params, opt = svm_step(params, opt)
    train_seconds = time.perf_counter() - start
    detect = jax.jit(r.detect)
    test_props, test_valid = propose_regions(test.images)
    out = _batched(
        lambda x, p, v: detect(result.variables, {"params": params}, x, p, v), test.images, test_props, test_valid
    )
    speed = test.images[:speed_images]

    def run() -> Detections:  # the whole R-CNN inference: selective search, then the CNN once per proposal
        props, ok = propose_regions(speed)
        return detect(result.variables, {"params": params}, jnp.asarray(speed), jnp.asarray(props), jnp.asarray(ok))

    row = {
        **_scores(test, out),
        "train_seconds": train_seconds,
        "images_per_second": _images_per_second(run, len(speed)),
    }
    return row, out


def train_and_score(
    model: str,
    train: Scenes,
    test: Scenes,
    *,
    config: TrainConfig,
    seed: int = 0,
    svm_steps: int = 300,
    speed_images: int = 16,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Detections]:
    """Trains the detector `model` (one of DETECTORS, default hyperparameters) on `train` and scores
    it on `test` with pycocotools' COCOeval; returns (row, the test Detections).

    Faster R-CNN and Mask R-CNN train through `nnlab.fit` with `config`; R-CNN fine-tunes its CNN
    on selective-search proposals the same way, then trains its per-class linear SVMs with Adam
    for `svm_steps` full-batch steps. row: map50 (box mAP@0.5), map (mAP@[.5:.95]), mask_ap and
    mask_ap50 (Mask R-CNN), train_seconds, epochs, train_scenes, final_train_loss (two-stage), and
    images_per_second: inference on the first `speed_images` test scenes, timed after one warm-up
    call (for R-CNN including its selective search on the host)."""
    if model not in DETECTORS:
        raise ValueError(f"model: expected one of {DETECTORS}, got {model!r}")
    check_positive(speed_images, name="speed_images", integer=True)
    if model == "rcnn":
        row, out = _rcnn(train, test, config, seed, svm_steps, speed_images, progress)
    else:
        row, out = _two_stage(model, train, test, config, seed, speed_images, progress)
    return {**row, "epochs": config.epochs, "train_scenes": train.n}, out
