import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab
from nnlab.train import init_state

TRAIN = nnlab.data.spirals(200, key=jax.random.key(1))
MODEL = nnlab.nn.mlp([2, 16, 3], activation="tanh", input_shape=(2,))
CONFIG = nnlab.TrainConfig(epochs=4, batch_size=20, learning_rate=1e-2, weight_decay=1e-2, l1=1e-3)
HEAD_ONLY = [{"W": False, "s": False}, {"W": True, "s": True}]  # layer 0 frozen, layer 1 (the head) trained


def _frozen_fit(**kwargs) -> tuple[nnlab.train.TrainState, nnlab.FitResult]:
    tx = nnlab.optim.freeze(nnlab.optim.adam(1e-2), HEAD_ONLY)
    start = init_state(MODEL, tx, jnp.zeros((1, 2)), key=jax.random.key(0))
    return start, nnlab.fit(MODEL, TRAIN, key=jax.random.key(0), config=CONFIG, state=start, tx=tx, **kwargs)


@pytest.mark.optax_promotion
def test_frozen_parameters_stay_bit_identical_while_the_head_trains():
    start, result = _frozen_fit()
    before, after = start.params, result.variables["params"]
    for name in ("W", "s"):
        np.testing.assert_array_equal(after[0][name], before[0][name])  # despite L2 / L1 terms in the loss
        assert not np.any(np.asarray(after[1][name]) == np.asarray(before[1][name]))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.optax_promotion
def test_frozen_run_resumes_bitwise(tmp_path):
    _, whole = _frozen_fit()
    ckpt = nnlab.Checkpointer(tmp_path, every=2)
    _frozen_fit(checkpointer=ckpt)
    shutil.rmtree(ckpt.path(4))  # as if killed after epoch 2's checkpoint
    _, resumed = _frozen_fit(checkpointer=ckpt, resume=True)
    assert nnlab.report.params_sha256(resumed.variables["params"]) == nnlab.report.params_sha256(
        whole.variables["params"]
    )
    assert ckpt.epochs() == [2, 4]
