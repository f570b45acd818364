"""Where a training step's time goes: a `jax.profiler` trace of `nnlab.fit`'s steady epochs,
summed per kind of XLA:CPU operation (fusion kind, dot, copy, ...) and per single operation.

Epoch 1 (with its compilation) runs untraced; the trace covers the epochs after it. Times are
per training step (an operation's total time in the trace over the traced steps) and, for single
operations, per call (an unrolled program holds one copy of an operation per step). Operations run
on two threads at once on this machine, so the column sums to more than the wall time.

    NNLAB_DATA_DIR=../shared/data python benchmarks/profile_step.py flax-cnn --n-train 6400 \\
        --json benchmarks/results/profile_flax_cnn_cpu.json
"""

import argparse
import collections
import glob
import gzip
import json
import re
import shlex
import sys
import tempfile

import jax

import nnlab


def _events(trace_dir: str) -> list[dict]:
    """The complete ('X') events of the perfetto trace that jax.profiler wrote under trace_dir."""
    (path,) = glob.glob(f"{trace_dir}/plugins/profile/*/perfetto_trace.json.gz")
    with gzip.open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X"]


def _is_operation(name: str) -> bool:
    """XLA:CPU operations (thunks), not Python frames ('$...') or the executor's own spans."""
    return not (name.startswith("$") or name.startswith("end:") or "Thunk" in name or name.startswith("np."))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="a named config, e.g. flax-cnn or mnist-mlp")
    p.add_argument("--n-train", type=int, default=6400, help="training images (the first N)")
    p.add_argument("--epochs", type=int, default=3, help="epochs in all; all but the first are traced")
    p.add_argument("--top", type=int, default=15, help="rows of single operations to show")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    kept = nnlab.train.keep_freed_memory()  # as the nnlab command does
    if args.epochs < 2:
        p.error(f"--epochs: expected at least 2 (the first is not traced), got {args.epochs}")

    run = nnlab.configs.get_config(args.config)
    train, _ = nnlab.mnist(data_dir=run.data_dir)
    train = train.take(args.n_train)
    model = nnlab.get_model(run.model, **run.model_kwargs)
    config = run.train.replace(epochs=args.epochs, patience=None)
    trace_dir = tempfile.mkdtemp(prefix="nnlab-profile-")

    def start_after_first(epoch, state, record):
        if epoch == 1:
            jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)

    result = nnlab.fit(model, train, key=0, config=config, callbacks=[start_after_first], progress=False)
    jax.profiler.stop_trace()
    steps = (args.epochs - 1) * (train.n // (config.batch_size or train.n))

    kinds, ops, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for e in _events(trace_dir):
        if _is_operation(e["name"]):
            ops[e["name"]] += e.get("dur", 0) / 1e3 / steps
            calls[e["name"]] += 1
            kinds[re.sub(r"\.\d+$", "", e["name"])] += e.get("dur", 0) / 1e3 / steps
    by_kind = [{"kind": k, "ms_per_step": v} for k, v in kinds.most_common()]
    by_op = [
        {"operation": k, "ms_per_step": v, "calls": calls[k], "ms_per_call": v * steps / calls[k]}
        for k, v in ops.most_common(args.top)
    ]
    epoch_s = result.epoch_seconds[1:]
    print(f"{args.config}: {steps} traced steps, engine {result.engine}, steady epochs {epoch_s} s")
    print(nnlab.report.format_table(by_kind[: args.top], ["kind", "ms_per_step"]))
    print(nnlab.report.format_table(by_op, ["operation", "ms_per_step", "calls", "ms_per_call"]))
    if args.json:
        out = {
            "benchmark": "profile-step",
            "config": args.config,
            "n_train": train.n,
            "engine": result.engine,
            "traced_steps": steps,
            "ms_per_step_wall": 1e3 * sum(epoch_s) / steps,
            "epoch_seconds": result.epoch_seconds,
            "by_kind": by_kind,
            "by_operation": by_op,
            "keep_freed_memory": kept,
            **nnlab.report.environment(),
            "command": "python " + shlex.join(sys.argv),
        }
        nnlab.report.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
