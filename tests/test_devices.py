"""Devices and processes: the member axis and the batch axis sharded over a mesh, and two
processes under jax.distributed, each training like one device (within float tolerance)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

_TRAIN = """
import json, jax, numpy as np, nnlab
train = nnlab.data.spirals(256, key=jax.random.key(0))
val = nnlab.data.spirals(64, key=jax.random.key(1))
base = nnlab.TrainConfig(epochs=2, batch_size=32, optimizer="heavy_ball", learning_rate=0.1)
model = nnlab.nn.mlp([2, 16, 2], activation="tanh")

def run(keys, **changes):
    r = nnlab.fit_many(model, train, keys=keys, val=val, config=base.replace(**changes))
    leaf = jax.tree.leaves(r.state.params)[0]
    host = lambda a: np.asarray(a.addressable_data(0) if not a.is_fully_addressable else a)
    return {"params": [host(a).tolist() for a in jax.tree.leaves(r.variables["params"])],
            "loss": [[h["train_loss"] for h in hs] for hs in r.histories],
            "val_error": [[h["val_error"] for h in hs] for hs in r.histories],
            "shards": len(leaf.sharding.device_set)}
"""

_FOUR_DEVICES = _TRAIN + textwrap.dedent("""
    out = {"devices": len(jax.devices())}
    for name, keys, changes in (("one", [0, 1, 2, 3], {}), ("data4", [0, 1, 2, 3], {"devices": 4, "engine": "step"}),
                                ("members4", [0, 1, 2, 3], {"devices": 4, "member_shards": 4}),
                                ("2x2", [0, 1, 2, 3], {"devices": 0, "member_shards": 2, "engine": "unroll"})):
        out[name] = run(keys, **changes)
    print(json.dumps(out))
""")


def _close(run, ref):
    for a, b in zip(run["params"], ref["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run["loss"], ref["loss"], rtol=1e-5)
    assert run["val_error"] == ref["val_error"]


def test_member_and_batch_axes_sharded_over_four_cpu_devices_train_like_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["one"]["shards"] == 1
    for name in ("data4", "members4", "2x2"):
        assert out[name]["shards"] == 4, name
        _close(out[name], out["one"])


_PROCESS = (
    textwrap.dedent("""
    import sys, jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if sys.argv[1] != "single":
        jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2, process_id=int(sys.argv[1]))
""")
    + _TRAIN
    + textwrap.dedent("""
    out = run([0, 1], devices=0) | {"processes": jax.process_count(), "devices": len(jax.devices())}
    print(json.dumps(out))
""")
)


def test_two_processes_with_jax_distributed_train_like_one():
    """Data parallel over two processes (gloo collectives on 127.0.0.1) ends with one process's parameters."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, str(i), address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    single = subprocess.run(
        [sys.executable, "-c", _PROCESS, "single"], env=env, capture_output=True, text=True, timeout=300
    )
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert single.returncode == 0, single.stderr
    ref = json.loads(single.stdout.strip().splitlines()[-1])
    assert ref["processes"] == 1 and ref["shards"] == 1
    for out in outs:
        assert out["processes"] == 2 and out["devices"] == 2 and out["shards"] == 2
        _close(out, ref)
