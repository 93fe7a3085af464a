"""CIFAR-10: the official python batches (pickles, read safely) or an image-folder tree.

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/{data_batch_1..5,
test_batch}``: protocol-2 pickles of a dict with ``b"data"``, a uint8 numpy array
``(10000, 3072)`` whose rows are channel-major (1024 red, 1024 green, 1024 blue values, each
32x32 row by row), and ``b"labels"``, a list of ints in 0..9.

Pickles can run arbitrary code on load, so they are never read with ``pickle.load``. A
restricted unpickler resolves only these globals and refuses every other one with a
:class:`DataError`, before anything is called:

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` (the same
  function under numpy 1 and 2 names), ``numpy.ndarray`` and ``numpy.dtype``: together they
  rebuild an array from a shape, a dtype description and a byte string. They allocate and copy
  memory, parse a dtype string, and call nothing the pickle names (the only class they can be
  given is ``numpy.ndarray`` itself, as no other class can be resolved);
* ``_codecs.encode``, replaced by a function that only turns a ``str`` into ``bytes`` with the
  Latin-1 codec and refuses any other codec: that is how protocol-2 pickles written by
  Python 3 store ``bytes``. (The official files, written by Python 2, do not need it.)

None of these can import a module, open a file or run a command, which is what a malicious
pickle needs (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...). The loaded object is
then checked to be exactly the dict of a batch, with ``data`` a uint8 array (never an object
array) of the right shape and labels in range.
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from lft.data.errors import DataError
from lft.data.folder import read_image_tree

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
BATCH_DIR = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
DEFAULT_FIX = "fix: replace it with the official cifar-10-python.tar.gz"
META = "batches.meta"
USER_BATCH = re.compile(r"data_batch_[0-9]+")


def _latin1(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; no other codec."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise DataError(f"a pickle asked for codec {encoding!r}; only latin-1 is allowed")
    return text.encode("latin-1", errors)


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild only dicts, lists, bytes, str, ints and uint8 arrays."""

    def __init__(self, file, origin: str, fix: str = DEFAULT_FIX):
        super().__init__(file, encoding="bytes")
        self.origin, self.fix = origin, fix

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.origin}: refused to unpickle: it asks for {module}.{name}, "
                            "which a CIFAR-10 batch never contains (a foreign or crafted file; "
                            f"nothing was executed); {self.fix}") from None

    def persistent_load(self, pid):
        raise DataError(f"{self.origin}: refused to unpickle: it holds a persistent id, which a "
                        f"CIFAR-10 batch never contains; {self.fix}")


def _unpickle(data: bytes, origin: str, fix: str):
    try:
        return BatchUnpickler(io.BytesIO(data), origin, fix).load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle can fail in many ways
        raise DataError(f"{origin}: not a readable CIFAR-10 batch ({type(e).__name__}: {e}); "
                        f"{fix}") from None


def load_batch(data: bytes, origin: str, fix: str = DEFAULT_FIX,
               n_classes: int = len(CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` int64 (in ``0..n_classes-1``) of one
    pickled batch."""
    obj = _unpickle(data, origin, fix)

    def bad(why: str) -> DataError:
        return DataError(f"{origin}: not a CIFAR-10 batch ({why}); {fix}")

    if not isinstance(obj, dict):
        raise bad(f"holds a {type(obj).__name__}, not a dict")
    rows = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 \
            or rows.shape[1] != 3 * 32 * 32:
        what = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows)
        raise bad(f"'data' must be a uint8 array (n, 3072), got {what}")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(rows):
        raise bad(f"'labels' must be a list of {len(rows)} ints")
    if not all(type(v) is int for v in labels) and not (
            isinstance(labels, np.ndarray) and labels.dtype.kind in "iu"):
        raise bad("'labels' holds something other than ints")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise bad(f"labels outside 0..{n_classes - 1}")
    images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-major rows -> HWC
    return np.ascontiguousarray(images), labels


def _assemble(files: dict[str, bytes], where: str, fix: str,
              any_batches: bool = False) -> dict[str, tuple]:
    batches, classes = BATCHES, list(CLASSES)
    if any_batches:  # CIFAR-style: data_batch_1..N, test_batch, class names in batches.meta
        train = sorted((n for n in files if USER_BATCH.fullmatch(n)), key=lambda n: int(n[11:]))
        batches = {"train": tuple(train) or ("data_batch_1",), "test": ("test_batch",)}
        if META in files:
            meta = _unpickle(files[META], f"{where}: {META}", fix)
            names = meta.get(b"label_names", meta.get("label_names")) \
                if isinstance(meta, dict) else None
            if not isinstance(names, list) or not all(isinstance(c, bytes | str) for c in names):
                raise DataError(f"{where}: {META} holds no list 'label_names'; {fix}")
            classes = [c.decode() if isinstance(c, bytes) else c for c in names]
    out = {}
    for split, names in batches.items():
        missing = [n for n in names if n not in files]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}; {fix}")
        parts = [load_batch(files[n], f"{where}: {n}", fix, len(classes)) for n in names]
        out[split] = (np.concatenate([p[0] for p in parts]),
                      np.concatenate([p[1] for p in parts]), classes)
    return out


def read_batches(path: str | Path, fix: str = DEFAULT_FIX,
                 any_batches: bool = False) -> dict[str, tuple]:
    """``{"train"|"test": (images, labels, classes)}`` from ``cifar-10-batches-py/`` or the
    official ``cifar-10-python.tar.gz``; with ``any_batches``, from any CIFAR-style folder or
    tarball (``data_batch_1..N``, ``test_batch``, optional ``batches.meta`` naming the classes,
    else the ten CIFAR-10 names), a user's own 32x32 RGB data."""
    path = Path(path)
    wanted = {n for names in BATCHES.values() for n in names}

    def is_wanted(name: str) -> bool:
        return name in wanted or (any_batches and (name == META or bool(USER_BATCH.fullmatch(
            name))))

    files: dict[str, bytes] = {}
    if path.is_dir():
        for n in sorted(p.name for p in path.iterdir() if is_wanted(p.name)):
            if (path / n).is_file():
                try:
                    files[n] = (path / n).read_bytes()
                except OSError as e:
                    raise DataError(f"{path / n}: cannot be read ({e.strerror or e}); {fix}"
                                    ) from None
        return _assemble(files, str(path), fix, any_batches)
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and is_wanted(name):
                    files[name] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; {fix}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                        f"{fix}") from None
    return _assemble(files, str(path), fix, any_batches)


def read_tree(path: str | Path, fix: str = DEFAULT_FIX) -> dict[str, tuple]:
    """``{"train"|"test": (images, labels, classes)}`` from a CIFAR-10 image-folder tree (folder
    or tarball), labels in the canonical class order."""
    return read_image_tree(path, ("train", "test"), CLASSES, fix)
