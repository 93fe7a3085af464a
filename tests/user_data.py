"""Small user image sources written on the fly (not MNIST, not CIFAR-10), for the tests of
``--source``: 3 classes of noisy random 12x12 grey patterns as IDX files, an image tree, a
tarball, and CIFAR-style pickled batches of 32x32 RGB patterns."""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def patterns(n_per_class: int, classes: int = 3, size: int = 12, channels: int = 1,
             seed: int = 0, noise: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, size, size, channels) uint8, labels (N,))``: each class a fixed random
    pattern (the same for every seed-derived split) plus per-image Gaussian noise."""
    templates = np.random.default_rng(1234).integers(0, 256, (classes, size, size, channels))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    images = templates[labels] + rng.normal(0, noise, (len(labels), size, size, channels))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """One IDX file (MNIST format): images ``(N, H, W)`` or labels ``(N,)`` as uint8."""
    kind = 0x0803 if array.ndim == 3 else 0x0801
    data = struct.pack(">I", kind) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def idx_source(folder: Path, train: int = 50, test: int = 60, classes: int = 3,
               size: int = 12, test_size: int | None = None, gz: bool = False) -> Path:
    """An IDX folder laid out like MNIST's (``test-`` names, not ``t10k-``)."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, seed, s in (("train", train, 1, size), ("test", test, 2, test_size or size)):
        images, labels = patterns(n, classes, s, seed=seed)
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images[..., 0], gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
    return folder


def tree_source(folder: Path, train: int = 20, test: int = 20, classes: int = 3) -> Path:
    """An image tree ``train/<class>/*.png`` + ``test/<class>/*.png`` of grey patterns."""
    from PIL import Image

    for split, n, seed in (("train", train, 1), ("test", test, 2)):
        images, labels = patterns(n, classes, seed=seed)
        for i, (im, y) in enumerate(zip(images, labels)):
            d = folder / split / f"class{y}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im[..., 0]).save(d / f"{i:04d}.png")
    return folder


def tarball(folder: Path, out: Path) -> Path:
    """``folder``'s content as a .tar.gz (members relative to ``folder``)."""
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(folder)), recursive=False)
    return out


def cifar_style_source(folder: Path, train: int = 20, test: int = 20, classes: int = 3) -> Path:
    """CIFAR-style batches: ``data_batch_1``, ``data_batch_2``, ``test_batch`` and
    ``batches.meta`` (class names), 32x32 RGB, protocol-2 pickles."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, obj) -> None:
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))

    images, labels = patterns(train, classes, 32, 3, seed=1)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    half = len(rows) // 2
    dump("data_batch_1", {b"data": rows[:half], b"labels": labels[:half].tolist()})
    dump("data_batch_2", {b"data": rows[half:], b"labels": labels[half:].tolist()})
    images, labels = patterns(test, classes, 32, 3, seed=2)
    dump("test_batch", {b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
                        b"labels": labels.tolist()})
    dump("batches.meta", {b"label_names": [f"kind{i}".encode() for i in range(classes)]})
    return folder
