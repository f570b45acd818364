"""The convolution of nnlab's layers (kernel gradient as a matrix product on CPU) against
`lax.conv_general_dilated`: same values, same derivatives in every mode of differentiation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnlab
from nnlab.nn._conv import conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")
# (kernel, strides, padding): 3x3 as in the CNNs, a ResNet's 1x1 stride-2 projection, 5x5, stride 2
# on an even size ('SAME' pads unevenly), stride 3, explicit uneven pads
CASES = [
    (3, (1, 1), "SAME"),
    (3, (2, 2), "SAME"),
    (3, (1, 1), "VALID"),
    (3, (2, 1), ((2, 1), (0, 3))),
    (1, (2, 2), "VALID"),
    (5, (1, 1), "SAME"),
    (3, (3, 3), "SAME"),
]


def _data(batch=(3,), cin=3, cout=5, kernel=3, size=9):
    r = np.random.default_rng(0)
    x = jnp.asarray(r.random((*batch, size, size, cin), np.float32))
    w = jnp.asarray(r.standard_normal((*batch[:-1], kernel, kernel, cin, cout), np.float32))
    return x, w


def _loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))


def _close(a, b, rtol=1e-5):
    """Equal up to float rounding, relative to the largest entry (sums of many products)."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=rtol * float(jnp.max(jnp.abs(b))))


@pytest.mark.parametrize("kernel,strides,padding", CASES)
@pytest.mark.parametrize("size", [9, 8])
def test_values_and_derivatives_equal_lax(kernel, strides, padding, size):
    ref = functools.partial(lax.conv_general_dilated, window_strides=strides, padding=padding, dimension_numbers=NHWC)
    new = functools.partial(conv_general_dilated, window_strides=strides, padding=padding, dimension_numbers=NHWC)
    x, w = _data(kernel=kernel, size=size)
    _close(new(x, w), ref(x, w), rtol=1e-6)
    for a, b in zip(jax.grad(_loss(new), (0, 1))(x, w), jax.grad(_loss(ref), (0, 1))(x, w), strict=True):
        _close(a, b)
    _close(jax.jvp(new, (x, w), (x, w))[1], jax.jvp(ref, (x, w), (x, w))[1])

    def second(conv):  # reverse over reverse, and forward over reverse (a Hessian-vector product)
        rr = jax.grad(lambda w: jnp.sum(jax.grad(_loss(conv), 1)(x, w) ** 2))(w)
        fr = jax.jvp(jax.grad(_loss(conv), 1), (x, w), (x, w))[1]
        return rr, fr

    for a, b in zip(second(new), second(ref), strict=True):
        _close(a, b, rtol=1e-4)


def test_kernel_gradient_matches_finite_differences():
    x, w = _data(cin=2, cout=2)
    f = _loss(functools.partial(conv_general_dilated, window_strides=(1, 1), padding="SAME", dimension_numbers=NHWC))
    g = np.asarray(jax.jit(jax.grad(f, 1))(x, w))
    eps, fd = 1e-2, np.zeros_like(g)
    for idx in np.ndindex(*g.shape):
        e = np.zeros(g.shape, np.float32)
        e[idx] = eps
        fd[idx] = (float(f(x, w + e)) - float(f(x, w - e))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-2)


def test_vmapped_members_after_a_pooling_equal_lax():
    """Seeds as an axis: members [S] with their own kernels, behind a reshape max pool (as in
    nnlab's CNNs), jitted and vmapped: gradients equal lax's rule."""
    x, w = _data(batch=(2, 4), cin=4, cout=6)
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)  # [2, 4, 18, 18, 4]

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(nnlab.nn.max_pool(x, 2), w, (1, 1), "SAME", dimension_numbers=NHWC)))

    got = jax.jit(jax.vmap(jax.grad(loss(conv_general_dilated), (0, 1))))(x, w)
    want = jax.jit(jax.vmap(jax.grad(loss(lax.conv_general_dilated), (0, 1))))(x, w)
    for a, b in zip(got, want, strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rhs_dilation": (2, 2)},
        {"feature_group_count": 3},
        {"dimension_numbers": ("NCHW", "OIHW", "NCHW")},
        {"lhs_dilation": (2, 2)},
        {"preferred_element_type": jnp.float32},
    ],
)
def test_other_convolutions_take_lax_rule(kwargs):
    x, w = _data(cin=3, cout=6)
    if kwargs.get("feature_group_count"):
        w = w[:, :, :1]
    if kwargs.get("dimension_numbers"):
        x, w = jnp.transpose(x, (0, 3, 1, 2)), jnp.transpose(w, (3, 2, 0, 1))
    kwargs = {"dimension_numbers": NHWC, **kwargs}
    pads = ((1, 1), (1, 1))
    jaxpr = str(jax.make_jaxpr(lambda w: conv_general_dilated(x, w, (1, 1), pads, **kwargs))(w))
    assert "custom_jvp_call" not in jaxpr
    np.testing.assert_array_equal(
        conv_general_dilated(x, w, (1, 1), pads, **kwargs), lax.conv_general_dilated(x, w, (1, 1), pads, **kwargs)
    )


def test_nnlab_convolutions_take_this_rule_and_keep_flax_names():
    """`nnlab.nn.conv` layers and the Flax example CNN run this convolution (a custom JVP in their
    jaxpr), under Flax's own parameter names and shapes, so earlier checkpoints still load."""
    model = nnlab.get_model("flax-cnn")
    x = jnp.zeros((2, 28, 28, 1))
    variables = model.init(jax.random.key(0), x)
    assert str(jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)).count("jvp=_conv_jvp") == 2
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["Conv_0"] == {"kernel": (3, 3, 1, 32), "bias": (32,)}
    assert shapes["Conv_1"] == {"kernel": (3, 3, 32, 64), "bias": (64,)}
    layer = nnlab.nn.conv(4, 3, stride=2)
    params = layer.init(jax.random.key(1), x)
    assert "jvp=_conv_jvp" in str(jax.make_jaxpr(lambda p: layer.apply(p, x))(params))


def test_with_xla_optimisations_off_lax_rule_is_kept():
    """With `jax_disable_most_optimizations` (a debugging switch) XLA:CPU returned non-finite kernel
    gradients for this rule under vmap (the module's note): lax's own rule is used there."""
    x, w = _data()

    def jaxpr():  # a new function each time: make_jaxpr's cache does not see the config
        return str(jax.make_jaxpr(lambda w: conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC))(w))

    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        assert "custom_jvp_call" not in jaxpr()
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
    assert "custom_jvp_call" in jaxpr()
