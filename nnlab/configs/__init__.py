"""Named run configurations: `get_config(name)` returns the RunConfig the CLI trains,
`get_detection_config(name)` the DetectionConfig of a detector."""

from collections.abc import Callable

from .._run import RunConfig
from ..detect import DetectionConfig
from . import flax_cnn, mnist_cnn, mnist_detect, mnist_mask_rcnn, mnist_mlp, mnist_mlp_best, mnist_rcnn, xor

CONFIGS: dict[str, Callable[[], RunConfig]] = {
    "xor": xor.get_config,
    "mnist-mlp": mnist_mlp.get_config,
    "mnist-mlp-best": mnist_mlp_best.get_config,
    "flax-cnn": flax_cnn.get_config,
    "mnist-cnn": mnist_cnn.get_config,
}
"""Named run configs: name -> a function returning its RunConfig (`nnlab train|seeds|sweep NAME`)."""

DETECTION_CONFIGS: dict[str, Callable[[], DetectionConfig]] = {
    "mnist-detect": mnist_detect.get_config,
    "mnist-mask-rcnn": mnist_mask_rcnn.get_config,
    "mnist-rcnn": mnist_rcnn.get_config,
}
"""Named detection runs: name -> a function returning its DetectionConfig (`nnlab train NAME`)."""


def get_config(name: str) -> RunConfig:
    """The default RunConfig of a named run (see CONFIGS)."""
    if name not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {name!r}")
    return CONFIGS[name]()


def get_detection_config(name: str) -> DetectionConfig:
    """The default DetectionConfig of a named detection run (see DETECTION_CONFIGS)."""
    if name not in DETECTION_CONFIGS:
        raise ValueError(f"config: expected one of {sorted(DETECTION_CONFIGS)}, got {name!r}")
    return DETECTION_CONFIGS[name]()
