"""What a detector is to the rest of nnlab: pure functions over a variables pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from ..nn import Model

Variables = dict[str, Any]

# The initialisation pass runs once: compiled with XLA's backend optimisation level 0 it compiled in
# 4.6 s instead of 57 s for a small Faster R-CNN on a busy 2-core CPU (jax 0.10.2), and op by op it
# took 87 s; its random initial values come from the same integer PRNG arithmetic either way.
INIT_COMPILE = {"xla_backend_optimization_level": 0}


def compiled_init(init: Callable, key: jax.Array, images: jax.Array) -> Variables:
    """`init({'params': key}, images)` compiled on its own with INIT_COMPILE, or traced into the
    caller's program when called under a transformation (as `nnlab.fit` initialises its members
    inside one jitted, vmapped program, where compiler options cannot be given)."""
    if isinstance(key, jax.core.Tracer) or isinstance(images, jax.core.Tracer):
        return init({"params": key}, images)
    return jax.jit(init, compiler_options=INIT_COMPILE)({"params": key}, images)


def model_objective(objective: Callable[..., tuple[jax.Array, Variables]]) -> Callable[..., Any]:
    """A detector's `objective(variables, images, targets, *, train, key) -> (loss [b], updates)` as
    the trainer's `Model.objective` (no error rate); with key=None (the trainer's evaluation) the
    samples come from the fixed key(0), so a validation loss is the same number for the same weights."""

    def wrapped(
        variables: Variables, images: jax.Array, targets: dict, *, train: bool, key: jax.Array | None = None
    ) -> tuple[jax.Array, None, Variables]:
        loss, updates = objective(
            variables, images, targets, train=train, key=jax.random.key(0) if key is None else key
        )
        return loss, None, updates

    return wrapped


class Detections(NamedTuple):
    """A detector's answer for a batch of images, padded to max_detections per image.

    boxes: [batch, D, 4] float32 (x1, y1, x2, y2) in pixels
    scores: [batch, D] float32, higher is more confident
    labels: [batch, D] int32 class in [0, num_classes)
    valid: [batch, D] bool, True for real detections (sorted by score within each image)
    masks: [batch, D, m, m] float32 probability that each pixel of the box belongs to the object
      (the box divided into an m x m grid; `paste_masks` puts them onto the image), or None
    """

    boxes: jax.Array
    scores: jax.Array
    labels: jax.Array
    valid: jax.Array
    masks: jax.Array | None = None


class Detector(NamedTuple):
    """A two-stage detector as pure functions.

    init(key, images) -> variables ('params', and 'batch_stats' where the backbone has batch norm)
    objective(variables, images, targets, *, train, key) -> (per_image_loss [batch], updates):
      the training loss of each image; `targets` is a dict of fixed-shape padded arrays
      (boxes [b, K, 4], labels [b, K], valid [b, K], instances [b, h, w]); `updates` holds the
      new model-state collections (empty when train is False). Pure and jit-able.
    detect(variables, images) -> Detections
    """

    init: Callable[[jax.Array, jax.Array], Variables]
    objective: Callable[..., tuple[jax.Array, Variables]]
    detect: Callable[[Variables, jax.Array], Detections]
    name: str = "detector"

    def as_model(self) -> Model:
        """The detector as an nnlab `Model`, so that `nnlab.fit` trains it on a `Dataset` whose y is
        the targets pytree (`Scenes.dataset()`): apply(variables, images, *, train, key) ->
        (Detections, {}); objective(variables, images, targets, *, train, key) -> (per-image loss
        [b], None, updates) (no error rate: early stopping follows the validation loss). The
        trainer evaluates with key=None: the anchor and RoI samples of a validation loss then
        come from the fixed key(0), so it is the same number at every epoch for the same weights.
        """

        def apply(
            variables: Variables, images: jax.Array, *, train: bool, key: jax.Array | None = None
        ) -> tuple[Detections, Variables]:
            del train, key
            return self.detect(variables, images), {}

        # apply's outputs are Detections (a pytree of arrays) where Model annotates one array of logits
        return Model(self.init, apply, None, self.name, model_objective(self.objective))  # type: ignore[arg-type]
