"""A user's own labelled images, in any layout the named sources use, as train/test splits.

:func:`load_user_source` reads ``PATH``, one of:

* an IDX folder laid out like MNIST's: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
  and ``t10k-...`` or ``test-...`` (each optionally ``.gz``); labels ``0..K-1`` name the classes
  ``"0"``, ``"1"``, ...;
* an image tree ``train/<class>/*.png|jpg`` + ``test/<class>/...`` (the class names are the
  folder names, sorted);
* CIFAR-style pickled batches ``data_batch_1..N`` + ``test_batch`` (32x32 RGB), the class names
  from ``batches.meta`` when present;
* a ``.tar``/``.tar.gz``/``.tgz`` of any of these.

The readers are those of the named sources (:mod:`lft.data.idx`, :mod:`lft.data.folder`,
:mod:`lft.data.cifar`), and so is the decoded-array cache (:func:`lft.data.load_source`): the
files are decoded once per change. Both splits must hold the same classes (at least two) and
images of one shape; any problem is one :class:`DataError` line naming the path and the fix.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from lft.data import cifar
from lft.data.errors import DataError
from lft.data.folder import is_tarball, read_image_tree
from lft.data.idx import gunzip, idx_pair, parse_idx, read_idx_pair
from lft.data.sources import (
    SPLITS,
    ImageSplit,
    _cache_folder,
    _cache_read,
    _cache_write,
    _check_classes,
    user_cache_dir,
)

LAYOUTS = ("an IDX folder like MNIST's (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
           "t10k-... or test-...)", "an image tree train/<class>/*.png + test/<class>/...",
           "CIFAR-style batches (data_batch_N, test_batch)", "a .tar/.tar.gz of one of these")
FIX = "fix: pass " + "; or ".join(LAYOUTS)
#: IDX file names: (split, kind) from "<train|t10k|test>-<images|labels>-idx<1|3>-ubyte[.gz]"
IDX_NAME = re.compile(r"(train|t10k|test)-(images|labels)-idx[13]-ubyte(\.gz)?")


def _idx_role(name: str) -> tuple[str, str] | None:
    m = IDX_NAME.fullmatch(name)
    return None if m is None else ("train" if m[1] == "train" else "test", m[2])


def _idx_files(names: list[str]) -> dict[tuple[str, str], str]:
    """``{(split, kind): name}`` of the IDX files among ``names`` (plain preferred over .gz)."""
    found: dict[tuple[str, str], str] = {}
    for name in sorted(names, key=lambda n: n.endswith(".gz")):
        role = _idx_role(name)
        if role is not None:
            found.setdefault(role, name)
    return found


def _check_idx(found: dict, where: Path) -> None:
    missing = [f"{'t10k' if s == 'test' else s}-{k}-idx{3 if k == 'images' else 1}-ubyte[.gz]"
               for s in SPLITS for k in ("images", "labels") if (s, k) not in found]
    if missing:
        raise DataError(f"{where}: an IDX source lacks {', '.join(missing)}; fix: put the four "
                        "files (train and t10k/test images and labels) side by side")


def _layout(path: Path) -> tuple[str, list[Path]]:
    """``(kind, paths)``: how to read ``path`` and the files that key its cache."""
    if not path.exists():
        raise DataError(f"image source {path}: no such file or folder; {FIX}")
    if path.is_file():
        if not is_tarball(path):
            raise DataError(f"image source {path}: a file, but not a .tar/.tar.gz/.tgz "
                            f"archive; {FIX}")
        return "tar", [path]
    try:
        names = [p.name for p in path.iterdir()]
    except OSError as e:
        raise DataError(f"image source {path}: cannot be read ({e.strerror or e}); {FIX}") from None
    idx = _idx_files(names)
    if idx:
        _check_idx(idx, path)
        return "idx", [path / idx[(s, k)] for s in SPLITS for k in ("images", "labels")]
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "tree", [path / s for s in SPLITS]
    if "test_batch" in names or any(cifar.USER_BATCH.fullmatch(n) for n in names):
        return "batches", [path / n for n in sorted(names) if n == cifar.META or n == "test_batch"
                           or cifar.USER_BATCH.fullmatch(n)]
    raise DataError(f"image source {path}: a folder in none of the known layouts (it holds "
                    f"{sorted(names)[:5]}); {FIX}")


def _tar_idx(path: Path) -> dict[str, tuple]:
    """The IDX files of a tarball, decoded, as ``{split: (images, labels)}``."""
    raw: dict[tuple[str, str], tuple[str, bytes]] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                role = _idx_role(PurePosixPath(member.name).name)
                if member.isfile() and role is not None and (role not in raw
                                                             or raw[role][0].endswith(".gz")):
                    raw[role] = (member.name, tar.extractfile(member).read())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                        f"{FIX}") from None
    _check_idx(raw, path)
    out = {}
    for s in SPLITS:
        arrays = []
        for k in ("images", "labels"):
            name, data = raw[(s, k)]
            where = f"{path}: {name}"
            arrays.append(parse_idx(gunzip(data, name), where, k))
        out[s] = idx_pair(*arrays, f"{path}: {raw[(s, 'images')][0]}",
                          f"{path}: {raw[(s, 'labels')][0]}")
    return out


def _tar_kind(path: Path) -> str:
    """What a tarball holds: ``"idx"``, ``"batches"`` or (by default) ``"tree"``."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            names = [PurePosixPath(m.name).name for m in tar if m.isfile()]
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                        f"{FIX}") from None
    if any(_idx_role(n) for n in names):
        return "idx"
    if any(n == "test_batch" or cifar.USER_BATCH.fullmatch(n) for n in names):
        return "batches"
    return "tree"


def _with_classes(pairs: dict[str, tuple], where: Path) -> dict[str, ImageSplit]:
    """IDX splits with classes ``"0".."K-1"``, ``K`` the largest label of both splits + 1."""
    k = max(int(labels.max()) + 1 if len(labels) else 0 for _, labels in pairs.values())
    return {s: ImageSplit(images, labels, [str(i) for i in range(k)])
            for s, (images, labels) in pairs.items()}


def _decode(path: Path, kind: str, paths: list[Path]) -> dict[str, ImageSplit]:
    if kind == "tar":
        kind = _tar_kind(path)
        if kind == "idx":
            return _with_classes(_tar_idx(path), path)
    if kind == "idx":
        return _with_classes({s: read_idx_pair(paths[2 * i], paths[2 * i + 1])
                              for i, s in enumerate(SPLITS)}, path)
    if kind == "batches":
        decoded = cifar.read_batches(path, f"fix: check the batches in {path}", any_batches=True)
    else:
        decoded = read_image_tree(path, SPLITS, fix=FIX)
    return {s: ImageSplit(*decoded[s]) for s in SPLITS}


def check_source(splits: dict[str, ImageSplit], where: object) -> dict[str, ImageSplit]:
    """Refuse a source whose splits disagree on classes or image shape, or that has fewer than
    two classes with images: one :class:`DataError` line naming ``where`` and the fix."""
    train, test = splits["train"], splits["test"]
    if train.image_shape != test.image_shape:
        raise DataError(f"{where}: train images are {'x'.join(map(str, train.image_shape))} but "
                        f"test images are {'x'.join(map(str, test.image_shape))} (HxWxC); fix: "
                        "give both splits one image size and colour mode")
    if train.classes != test.classes:
        raise DataError(f"{where}: train classes {train.classes} differ from test classes "
                        f"{test.classes}; fix: give both splits the same classes")
    for s in SPLITS:
        _check_classes(splits[s], f"{where} ({s} split)")
    return splits


def load_user_source(path: str | Path, *, cache_dir: str | Path | None = None,
                     use_cache: bool = True) -> dict[str, ImageSplit]:
    """``{"train": ImageSplit, "test": ImageSplit}`` of a user's image source at ``path``
    (an IDX folder, an image tree, CIFAR-style batches, or a tarball of one; see the module).

    Decoded arrays are cached like :func:`lft.data.load_source`'s (``cache_dir``, default the
    user cache folder; ``use_cache=False`` decodes every time and writes nothing).
    """
    path = Path(path).expanduser()
    kind, paths = _layout(path)
    if not use_cache:
        return check_source(_decode(path, kind, paths), path)
    label = "user-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    cached = _cache_folder(Path(cache_dir) if cache_dir else user_cache_dir(), label, paths)
    splits = _cache_read(cached)
    if splits is None:
        splits = check_source(_decode(path, kind, paths), path)
        _cache_write(cached, splits)
    return check_source(splits, path)


def split_digest(splits: dict[str, ImageSplit]) -> str:
    """A short hash of the splits' images, labels and classes (identifies data in memory)."""
    h = hashlib.blake2b(digest_size=8)
    for s in SPLITS:
        h.update(np.ascontiguousarray(splits[s].images).tobytes())
        h.update(np.ascontiguousarray(splits[s].labels).tobytes())
        h.update("\0".join(splits[s].classes).encode())
    return h.hexdigest()
