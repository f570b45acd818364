"""Max pooling's gradient on XLA:CPU: `nnlab.nn.max_pool` (a reshape and a max, for windows
that tile the map) against Flax's `nn.max_pool` (a reduce-window, whose gradient is a
select-and-scatter), in the training step of a small MNIST CNN, in alternating rounds.

    python benchmarks/pooling_cpu.py --json benchmarks/results/pooling_cpu.json
"""

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import nnlab

POOLS = {
    "reduce-window (flax nn.max_pool)": lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)),
    "reshape (nnlab.nn.max_pool)": lambda x: nnlab.nn.max_pool(x, 2),
}


class SmallCNN(nn.Module):
    """conv 5x5 32 | pool 2 | conv 5x5 64 | pool 2 | fc 96 | fc 10 (unpadded convolutions)."""

    pool: str

    @nn.compact
    def __call__(self, x):
        pool = POOLS[self.pool]
        x = pool(nn.relu(nn.Conv(32, (5, 5), padding="VALID")(x)))
        x = pool(nn.relu(nn.Conv(64, (5, 5), padding="VALID")(x)))
        x = nn.relu(nn.Dense(96)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def step_seconds(pool: str, batch: int, steps: int) -> float:
    model, tx = SmallCNN(pool), optax.adam(1e-3)
    x = jax.random.normal(jax.random.key(0), (batch, 28, 28, 1), jnp.float32)
    y = jnp.arange(batch, dtype=jnp.int32) % 10
    params = model.init(jax.random.key(1), x)["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        def loss(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = jax.block_until_ready(step(params, opt_state))  # compile
    start = time.perf_counter()
    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    jax.block_until_ready(params)
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    for r in range(args.rounds):
        ms = {name: 1000 * step_seconds(name, args.batch, args.steps) for name in POOLS}
        base, new = ms.values()
        rows.append(
            {"round": r, **{f"{name}: ms/step": round(v, 1) for name, v in ms.items()}, "speedup": round(base / new, 2)}
        )
    print(nnlab.report.format_table(rows))
    if args.json:
        nnlab.report.write_json(
            args.json, {"rows": rows, "batch": args.batch, "steps": args.steps, **nnlab.report.environment()}
        )


if __name__ == "__main__":
    main()
