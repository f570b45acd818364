"""keep_freed_memory, in real processes: the training step of the Flax example CNN, whose
temporaries are allocated anew on every call, page-faults thousands of times per step with
glibc's defaults and next to never once freed memory is kept."""

import platform
import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
import jax, jax.numpy as jnp, optax
import nnlab
kept = nnlab.train.keep_freed_memory() if sys.argv[1] == "keep" else False
model, tx = nnlab.get_model("flax-cnn"), optax.sgd(0.1)
state = nnlab.train.init_state(model, tx, jnp.zeros((1, 28, 28, 1)), key=jax.random.key(0))
step = jax.jit(nnlab.train.make_train_step(nnlab.train.model_objective(model, "softmax_cross_entropy"), tx))
x, y = jnp.ones((64, 28, 28, 1)), jnp.arange(64) % 10
for _ in range(10):  # compile, and let the heap grow to the step's peak
    state, metrics = step(state, x, y)
metrics.block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    state, metrics = step(state, x, y)
    metrics.block_until_ready()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def _faults_per_call(mode):
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_kept_memory_stops_the_page_faults_of_a_repeated_program():
    kept, system = _faults_per_call("system")  # about 11,000 per step on the machine it was written on
    assert not kept
    kept, faults = _faults_per_call("keep")
    assert kept and faults <= max(system // 20, 50), (faults, system)
