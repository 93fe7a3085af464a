"""IDX files (the MNIST format), plain or gzipped, read with every header field checked.

An IDX file is a 4-byte magic number ``0x0000TTDD`` (``TT`` the element type, ``0x08`` for
uint8; ``DD`` the number of dimensions), one big-endian uint32 per dimension, then the elements
in C order. Only the two kinds MNIST uses are accepted: images (``0x00000803``: uint8, 3-D,
``(N, rows, cols)``) and labels (``0x00000801``: uint8, 1-D, ``(N,)``). Gzip is recognised by
its content, not its name, and a truncated gzip stream is reported like any other damage: one
:class:`DataError` naming the file and the fix, never a raw ``zlib``/``EOFError`` traceback.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from lft.data.errors import DataError

MAGIC = {"images": 0x00000803, "labels": 0x00000801}
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_FIX = "fix: check the path, or replace the file with a complete, unmodified copy"


def read_bytes(path: str | Path, fix: str = DEFAULT_FIX) -> bytes:
    """The content of ``path``, gunzipped if it is gzip data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; {fix}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e}); {fix}") from None
    return gunzip(raw, path, fix)


def gunzip(raw: bytes, path: str | Path, fix: str = DEFAULT_FIX) -> bytes:
    """``raw`` gunzipped if it is gzip data (recognised by content), else unchanged."""
    path = Path(path)
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: truncated or corrupt gzip data ({e}); {fix}") from None
    if path.suffix == ".gz":
        raise DataError(f"{path}: named .gz but does not hold gzip data; {fix}")
    return raw


def read_idx(path: str | Path, kind: str, fix: str = DEFAULT_FIX) -> np.ndarray:
    """The uint8 array of an IDX file of ``kind`` "images" ``(N, H, W)`` or "labels" ``(N,)``."""
    return parse_idx(read_bytes(path, fix), path, kind, fix)


def parse_idx(raw: bytes, path: object, kind: str, fix: str = DEFAULT_FIX) -> np.ndarray:
    """:func:`read_idx` of content already read (gunzipped), e.g. a tarball member; ``path``
    names it in errors."""
    if kind not in MAGIC:
        raise ValueError(f"kind must be one of {sorted(MAGIC)}, got {kind!r}")
    want = MAGIC[kind]
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header; {fix}")
    magic = int.from_bytes(raw[:4], "big")
    if magic != want:
        raise DataError(f"{path}: magic number 0x{magic:08x} is not that of an IDX {kind} file "
                        f"(0x{want:08x}), so this is not the file it is named as; {fix}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: the file ends inside its IDX header; {fix}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    need, have = math.prod(dims), len(raw) - header
    if have != need:
        shape = "x".join(map(str, dims))
        raise DataError(f"{path}: its header says {shape} = {need} bytes of data but it holds "
                        f"{have} (truncated or corrupt); {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: str | Path, labels_path: str | Path,
                  fix: str = DEFAULT_FIX) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W, 1)`` uint8 and labels ``(N,)`` int64 of a matching pair of IDX files."""
    return idx_pair(read_idx(images_path, "images", fix), read_idx(labels_path, "labels", fix),
                    images_path, labels_path, fix)


def idx_pair(images: np.ndarray, labels: np.ndarray, images_path: object, labels_path: object,
             fix: str = DEFAULT_FIX) -> tuple[np.ndarray, np.ndarray]:
    """Decoded IDX images and labels checked to be a pair: ``(N, H, W, 1)``, ``(N,)`` int64."""
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels: the two files are not a pair; {fix}")
    return images[..., None], labels.astype(np.int64)
