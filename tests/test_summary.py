"""The cost model reproduces the lecture's worked numbers exactly."""

import flax.linen as nn
import pytest

import nnlab
from nnlab.cli import main
from nnlab.nn import InceptionBlock, conv, conv1x1, upsample


class Stack(nn.Module):
    """Layers applied one after the other (flattened first if `flatten`)."""

    layers: tuple
    flatten: bool = False

    def __call__(self, x, *, train):
        del train
        h = x.reshape(x.shape[0], -1) if self.flatten else x
        for layer in self.layers:
            h = layer(h)
        return h


def _costs(module, input_shape):
    s = nnlab.summary(module, input_shape, show=False)
    return [(c.params, c.macs) for c in s.layers], s


def test_one_5x5_neuron_on_20_channels_of_14x14():
    # lecture: 5 * 5 * 20 = 500 weights per neuron, 500 * 14 * 14 = 98,000 operations
    [(params, macs)], _ = _costs(Stack((conv(1, 5, use_bias=False),)), (14, 14, 20))
    assert (params, macs) == (500, 98_000)


@pytest.mark.parametrize(
    "reduce_to, weights, macs",
    [
        # 1x1: 20 * r weights, then 5x5: 25 * r * 20; operations: 14 * 14 times the weights
        (1, 520, 101_920),
        (2, 1_040, 203_840),
        (4, 2_080, 407_680),
    ],
)
def test_1x1_bottleneck_cuts_the_cost_of_a_5x5_convolution(reduce_to, weights, macs):
    _, direct = _costs(Stack((conv(20, 5, use_bias=False),)), (14, 14, 20))
    assert (direct.params, direct.macs) == (10_000, 1_960_000)  # the lecture's numbers
    _, reduced = _costs(Stack((conv(reduce_to, 1, use_bias=False), conv(20, 5, use_bias=False))), (14, 14, 20))
    assert (reduced.params, reduced.macs) == (weights, macs)
    assert reduced.macs / direct.macs == pytest.approx(0.052 * reduce_to)  # 2 channels: 10.4%


def test_vgg16_first_fully_connected_layer():
    [(params, macs)], _ = _costs(Stack((nn.Dense(4096),), flatten=True), (3, 3, 512))
    assert macs == 3 * 3 * 512 * 4096 == 18_874_368  # about 19 million
    assert params == 18_874_368 + 4096


@pytest.mark.parametrize(
    "model",
    [
        nnlab.nn.MLP((100, 100, 10), activation="relu"),
        nnlab.nn.mlp([100, 100, 100, 10], activation="relu", input_shape=(100,)),
    ],
)
def test_mlp_100_100_100_10_has_about_21000_parameters(model):
    costs, s = _costs(model, (100,))
    assert costs == [(10_100, 10_000), (10_100, 10_000), (1_010, 1_000)]
    assert (s.params, s.macs) == (21_210, 21_000)


def test_mnist_cnn_is_a_funnel_of_about_170000_parameters():
    s = nnlab.summary(nnlab.get_model("mnist-cnn"), show=False)
    convs = [c for c in s.layers if c.kind == "Conv"]
    assert [c.output_shape for c in convs] == [(28, 28, 32), (14, 14, 64), (5, 5, 128)]
    assert [c.macs for c in convs] == [25 * 28 * 28 * 1 * 32, 9 * 14 * 14 * 32 * 64, 9 * 5 * 5 * 64 * 128]
    assert s.params == 171_868
    assert s.params == sum(c.params for c in s.layers)


def test_inception_and_transposed_convolution_costs():
    [b1, b3r, b3, b5r, b5, pool, proj], s = _costs(Stack((InceptionBlock(4, 3, 6, 2, 5, 3),)), (8, 8, 16))
    assert b3 == (9 * 3 * 6 + 6, 9 * 64 * 3 * 6) and b5 == (25 * 2 * 5 + 5, 25 * 64 * 2 * 5)
    assert pool == (0, 0) and proj == (16 * 3 + 3, 64 * 16 * 3)
    [(params, macs)], _ = _costs(Stack((upsample(8),)), (7, 7, 16))
    assert (params, macs) == (4 * 16 * 8 + 8, 4 * 7 * 7 * 16 * 8)  # k^2 * input pixels * L0 * L1
    [(params, macs)], _ = _costs(Stack((conv1x1(8, stride=2),)), (8, 8, 4))
    assert (params, macs) == (40, 4 * 4 * 4 * 8)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model: expected an nnlab Model"):
        nnlab.summary(object())
    with pytest.raises(ValueError, match="input_shape: expected the shape of one sample"):
        nnlab.summary(nnlab.nn.MLP((3,)))


def test_cli_prints_the_table(capsys):
    assert main(["summary", "mnist-cnn"]) == 0
    out = capsys.readouterr().out
    assert "conv3_1" in out and out.strip().splitlines()[-1].split()[1:] == ["171,868", "6,161,372"]
