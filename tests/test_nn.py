import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import nnlab
from nnlab.nn import prelu, relu, sigmoid, softmax, tanh

U = jnp.array([-2.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "fn, expected",
    [
        (sigmoid, [1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-1)]),
        (tanh, [(np.e**-2 - np.e**2) / (np.e**-2 + np.e**2), 0.0, (np.e - 1 / np.e) / (np.e + 1 / np.e)]),
        (relu, [0.0, 0.0, 1.0]),
        (lambda u: prelu(u, jnp.float32(0.25)), [-0.5, 0.0, 1.0]),
        (softmax, np.exp([-2.0, 0.0, 1.0]) / np.exp([-2.0, 0.0, 1.0]).sum()),
    ],
)
def test_activations_by_hand(fn, expected):
    np.testing.assert_allclose(fn(U), expected, rtol=1e-6)


def test_softmax_is_stable():
    np.testing.assert_allclose(softmax(jnp.array([1000.0, 1000.0])), [0.5, 0.5])


def test_prelu_slope_gradient():
    g = jax.grad(lambda a: jnp.sum(prelu(U, a)))(jnp.float32(0.1))
    np.testing.assert_allclose(g, -2.0)  # d/da of a * (-2) for the one negative input


def test_dense_is_sigma_of_wx_plus_s():
    p = {"W": jnp.array([[1.0, 2.0], [-1.0, 0.5]]), "s": jnp.array([0.5, -1.0])}
    x = jnp.array([[1.0, 1.0]])
    np.testing.assert_allclose(nnlab.nn.dense_apply(p, x, activation="relu"), [[3.5, 0.0]])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "prelu"])
def test_mlp_gradient_against_finite_differences(activation):
    params = nnlab.nn.mlp_init(jax.random.key(0), [3, 4, 2], activation=activation)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jnp.array([0, 1, 1, 0, 1])

    def loss(p):
        return nnlab.losses.softmax_cross_entropy(nnlab.nn.mlp_apply(p, x, activation=activation), y)

    with jax.enable_x64():
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x64 = x.astype(jnp.float64)
        check_grads(
            lambda p: nnlab.losses.softmax_cross_entropy(nnlab.nn.mlp_apply(p, x64, activation=activation), y),
            (p64,),
            order=1,
            modes=["rev"],
            eps=1e-6,
            atol=1e-7,
            rtol=1e-7,
        )
    assert jnp.isfinite(loss(params))


def test_parameter_count_of_lecture_mlp():
    v = nnlab.get_model("mnist-mlp").init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert nnlab.report.count_params(v["params"]) == 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10 == 89_610


@pytest.mark.parametrize("activation", ["relu", "prelu", "sigmoid"])
def test_linen_mlp_equals_functional_mlp(activation):
    x = jax.random.normal(jax.random.key(0), (4, 6))
    func = nnlab.nn.mlp_init(jax.random.key(1), [6, 5, 3], activation=activation)
    model = nnlab.from_linen(nnlab.nn.MLP([5, 3], activation=activation))
    v = model.init(jax.random.key(2), x)
    p = v["params"]
    p["dense0"] = {"kernel": func[0]["W"].T, "bias": func[0]["s"]}
    p["dense1"] = {"kernel": func[1]["W"].T, "bias": func[1]["s"]}
    if activation == "prelu":
        assert set(p["prelu0"]) == {"a"}
    out, updates = model.apply(v, x, train=True)
    assert updates == {}
    np.testing.assert_allclose(out, nnlab.nn.mlp_apply(func, x, activation=activation), rtol=1e-5, atol=1e-6)


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation: expected one of"):
        nnlab.nn.mlp([2, 1], activation="swish")
    with pytest.raises(ValueError, match=r"sizes\[0\]: expected 784 inputs"):
        nnlab.nn.mlp([100, 10], input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="model: expected one of"):
        nnlab.get_model("resnet-9000")
