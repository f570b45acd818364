"""Residual networks: "deeper networks should be better, but they learn badly, and it is not overfitting".

Plain and residual CNNs of growing depth (stem conv, three stages of 8-16-32 channels, global
average pooling, dense output; depth = 2 + 6 * blocks per stage) on Fashion-MNIST, S seeds
each. A plain block is a residual block without its shortcut, so the twins differ only in
the shortcut (and its 1x1 projections where the channels change). Reported per depth: the
training loss (running mean of the last epoch, and the final network's loss on the training
images in evaluation mode), the test error. Also the lecture's "weight decay wants the
identity": the norm of every residual branch's last convolution at initialisation and after
training with and without L2 weight decay (same seeds, members of one `fit_many`).

    python experiments/resnet_depth.py --json experiments/results/resnet_depth.json \
        --png experiments/results/resnet_depth.png            # --size small: a quick look
"""

import time

import flax.linen as nn
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import compilation_cache, finish, metadata, parser, pm, settings, spread, subset  # noqa: E402

import nnlab  # noqa: E402
from nnlab.nn import BatchNorm, GlobalAvgPool, ResidualBlock, conv  # noqa: E402

SMALL = {"blocks": [1, 2], "n_train": 1000, "n_test": 1000, "epochs": 1, "batch_size": 100}
FULL = {"blocks": [1, 3, 7], "n_train": 4000, "n_test": 10000, "epochs": 5, "batch_size": 100}
WEIGHT_DECAY = 5e-3  # the L2 lambda of the weight-decay comparison (gradient 2 * lambda * theta)


class PlainBlock(nn.Module):
    """`ResidualBlock` without the shortcut: y = F(x), two pre-activated 3x3 convolutions."""

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = conv(self.features, 3, stride=self.stride, name="conv1")(nn.relu(BatchNorm(name="pre1_bn")(x, train=train)))
        return conv(self.features, 3, name="conv2")(nn.relu(BatchNorm(name="pre2_bn")(h, train=train)))


class DepthNet(nn.Module):
    """3x3 stem (stride 2: 14x14), 3 stages of `blocks` blocks (8, 16, 32 channels; stages 2 and 3
    start with stride 2), BN-ReLU, global average pooling, dense 10. x: [b, 28, 28, 1] -> [b, 10]."""

    blocks: int
    residual: bool

    @nn.compact
    def __call__(self, x, *, train: bool):
        h = conv(8, 3, stride=2, name="stem")(x)
        block = ResidualBlock if self.residual else PlainBlock
        for s, width in enumerate((8, 16, 32)):
            for b in range(self.blocks):
                h = block(width, 2 if s > 0 and b == 0 else 1, name=f"stage{s + 1}_block{b + 1}")(h, train=train)
        h = GlobalAvgPool()(nn.relu(BatchNorm(name="head_bn")(h, train=train)))
        return nn.Dense(10, name="logits")(h)


def depth_of(blocks: int) -> int:
    return 2 + 6 * blocks


def branch_norms(params) -> list[float]:
    """||conv2 kernel|| (Frobenius) of every block in order: the scale of each residual branch's output."""
    names = sorted((k for k in params if k.startswith("stage")), key=lambda k: (int(k[5]), int(k.split("block")[1])))
    return [float(np.linalg.norm(np.asarray(params[k]["conv2"]["kernel"]))) for k in names]


def train_depth(blocks: int, residual: bool, data, cfg: dict, seeds: list[int], weight_decay: list[float]) -> dict:
    """fit_many over seeds x weight decays (members one after another: see README), test and train losses."""
    train, test = data
    model = nnlab.from_linen(
        DepthNet(blocks, residual), input_shape=(28, 28, 1), name="resnet" if residual else "plain"
    )
    config = nnlab.TrainConfig(
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        optimizer="heavy_ball",
        learning_rate=0.05,
        momentum=0.9,
        schedule="cosine",
        engine="step",
    )
    keys = [s for _ in weight_decay for s in seeds]
    wd = [w for w in weight_decay for _ in seeds]
    t0 = time.perf_counter()
    result = nnlab.fit_many(
        model, train, keys=keys, config=config, hparams={"weight_decay": wd}, max_members=1, progress=False
    )
    seconds = time.perf_counter() - t0
    members = []
    for i, (seed, lam) in enumerate(zip(keys, wd, strict=False)):
        variables = nnlab.train.member(result.variables, i)
        on_train = nnlab.evaluate(model, variables, train.x, train.y, num_classes=10)
        on_test = nnlab.evaluate(model, variables, test.x, test.y, num_classes=10)
        members.append(
            {
                "seed": seed,
                "weight_decay": lam,
                "test_error": on_test.error_rate,
                "train_loss_eval": on_train.loss,
                "train_error_eval": on_train.error_rate,
                "train_loss_curve": [h["train_loss"] for h in result.histories[i]],
                "branch_norms": branch_norms(variables["params"]) if residual else None,
            }
        )
    init_norms = None
    if residual:
        init_norms = [
            branch_norms(model.init(nnlab.train.stream(jax.random.key(s), "init"), train.x[:1])["params"])
            for s in seeds
        ]
    return {
        "blocks": blocks,
        "depth": depth_of(blocks),
        "residual": residual,
        "params": nnlab.report.count_params(nnlab.train.member(result.variables["params"], 0)),
        "train_seconds": seconds,
        "members": members,
        "init_branch_norms": init_norms,
    }


def rows_of(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        m = [x for x in r["members"] if x["weight_decay"] == 0]
        rows.append(
            {
                "net": "residual" if r["residual"] else "plain",
                "depth": r["depth"],
                "params": r["params"],
                "train_loss_last_epoch": pm([x["train_loss_curve"][-1] for x in m], digits=3),
                "train_loss_eval": pm([x["train_loss_eval"] for x in m], digits=3),
                "test_error_%": pm([x["test_error"] for x in m], 100),
                "train_s": round(r["train_seconds"], 1),
            }
        )
    return rows


def plot(runs: list[dict], path: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    depths = sorted({r["depth"] for r in runs})
    for r in runs:
        curves = np.array([x["train_loss_curve"] for x in r["members"] if x["weight_decay"] == 0])
        epochs = np.arange(1, curves.shape[1] + 1)
        c = colors[depths.index(r["depth"]) % len(colors)]
        ls = "-" if r["residual"] else "--"
        name = "residual" if r["residual"] else "plain"
        axes[0].plot(epochs, curves.mean(0), ls, color=c, label=f"{name} {r['depth']}")
        axes[0].fill_between(epochs, curves.min(0), curves.max(0), color=c, alpha=0.15)
    axes[0].set(
        xlabel="epoch",
        ylabel="training loss (running mean)",
        yscale="log",
        title="training loss: mean, band = min..max over seeds",
    )
    axes[0].legend(fontsize=7)
    for residual, marker in ((False, "s--"), (True, "o-")):
        rs = [r for r in runs if r["residual"] == residual]
        losses = [spread([x["train_loss_eval"] for x in r["members"] if x["weight_decay"] == 0]) for r in rs]
        axes[1].errorbar(
            [r["depth"] for r in rs],
            [s["mean"] for s in losses],
            yerr=[s["std"] for s in losses],
            fmt=marker,
            capsize=3,
            label="residual" if residual else "plain",
        )
    axes[1].set(
        xlabel="depth (layers)",
        ylabel="final training loss (eval mode)",
        xticks=depths,
        title="training loss after training vs depth",
    )
    axes[1].legend()
    wd_run = next((r for r in runs if r["residual"] and any(x["weight_decay"] > 0 for x in r["members"])), None)
    if wd_run is not None:
        ax = axes[2]
        init = np.array(wd_run["init_branch_norms"])
        ax.plot(np.arange(1, init.shape[1] + 1), init.mean(0), "k:", label="initialisation")
        for lam, c in ((0.0, "tab:blue"), (WEIGHT_DECAY, "tab:red")):
            norms = np.array([x["branch_norms"] for x in wd_run["members"] if x["weight_decay"] == lam])
            blocks = np.arange(1, norms.shape[1] + 1)
            ax.errorbar(
                blocks,
                norms.mean(0),
                yerr=norms.std(0, ddof=1),
                fmt="o-",
                color=c,
                capsize=2,
                label=f"trained, L2 lambda={lam:g}",
            )
        ax.set(
            xlabel="residual block",
            ylabel="||W|| of the branch's last conv",
            title=f"residual {wd_run['depth']}: branch weight norms",
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parser(__doc__).parse_args()
    cfg = settings(args, SMALL, FULL)
    started = time.perf_counter()
    compilation_cache()
    train, test = nnlab.fashion_mnist(args.data_dir)
    data = (subset(train, cfg["n_train"]), subset(test, cfg["n_test"]))
    seeds = list(range(cfg["seeds"]))
    wd_blocks = cfg["blocks"][len(cfg["blocks"]) // 2]
    runs = [
        train_depth(b, residual, data, cfg, seeds, [0.0, WEIGHT_DECAY] if residual and b == wd_blocks else [0.0])
        for residual in (False, True)
        for b in cfg["blocks"]
    ]
    print(nnlab.report.format_table(rows_of(runs)))
    wd_run = next(r for r in runs if r["residual"] and r["blocks"] == wd_blocks)
    for lam in (0.0, WEIGHT_DECAY):
        norms = np.array([x["branch_norms"] for x in wd_run["members"] if x["weight_decay"] == lam])
        print(
            f"residual {wd_run['depth']}, L2 lambda={lam:g}: branch norms (mean over seeds) "
            f"{np.round(norms.mean(0), 3).tolist()}"
        )
    print(f"  at initialisation: {np.round(np.mean(wd_run['init_branch_norms'], 0), 3).tolist()}")
    results = {"rows": rows_of(runs), "runs": runs, "weight_decay": WEIGHT_DECAY, **metadata(args, started, cfg)}
    finish(results, args, lambda path: plot(runs, path))


if __name__ == "__main__":
    main()
