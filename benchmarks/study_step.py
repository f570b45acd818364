"""One training step of the ResNet study (`experiments/resnet_depth.py`), timed on whatever device
JAX has: the same code and the same batch on a CPU and a GPU give the lecture's "a GPU is easily
more than 20x faster" as a ratio.

The residual network of depth 20 (stages 8-16-32, batch 100, SGD heavy ball), S members as one
vmapped program (`fit_many`, per-step engine on every device, so both run the same compiled
step); seconds per step = the median of epochs 2.. (compiled) divided by the epoch's steps.

    python benchmarks/study_step.py --json benchmarks/results/study_step_cpu.json
    python benchmarks/study_step.py --json benchmarks/results/study_step_gpu.json   # on the GPU machine
"""

import argparse
import statistics
import sys
from pathlib import Path

import nnlab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from resnet_depth import DepthNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, default=3, help="blocks per stage (depth 2 + 6 * blocks)")
    p.add_argument("--members", type=int, default=1, help="members S trained as one vmapped program")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--data-dir")
    p.add_argument("--json")
    args = p.parse_args()
    train, _ = nnlab.fashion_mnist(args.data_dir)
    batch = 100
    model = nnlab.from_linen(DepthNet(args.blocks, True), input_shape=(28, 28, 1))
    config = nnlab.TrainConfig(
        epochs=args.epochs, batch_size=batch, optimizer="heavy_ball", learning_rate=0.05, engine="step"
    )
    result = nnlab.fit_many(
        model, train.take(args.steps * batch), keys=list(range(args.members)), config=config, progress=False
    )
    epochs = [h["seconds"] for h in result.histories[0]]
    step = statistics.median(epochs[1:]) / args.steps
    env = nnlab.report.environment()
    print(
        f"depth {2 + 6 * args.blocks}, {args.members} member(s), batch {batch}: {1000 * step:.2f} ms per step "
        f"(first epoch with compilation {epochs[0]:.1f} s) on {env['device']}"
    )
    if args.json:
        nnlab.report.write_json(
            args.json, {"seconds_per_step": step, "epoch_seconds": epochs, "args": vars(args), **env}
        )


if __name__ == "__main__":
    main()
