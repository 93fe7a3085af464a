"""Image-folder trees, ``<class>/<image>`` or ``<split>/<class>/<image>``, in a folder or tarball.

A tarball (``.tar``, ``.tar.gz``, ``.tgz``) is read as one stream, member after member, without
extracting anything to disk. Images (``.jpg``, ``.jpeg``, ``.png``) are decoded with Pillow:
grey images (mode ``L``) give one channel, everything else is converted to RGB (three); all
images of one data set must then have one shape (``DataError`` otherwise, naming an example of
each shape). Labels follow ``class_order`` when given, else the class names sorted
alphabetically. Hidden files and folders (``.*``, ``__MACOSX``) and non-image files are skipped.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from lft.data.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
DEFAULT_FIX = "fix: replace it with a complete copy"

Array = np.ndarray


def is_tarball(path: Path) -> bool:
    """Whether ``path`` is named like a tarball this module reads."""
    return path.name.endswith(TAR_SUFFIXES)


def _skipped(parts: Sequence[str]) -> bool:
    return (any(p.startswith(".") or p == "__MACOSX" for p in parts)
            or not parts[-1].lower().endswith(IMAGE_SUFFIXES))


def _files(root: Path, fix: str) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """``(relative path parts, content)`` of every image file under ``root`` (folder or tarball)."""
    if root.is_dir():
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            rel = Path(folder).relative_to(root).parts
            for name in sorted(names):
                if not _skipped(rel + (name,)):
                    try:
                        data = (Path(folder) / name).read_bytes()
                    except OSError as e:
                        raise DataError(f"{Path(folder) / name}: cannot be read "
                                        f"({e.strerror or e}); {fix}") from None
                    yield rel + (name,), data
        return
    if not root.is_file():
        raise DataError(f"{root}: no such folder or tarball; {fix}")
    try:
        with tarfile.open(root, mode="r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.isfile() and parts and not _skipped(parts):
                    f = tar.extractfile(member)
                    yield tuple(p for p in parts if p not in ("", ".")), f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{root}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                        f"{fix}") from None


def decode(data: bytes, origin: str, fix: str = DEFAULT_FIX) -> Array:
    """One image as uint8 ``(H, W, C)``: ``C = 1`` for grey images, else 3 (RGB)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "L":
                im = im.convert("RGB")
            a = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # Pillow raises many types for damaged files
        raise DataError(f"{origin}: not a readable image ({type(e).__name__}: {e}); {fix}"
                        ) from None
    return a[..., None] if a.ndim == 2 else a


def _stack(items: list[tuple[str, Array]], where: str) -> Array:
    """Stack same-shaped images, or say which shapes were mixed."""
    shapes: dict[tuple[int, ...], str] = {}
    for name, a in items:
        shapes.setdefault(a.shape, name)
    if len(shapes) > 1:
        seen = ", ".join(f"{'x'.join(map(str, s))} (e.g. {n})" for s, n in list(shapes.items())[:3])
        raise DataError(f"{where}: images of mixed shapes ({seen}); fix: resize or convert them "
                        "to one size and colour mode (all grey or all RGB)")
    return np.stack([a for _, a in items])


def _labels_for(found: dict[str, list], class_order: Sequence[str] | None,
                where: str) -> list[str]:
    """The class list: ``class_order`` (which must match the folders) or the sorted names."""
    names = sorted(found)
    if class_order is not None:
        missing = [c for c in class_order if c not in found]
        extra = [c for c in names if c not in class_order]
        if missing or extra:
            raise DataError(f"{where}: class folders {names} do not match the expected classes "
                            f"{list(class_order)} (missing {missing}, unexpected {extra}); fix: "
                            "name one folder per expected class")
        names = list(class_order)
    if len(names) < 2:
        raise DataError(f"{where}: found {len(names)} class folder(s) {names}; a classification "
                        "data set needs at least 2 classes, each a folder of images")
    return names


def _assemble(found: dict[str, list[tuple[str, Array]]], classes: list[str],
              where: str) -> tuple[Array, Array]:
    items, labels = [], []
    for label, name in enumerate(classes):
        members = sorted(found.get(name, []), key=lambda t: t[0])
        items += members
        labels += [label] * len(members)
    if not items:
        raise DataError(f"{where}: no images")
    return _stack(items, where), np.asarray(labels, dtype=np.int64)


def _collect(root: Path, depth: int, fix: str) -> dict[tuple[str, ...], list[tuple[str, Array]]]:
    """Decoded images grouped by the ``depth - 1`` folders above each file."""
    groups: dict[tuple[str, ...], list[tuple[str, Array]]] = defaultdict(list)
    prefix = None
    for parts, data in _files(root, fix):
        where = "/".join(parts)
        if len(parts) < depth:
            layout = "<split>/<class>/<image>" if depth == 3 else "<class>/<image>"
            raise DataError(f"{root}: {where} is not in the {layout} layout; fix: move it into "
                            "a class folder")
        if prefix is None:
            prefix = parts[:-depth]
        elif parts[:-depth] != prefix:
            raise DataError(f"{root}: class folders under different parents "
                            f"({'/'.join(prefix) or '.'} and {'/'.join(parts[:-depth]) or '.'}); "
                            "fix: keep all class folders side by side in one folder (a "
                            "train/ + test/ tree is read with load_image_tree)")
        groups[parts[-depth:-1]].append((where, decode(data, f"{root}: {where}", fix)))
    return groups


def read_image_folder(path: str | Path, class_order: Sequence[str] | None = None,
                      fix: str = DEFAULT_FIX) -> tuple[Array, Array, list[str]]:
    """Images ``(N, H, W, C)``, labels ``(N,)`` and class names of a ``<class>/<image>`` tree."""
    root = Path(path)
    groups = _collect(root, 2, fix)
    found = {key[0]: items for key, items in groups.items()}
    classes = _labels_for(found, class_order, str(root))
    images, labels = _assemble(found, classes, str(root))
    return images, labels, classes


def read_image_tree(path: str | Path, splits: Sequence[str] = ("train", "test"),
                    class_order: Sequence[str] | None = None, fix: str = DEFAULT_FIX,
                    ) -> dict[str, tuple[Array, Array, list[str]]]:
    """``{split: (images, labels, classes)}`` of a ``<split>/<class>/<image>`` tree.

    Every split must hold the same classes and the same image shape, so that tasks can mix
    fine-tuning images of one split with validation images of another.
    """
    root = Path(path)
    groups = _collect(root, 3, fix)
    out: dict[str, tuple[Array, Array, list[str]]] = {}
    for split in splits:
        found = {key[1]: items for key, items in groups.items() if key[0] == split}
        if not found:
            present = sorted({key[0] for key in groups})
            raise DataError(f"{root}: no {split}/ folder of class folders (found {present}); "
                            f"fix: lay the data out as {'/, '.join(splits)}/ each holding one "
                            "folder of images per class")
        where = f"{root}: {split}/"
        classes = _labels_for(found, class_order, where)
        out[split] = (*_assemble(found, classes, where), classes)
    first = splits[0]
    for split in splits[1:]:
        if out[split][2] != out[first][2]:
            raise DataError(f"{root}: {first}/ has classes {out[first][2]} but {split}/ has "
                            f"{out[split][2]}; fix: give every split the same class folders")
        if out[split][0].shape[1:] != out[first][0].shape[1:]:
            raise DataError(f"{root}: {first}/ images are {out[first][0].shape[1:]} but "
                            f"{split}/ images are {out[split][0].shape[1:]}; fix: use one "
                            "image size and colour mode throughout")
    return out
