"""Strict JAX settings for the whole suite: silent promotions and reused keys are errors.

Dtype promotion is strict in every test except those marked `optax_promotion`: Optax's
Adam bias correction computes `decay ** count` (a Python float to an int32 power),
which strict promotion rejects inside Optax itself.
"""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_debug_key_reuse", True)

import nnlab  # noqa: E402  (imported after the strict settings so any import-time work runs under them)


def mnist_dir() -> Path | None:
    """The folder with MNIST's IDX files, from NNLAB_DATA_DIR or the repository's ../shared/data."""
    candidates = [Path(os.environ["NNLAB_DATA_DIR"]) / "mnist"] if os.environ.get("NNLAB_DATA_DIR") else []
    candidates.append(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist")
    return next((p for p in candidates if (p / "train-images-idx3-ubyte.gz").is_file()), None)


@pytest.fixture(autouse=True)
def _strict_dtype_promotion(request):
    mode = "standard" if request.node.get_closest_marker("optax_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


@pytest.fixture(scope="session")
def mnist_data():
    """(train, test) MNIST; the tests that need it fail loudly in CI (which sets NNLAB_DATA_DIR)."""
    folder = mnist_dir()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("MNIST not found: CI must set NNLAB_DATA_DIR=../shared/data")
        pytest.skip("MNIST IDX files not found (set NNLAB_DATA_DIR)")
    os.environ.setdefault("NNLAB_DATA_DIR", str(folder.parent))  # for tests that load by name, as the CLI does
    return nnlab.mnist(folder)
