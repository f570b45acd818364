"""A PNG of scenes with their detections: boxes, class names, scores and masks."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

_COLOURS = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
)


def draw_detections(
    path: str | os.PathLike,
    images: ArrayLike,
    boxes: ArrayLike,
    labels: ArrayLike,
    valid: ArrayLike,
    *,
    scores: ArrayLike | None = None,
    masks: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
    gt_boxes: ArrayLike | None = None,
    gt_valid: ArrayLike | None = None,
    columns: int = 4,
    title: str | None = None,
) -> None:
    """Writes a grid of `images` [n, h, w, 1] with each valid detection's box (boxes [n, d, 4],
    labels [n, d], valid [n, d]), its class name and score (scores [n, d]) and its mask as a
    translucent overlay (masks [n, d, h, w] bool, e.g. from `paste_masks`). gt_boxes [n, k, 4]
    with gt_valid [n, k], if given, are drawn as dashed white boxes underneath.

    Uses matplotlib's object API (no pyplot), so it changes no global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    images = np.asarray(images)
    boxes, labels, valid = np.asarray(boxes), np.asarray(labels), np.asarray(valid, bool)
    n = images.shape[0]
    if boxes.shape[:2] != valid.shape or labels.shape != valid.shape or valid.shape[0] != n:
        raise ValueError(
            f"boxes, labels, valid: expected shapes [n, d, 4], [n, d], [n, d] with n = {n} images, "
            f"got {boxes.shape}, {labels.shape}, {valid.shape}"
        )
    rows = -(-n // columns)
    fig = Figure(figsize=(2.6 * min(n, columns), 2.6 * rows + (0.3 if title else 0)))
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, min(n, columns), i + 1)
        ax.imshow(images[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if gt_boxes is not None:
            for box, ok in zip(np.asarray(gt_boxes)[i], np.asarray(gt_valid, bool)[i], strict=True):
                if ok:
                    ax.add_patch(
                        Rectangle(
                            (box[0] - 0.5, box[1] - 0.5),
                            box[2] - box[0],
                            box[3] - box[1],
                            fill=False,
                            edgecolor="white",
                            linestyle="--",
                            linewidth=0.8,
                        )
                    )
        for j in np.nonzero(valid[i])[0]:
            colour = _COLOURS[int(labels[i, j]) % len(_COLOURS)]
            if masks is not None:
                overlay = np.zeros((*images.shape[1:3], 4), np.float32)
                overlay[np.asarray(masks)[i, j]] = (*_rgb(colour), 0.45)
                ax.imshow(overlay)
            x1, y1, x2, y2 = boxes[i, j]
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2))
            name = class_names[int(labels[i, j])] if class_names is not None else str(int(labels[i, j]))
            text = name if scores is None else f"{name} {float(np.asarray(scores)[i, j]):.2f}"
            ax.text(
                x1 - 0.5,
                y1 - 1.5,
                text,
                color="black",
                fontsize=6,
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.8},
            )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)


def _rgb(colour: str) -> tuple[float, float, float]:
    r, g, b = (int(colour[k : k + 2], 16) / 255 for k in (1, 3, 5))
    return r, g, b
