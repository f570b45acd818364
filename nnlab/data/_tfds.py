"""Image-classification sets of tensorflow-datasets, read through its TensorFlow-free data source.

`tfds.data_source` reads a set that is already prepared (in the `array_record` file
format) with NumPy only; nnlab never asks tfds to download or prepare (`download=False`,
`try_gcs=False`). Preparing a set (`tfds build NAME --file_format=array_record`) needs
TensorFlow, which nnlab does not install.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from ._dataset import Dataset
from ._places import DataNotFoundError


def _keys(tfds: ModuleType, name: str, info: Any) -> tuple[str, str, int]:
    """(image feature, label feature, number of classes) of an image-classification set."""
    image_key, label_key = info.supervised_keys or ("image", "label")
    features = info.features
    if (
        image_key not in features
        or label_key not in features
        or not isinstance(features[image_key], tfds.features.Image)
        or not isinstance(features[label_key], tfds.features.ClassLabel)
    ):
        raise ValueError(
            f"name: expected an image-classification set (an Image and a ClassLabel feature), "
            f"got {name!r} with features {sorted(features)}"
        )
    shape = features[image_key].shape
    if any(d is None for d in shape):
        raise ValueError(f"name: expected images of one fixed shape, got {name!r} with image shape {shape}")
    return image_key, label_key, int(features[label_key].num_classes)


def load_tfds(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The `split` of the prepared tensorflow-datasets set `name` as a `Dataset`.

    x: [n, height, width, channels] float32 in [0, 1] (uint8 pixels / 255), y: [n] int32 in
    [0, num_classes); `split` takes tfds's syntax ('train', 'test[:10%]', ...). Raises
    `DataNotFoundError` when the set is not prepared in `data_dir` (tfds's default when None).
    """
    try:
        import tensorflow_datasets as tfds  # the optional extra nnlab[tfds]
    except ImportError:
        raise ModuleNotFoundError("source='tfds' needs tensorflow-datasets: pip install 'nnlab[tfds]'") from None
    tfds_name = name.replace("-", "_")
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"name: expected a tensorflow-datasets set, got {name!r} (`tfds.list_builders()` lists them)"
        ) from None
    image_key, label_key, num_classes = _keys(tfds, tfds_name, builder.info)
    try:
        source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False, try_gcs=False)
    except (NotImplementedError, FileNotFoundError) as e:
        raise DataNotFoundError(
            f"{name}: tensorflow-datasets has no prepared {tfds_name!r} in {builder.data_dir} readable without "
            f"TensorFlow; prepare it with `tfds build {tfds_name} --file_format=array_record` (needs TensorFlow) "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    n = len(source)
    if n == 0:
        raise DataNotFoundError(f"{name}: split {split!r} of tensorflow-datasets' {tfds_name!r} is empty")
    x = np.empty((n, *builder.info.features[image_key].shape), np.uint8)
    y = np.empty(n, np.int64)
    for i in range(n):
        record = source[i]
        x[i], y[i] = record[image_key], record[label_key]
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name}/{split}: expected labels in [0, {num_classes - 1}], got [{y.min()}, {y.max()}]")
    return Dataset(x.astype(np.float32) / np.float32(255.0), y.astype(np.int32), num_classes, f"{name}-{split}")
