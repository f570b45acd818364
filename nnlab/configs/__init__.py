"""Named run configurations: `get_config(name)` returns the RunConfig the CLI trains."""

from collections.abc import Callable

from .._run import RunConfig
from . import flax_cnn, mnist_cnn, mnist_mlp, mnist_mlp_best, xor

CONFIGS: dict[str, Callable[[], RunConfig]] = {
    "xor": xor.get_config,
    "mnist-mlp": mnist_mlp.get_config,
    "mnist-mlp-best": mnist_mlp_best.get_config,
    "flax-cnn": flax_cnn.get_config,
    "mnist-cnn": mnist_cnn.get_config,
}
"""Named run configs: name -> a function returning its RunConfig (`nnlab train NAME`)."""


def get_config(name: str) -> RunConfig:
    """The default RunConfig of a named run (see CONFIGS)."""
    if name not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {name!r}")
    return CONFIGS[name]()
