"""tensorflow-datasets for real (the `tfds` extra): its mock data, read through its TensorFlow-free data source."""

import os

import jax
import numpy as np
import pytest

import nnlab
from nnlab.data import DataNotFoundError

if os.environ.get("CI"):
    import tensorflow_datasets as tfds  # CI installs the extra: a missing package fails loudly there
else:
    tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize(
    "name, shape, classes",
    [("mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10), ("fashion-mnist", (28, 28, 1), 10)],
)
def test_load_matches_the_records(name, shape, classes):
    with tfds.testing.mock_data(num_examples=12):
        ds = nnlab.data.load(name, "train", source="tfds")
        source = tfds.data_source(name.replace("-", "_"), split="train", download=False, try_gcs=False)
        records = [source[i] for i in range(len(source))]
    assert ds.x.shape == (12, *shape) and ds.x.dtype == np.float32
    assert ds.y.shape == (12,) and ds.y.dtype == np.int32 and ds.num_classes == classes
    assert ds.name == f"{name}-train" and 0 <= ds.y.min() and ds.y.max() < classes
    np.testing.assert_array_equal(ds.x * 255, np.stack([r["image"] for r in records]).astype(np.float32))
    np.testing.assert_array_equal(ds.y, [r["label"] for r in records])
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0


def test_test_split():
    with tfds.testing.mock_data(num_examples=5):
        test = nnlab.data.load("cifar10", "test", source="tfds")
    assert test.n == 5 and test.name == "cifar10-test"


@pytest.mark.optax_promotion
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_normalization_and_fit_accept_them(name):
    """A few Adam steps of an MLP on the per-feature normalized images lower the training loss."""
    with tfds.testing.mock_data(num_examples=32):
        train = nnlab.data.load(name, "train", source="tfds")
    norm = nnlab.data.fit_normalization(train.x)
    assert norm.mean.shape == train.x.shape[1:]
    np.testing.assert_allclose(np.asarray(norm(train.x)).mean(axis=0), 0.0, atol=1e-5)
    features = int(np.prod(train.x.shape[1:]))
    model = nnlab.nn.with_normalization(
        nnlab.nn.mlp([features, 16, train.num_classes], activation="relu", input_shape=train.x.shape[1:]), norm
    )
    config = nnlab.TrainConfig(epochs=3, batch_size=16, learning_rate=1e-2)
    result = nnlab.fit(model, train, key=jax.random.key(0), config=config)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 3 and np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_set_not_prepared_says_how_to_prepare_it(tmp_path):
    with pytest.raises(
        DataNotFoundError,
        match=r"mnist: tensorflow-datasets has no prepared 'mnist' in .*"
        r"tfds build mnist --file_format=array_record",
    ):
        nnlab.data.load("mnist", source="tfds", data_dir=tmp_path)
    assert not any(tmp_path.rglob("*.array_record*")) and not any(tmp_path.rglob("downloads"))


def test_only_image_classification_sets(tmp_path):
    with pytest.raises(ValueError, match=r"name: expected an image-classification set .* 'imdb_reviews'"):
        nnlab.data.load("imdb_reviews", source="tfds", data_dir=tmp_path)
    with pytest.raises(ValueError, match="name: expected a tensorflow-datasets set, got 'no_such_set'"):
        nnlab.data.load("no_such_set", source="tfds", data_dir=tmp_path)
