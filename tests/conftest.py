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

# No test reaches the public mirrors (subprocesses inherit this); download tests serve their files on 127.0.0.1.
os.environ["NNLAB_OFFLINE"] = "1"
if os.environ.get("NNLAB_DATA_DIR"):  # CI passes ../shared/data: keep it valid for tests that change directory
    os.environ["NNLAB_DATA_DIR"] = str(Path(os.environ["NNLAB_DATA_DIR"]).absolute())


def mnist_dir() -> Path | None:
    """The folder with MNIST's IDX files where nnlab finds it: $NNLAB_DATA_DIR/mnist or ~/.cache/nnlab/mnist
    (where `nnlab demo` downloads it)."""
    return nnlab.data.find("mnist")


@pytest.fixture(autouse=True)
def _strict_dtype_promotion(request):
    mode = "standard" if request.node.get_closest_marker("optax_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


@pytest.fixture(scope="module")
def fast_compile():
    """XLA's backend optimisations off while a module runs (`jax_disable_most_optimizations`), for
    modules whose large programs run only a few steps, so that compiling them dominates (the
    detectors: about 3x faster to compile on CPU). Not part of the jit cache key: use it only for
    functions no other module compiles. Opt in with `pytestmark = pytest.mark.usefixtures("fast_compile")`."""
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session")
def mnist_data():
    """(train, test) MNIST; the tests that need it fail loudly in CI (which sets NNLAB_DATA_DIR)."""
    folder = mnist_dir()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("MNIST not found: CI must set NNLAB_DATA_DIR=../shared/data")
        pytest.skip("MNIST not found (run `nnlab data download mnist`, or set NNLAB_DATA_DIR)")
    os.environ.setdefault("NNLAB_DATA_DIR", str(folder.parent))  # for tests that load by name, as the CLI does
    return nnlab.mnist(folder)
