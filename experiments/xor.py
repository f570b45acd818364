"""XOR, the lecture's first non-linear problem.

1. The hand-set 2-2-1 solution: hidden unit 1 computes OR, hidden unit 2 NAND, the output AND.
2. How many of N seeds learn XOR with a 2-2-1 network, sigmoid vs tanh hidden units
   (squared error, full-batch gradient descent with momentum, as in `nnlab train xor`).

    python experiments/xor.py --seeds 20 --json experiments/results/xor.json
"""

import argparse

import jax.numpy as jnp

import nnlab


def hand_set_params() -> list[dict]:
    """OR and NAND in the hidden layer, AND at the output, with steep sigmoids (weights +-20)."""
    return [
        {"W": jnp.array([[20.0, 20.0], [-20.0, -20.0]]), "s": jnp.array([-10.0, 30.0])},
        {"W": jnp.array([[20.0, 20.0]]), "s": jnp.array([-30.0])},
    ]


def seeds_that_learn(activation: str, seeds: int, epochs: int) -> list[int]:
    """Test errors (of 4) of the learned 2-2-1 network for each seed."""
    cfg = nnlab.configs.get_config("xor")
    cfg = cfg.replace(model_kwargs={"activation": activation}, train=cfg.train.replace(epochs=epochs))
    return [nnlab.run(cfg.replace(seed=s), progress=False)[0]["test_errors"] for s in range(seeds)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--json")
    args = p.parse_args()

    data = nnlab.data.xor()
    out = nnlab.nn.mlp_apply(hand_set_params(), jnp.asarray(data.x), activation="sigmoid", output_activation="sigmoid")
    rows = [
        {"x1": int(a), "x2": int(b), "target": int(t), "output": float(o[0])}
        for (a, b), t, o in zip(data.x, data.y, out, strict=False)
    ]
    print("Hand-set 2-2-1 network (hidden: OR, NAND; output: AND)")
    print(nnlab.report.format_table(rows))

    study = []
    for activation in ("sigmoid", "tanh"):
        errors = seeds_that_learn(activation, args.seeds, args.epochs)
        study.append(
            {
                "hidden": activation,
                "seeds": args.seeds,
                "learned": sum(e == 0 for e in errors),
                "errors_per_seed": errors,
            }
        )
    print(f"\nLearned 2-2-1 networks, {args.epochs} epochs of full-batch momentum GD on squared error")
    print(nnlab.report.format_table(study, ["hidden", "seeds", "learned"]))
    if args.json:
        nnlab.report.write_json(
            args.json, {"hand_set": rows, "study": study, "epochs": args.epochs, **nnlab.report.environment()}
        )


if __name__ == "__main__":
    main()
