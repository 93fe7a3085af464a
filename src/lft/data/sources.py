"""Named image data sets and user data as :class:`ImageSplit` s, with a decoded-array cache.

``load_source("mnist" | "cifar10", data_dir)`` finds the files under the data folder::

    <data_dir>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    <data_dir>/cifar10/  any of: cifar-10-batches-py/  cifar-10-python.tar.gz
                                 train/ + test/  (<class>/*.jpg|png)  cifar10-jpeg.tar.gz

The data folder is the ``data_dir`` argument, else ``$LFT_DATA_DIR``, else the user cache
folder (``$XDG_CACHE_HOME/lft`` or ``~/.cache/lft``), where ``lft data download`` puts files.
Decoding (gunzip, unpickle, 60 000 JPEGs) is done once: the arrays are saved as ``.npy`` files
under ``<cache>/decoded/<name>-<key>/``, ``key`` a hash of the source files' names, sizes and
modification times, so changed files are decoded afresh. Cache files are written atomically
and read with ``allow_pickle=False``; a damaged one is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lft.data import cifar
from lft.data.errors import DataError, fetch_hint
from lft.data.folder import is_tarball, read_image_folder, read_image_tree
from lft.data.idx import read_idx_pair
from lft.safefiles import atomic_path

ENV_DATA_DIR = "LFT_DATA_DIR"
SOURCES = ("mnist", "cifar10")
SPLITS = ("train", "test")
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR_LAYOUTS = ("cifar-10-batches-py/", "cifar-10-python.tar.gz", "train/ + test/",
                 "cifar10-jpeg.tar.gz")
CACHE_VERSION = 1


@dataclass(eq=False)
class ImageSplit:
    """One split of a labelled image data set.

    ``images``: uint8 ``(N, H, W, C)``; ``labels``: int64 ``(N,)`` in ``0..len(classes)-1``;
    ``classes``: the class names, in label order. Treat it as immutable (per-class indices are
    cached on it by :func:`lft.data.class_index`).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    _by_class: list[np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.classes = [str(c) for c in self.classes]
        if not isinstance(self.images, np.ndarray) or self.images.dtype != np.uint8 \
                or self.images.ndim != 4:
            what = (f"{self.images.dtype} {self.images.shape}"
                    if isinstance(self.images, np.ndarray) else type(self.images).__name__)
            raise DataError(f"ImageSplit images must be a uint8 array (N, H, W, C), got {what}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"ImageSplit has {len(self.images)} images but labels of shape "
                            f"{self.labels.shape}")
        if len(self.labels) and (self.labels.min() < 0
                                 or self.labels.max() >= len(self.classes)):
            raise DataError(f"ImageSplit labels span {self.labels.min()}..{self.labels.max()} "
                            f"but there are {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"ImageSplit({len(self)} images of {'x'.join(map(str, self.image_shape))}, "
                f"{len(self.classes)} classes)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``."""
        return tuple(self.images.shape[1:])

    def counts(self) -> np.ndarray:
        """Images per class, in label order."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def subset(self, index: np.ndarray) -> ImageSplit:
        """The images at ``index`` (same classes)."""
        return ImageSplit(self.images[index], self.labels[index], list(self.classes))


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lft``, else ``~/.cache/lft``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lft"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$LFT_DATA_DIR``, else :func:`user_cache_dir`."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    return user_cache_dir()


# ---------------------------------------------------------------- locating the source files

def _mnist_files(folder: Path) -> dict[str, Path]:
    """The four MNIST files (plain preferred over gzipped), or one error naming what is missing."""
    found, missing = {}, []
    for stems in MNIST_FILES.values():
        for stem in stems:
            path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
            if path is None:
                missing.append(f"{stem}[.gz]")
            else:
                found[stem] = path
    if missing:
        raise DataError(f"MNIST not found: {folder} lacks {', '.join(missing)}; "
                        f"{fetch_hint('mnist', folder)}")
    return found


def _cifar_source(folder: Path) -> tuple[str, list[Path]]:
    """``(reader, paths)`` of the first CIFAR-10 layout present in ``folder``."""
    if (folder / "cifar-10-batches-py").is_dir():
        return "batches", [folder / "cifar-10-batches-py"]
    if (folder / "cifar-10-python.tar.gz").is_file():
        return "batches", [folder / "cifar-10-python.tar.gz"]
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return "tree", [folder]
    if (folder / "cifar10-jpeg.tar.gz").is_file():
        return "tree", [folder / "cifar10-jpeg.tar.gz"]
    raise DataError(f"CIFAR-10 not found: {folder} holds none of {', '.join(CIFAR_LAYOUTS)}; "
                    f"{fetch_hint('cifar10', folder)}")


# ---------------------------------------------------------------------------- the cache

def _fingerprint(paths: list[Path]) -> list:
    """Names, sizes and modification times of ``paths`` (every file below a folder)."""
    entries = []
    for root in paths:
        files = [root] if root.is_file() else sorted(
            Path(d) / n for d, _, names in os.walk(root) for n in names)
        for f in files:
            st = f.stat()
            entries.append([str(f.relative_to(root.parent)), st.st_size, st.st_mtime_ns])
    return entries


def _cache_folder(cache_dir: Path, name: str, paths: list[Path]) -> Path:
    text = json.dumps([CACHE_VERSION, name, _fingerprint(paths)])
    return cache_dir / "decoded" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _cache_read(folder: Path) -> dict[str, ImageSplit] | None:
    """The cached splits, or ``None`` when absent or damaged (then they are rebuilt)."""
    try:
        classes = [str(c) for c in np.load(folder / "classes.npy", allow_pickle=False)]
        return {s: ImageSplit(np.load(folder / f"{s}-images.npy", allow_pickle=False),
                              np.load(folder / f"{s}-labels.npy", allow_pickle=False), classes)
                for s in SPLITS}
    except (OSError, ValueError, EOFError):  # missing, truncated, foreign (DataError too)
        return None


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _cache_write(folder: Path, splits: dict[str, ImageSplit]) -> None:
    """Save the splits; a cache that cannot be written only costs speed, so it warns."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for s, split in splits.items():
            _atomic_save(folder / f"{s}-images.npy", split.images)
            _atomic_save(folder / f"{s}-labels.npy", split.labels)
        _atomic_save(folder / "classes.npy", np.asarray(splits["train"].classes, dtype=str))
    except OSError as e:
        warnings.warn(f"lft: cannot cache decoded data in {folder} ({e}); every load will "
                      "decode the files again", stacklevel=3)


# ---------------------------------------------------------------------------- loading

def _locate(name: str, folder: Path) -> tuple[str, list[Path]]:
    """``(format, source paths)`` of data set ``name`` in ``folder``; the paths key the cache."""
    if name == "mnist":
        files = _mnist_files(folder)
        return "idx", [files[stem] for split in SPLITS for stem in MNIST_FILES[split]]
    kind, paths = _cifar_source(folder)
    if kind == "tree" and paths[0].is_dir():  # only the split folders, not files beside them
        paths = [paths[0] / s for s in SPLITS]
    return kind, paths


def _decode(name: str, folder: Path, kind: str, paths: list[Path]) -> dict[str, ImageSplit]:
    if kind == "idx":
        out = {}
        for i, split in enumerate(SPLITS):
            images, labels = paths[2 * i], paths[2 * i + 1]
            fix = ("fix: re-download it with `lft data download mnist` or put the official file "
                   f"at {folder}/")
            out[split] = ImageSplit(*read_idx_pair(images, labels, fix), list(MNIST_CLASSES))
        return out
    fix = ("fix: re-download it with `lft data download cifar10` or put the official "
           f"cifar-10-python.tar.gz in {folder}/")
    if kind == "batches":
        decoded = cifar.read_batches(paths[0], fix)
    else:
        decoded = cifar.read_tree(paths[0] if paths[0].is_file() else folder, fix)
    return {s: ImageSplit(*decoded[s]) for s in SPLITS}


def load_source(name: str, data_dir: str | Path | None = None, *,
                cache_dir: str | Path | None = None, use_cache: bool = True,
                ) -> dict[str, ImageSplit]:
    """``{"train": ImageSplit, "test": ImageSplit}`` of data set ``name`` ("mnist", "cifar10").

    ``cache_dir`` (default :func:`user_cache_dir`) holds the decoded arrays; ``use_cache=False``
    decodes the files every time and writes nothing.
    """
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(SOURCES)}")
    folder = resolve_data_dir(data_dir) / name
    kind, paths = _locate(name, folder)
    if not use_cache:
        return _decode(name, folder, kind, paths)
    cached = _cache_folder(Path(cache_dir) if cache_dir else user_cache_dir(), name, paths)
    splits = _cache_read(cached)
    if splits is None:
        splits = _decode(name, folder, kind, paths)
        _cache_write(cached, splits)
    return splits


def _check_classes(split: ImageSplit, where: object) -> ImageSplit:
    present = np.count_nonzero(split.counts())
    if present < 2:
        raise DataError(f"{where}: images of {present} class(es); a classification data set "
                        "needs at least 2 classes")
    return split


def load_idx_pair(images_path: str | Path, labels_path: str | Path,
                  classes: list[str] | None = None) -> ImageSplit:
    """An :class:`ImageSplit` from an IDX images file and its labels file (MNIST format).

    ``classes`` names the labels ``0..K-1``; by default they are named ``"0"``, ``"1"``, ...
    """
    images, labels = read_idx_pair(images_path, labels_path)
    if classes is None:
        classes = [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0)]
    return _check_classes(ImageSplit(images, labels, classes), labels_path)


def load_image_folder(path: str | Path, class_order: list[str] | None = None) -> ImageSplit:
    """An :class:`ImageSplit` from a ``<class>/*.jpg|png`` folder or a tarball of one.

    Labels follow ``class_order`` if given, else the sorted class names.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such folder or tarball; fix: pass a folder that holds one "
                        "folder of images per class, or a .tar.gz of it")
    if path.is_file() and not is_tarball(path):
        raise DataError(f"{path}: not a folder or a .tar/.tar.gz/.tgz archive")
    return _check_classes(ImageSplit(*read_image_folder(path, class_order)), path)


def load_image_tree(path: str | Path, class_order: list[str] | None = None,
                    ) -> dict[str, ImageSplit]:
    """``{"train": ImageSplit, "test": ImageSplit}`` from a ``train/<class>/*`` +
    ``test/<class>/*`` tree, a folder or a tarball of one (same classes in both)."""
    path = Path(path)
    if path.is_file() and not is_tarball(path):
        raise DataError(f"{path}: not a folder or a .tar/.tar.gz/.tgz archive")
    return {s: ImageSplit(*v) for s, v in read_image_tree(path, SPLITS, class_order).items()}
