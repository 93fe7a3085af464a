"""Image data: official data sets and user data as uint8 arrays, and few-shot episodes from them.

Layout of the data folder (``data_dir`` argument, else ``$LFT_DATA_DIR``, else
``$XDG_CACHE_HOME/lft`` or ``~/.cache/lft``)::

    mnist/    {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]      (official IDX files)
    cifar10/  cifar-10-batches-py/ | cifar-10-python.tar.gz          (official pickled batches)
              | train/<class>/*.jpg|png + test/<class>/... | cifar10-jpeg.tar.gz  (image tree)

``lft data download NAME`` (the one command for it) fetches the official files
and checks their SHA-256; offline, copy them there. :func:`load_source` returns
``{"train": ImageSplit, "test": ImageSplit}`` and caches the decoded arrays as ``.npy`` files;
:func:`load_idx_pair`, :func:`load_image_folder` and :func:`load_image_tree` read user data, and
:func:`load_user_source` a whole user source (IDX folder, image tree, CIFAR-style batches or a
tarball of one) as the same two splits.
Every problem raises :class:`DataError` (a ``ValueError``) with a one-line message naming the
file and the fix; pickled CIFAR batches are read with a restricted unpickler that runs no code.

Meta-train / meta-test convention. A task's fine-tuning images come from a source's *train*
split and its validation images from its *test* split (:func:`sample_episodes`). To keep
meta-test tasks on images that meta-training never saw, each class is cut by a fixed seeded
permutation (:func:`split_for`): meta-training tasks draw fine-tuning images from the first 80%
of each class's train images and validation images from the first half of its test images;
meta-test tasks use the remaining 20% and the other half (:func:`meta_splits` does both).
"""

from lft.data.download import download
from lft.data.episodes import (
    META_TRAIN_FRACTION,
    class_index,
    draw_per_class,
    gather_images,
    meta_splits,
    sample_episodes,
    split_for,
)
from lft.data.errors import DataError
from lft.data.sources import (
    ImageSplit,
    load_idx_pair,
    load_image_folder,
    load_image_tree,
    load_source,
    resolve_data_dir,
    user_cache_dir,
)
from lft.data.user import check_source, load_user_source

__all__ = [
    "META_TRAIN_FRACTION",
    "DataError",
    "ImageSplit",
    "check_source",
    "class_index",
    "download",
    "draw_per_class",
    "gather_images",
    "load_idx_pair",
    "load_image_folder",
    "load_image_tree",
    "load_source",
    "load_user_source",
    "meta_splits",
    "resolve_data_dir",
    "sample_episodes",
    "split_for",
    "user_cache_dir",
]
