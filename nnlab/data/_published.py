"""The published files of the data sets nnlab downloads: names, sizes, SHA-256 and mirrors.

SHA-256 and sizes are those of the `.gz` files as their authors published them, taken from
the url checksum files that tensorflow-datasets 4.9.10 ships (`tensorflow_datasets/
url_checksums/mnist.txt` and `fashion_mnist.txt`). For MNIST's two label files they agree
with this project's reference copy, whose README records them as byte-identical to the
originals (their MD5s are also the ones torchvision checks). Mirrors are tried in order;
every file from any of them must match the SHA-256 below.
"""

from __future__ import annotations

from typing import NamedTuple


class PublishedFile(NamedTuple):
    """One published file: its name, size in bytes and SHA-256 (lowercase hex)."""

    name: str
    size: int
    sha256: str


class PublishedSet(NamedTuple):
    """A data set's four IDX files and the base URLs of the public mirrors that serve them."""

    files: tuple[PublishedFile, ...]
    mirrors: tuple[str, ...]


PUBLISHED = {
    "mnist": PublishedSet(
        files=(
            PublishedFile(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            PublishedFile(
                "train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            PublishedFile(
                "t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            PublishedFile(
                "t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        ),
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",  # tensorflow-datasets' source
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's first mirror
            "http://yann.lecun.com/exdb/mnist/",  # the original site
        ),
    ),
    "fashion-mnist": PublishedSet(
        files=(
            PublishedFile(
                "train-images-idx3-ubyte.gz",
                26421880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            PublishedFile(
                "train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            PublishedFile(
                "t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            PublishedFile(
                "t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # the authors' (tfds, torchvision)
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras' copy
        ),
    ),
}
"""Published data sets nnlab can download: name -> files, SHA-256 sums and mirrors."""
