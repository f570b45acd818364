import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnlab


def test_confusion_matrix_and_misclassified():
    pred, true = np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 2, 1])
    c = nnlab.confusion_matrix(pred, true, 3)
    np.testing.assert_array_equal(c, [[1, 0, 0], [0, 1, 0], [0, 1, 2]])
    assert nnlab.evaluation.misclassified(pred, true).tolist() == [1]
    assert nnlab.evaluation.error_rate(pred, true) == pytest.approx(0.2) and nnlab.evaluation.accuracy(
        pred, true
    ) == pytest.approx(0.8)


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"predictions: expected labels in \[0, 2\]"):
        nnlab.confusion_matrix(np.array([3]), np.array([0]), 3)


def test_predict_labels_single_output_threshold():
    assert nnlab.predict_labels(jnp.array([[0.4], [0.6]])).tolist() == [0, 1]
    assert nnlab.predict_labels(jnp.array([[0.1, 0.7, 0.2]])).tolist() == [1]


@pytest.mark.parametrize("batch_size", [1, 7, 64, 1000])
def test_evaluate_exact_on_ragged_batches(batch_size):
    model = nnlab.nn.mlp([3, 4, 5], activation="tanh")
    x = np.asarray(jax.random.normal(jax.random.key(0), (50, 3)))
    y = np.arange(50) % 5
    v = model.init(jax.random.key(1), x[:1])
    ev = nnlab.evaluate(model, v, x, y, num_classes=5, batch_size=batch_size)
    out = nnlab.nn.mlp_apply(v["params"], jnp.asarray(x), activation="tanh")
    np.testing.assert_allclose(ev.loss, nnlab.losses.softmax_cross_entropy(out, jnp.asarray(y)), rtol=1e-5)
    # evaluate's jitted batches and this eager pass are different programs: their argmax may
    # differ only where the two largest outputs tie up to float rounding
    top2 = np.sort(np.asarray(out), axis=1)[:, -2:]
    near_tie = top2[:, 1] - top2[:, 0] < 1e-5
    assert np.all((ev.predictions == np.argmax(out, 1)) | near_tie)
    assert ev.n == 50 and abs(ev.errors - int(np.sum(np.argmax(out, 1) != y))) <= int(near_tie.sum())
    np.testing.assert_allclose(nnlab.predict(model, v, x, batch_size=batch_size), out, rtol=1e-5, atol=1e-6)
