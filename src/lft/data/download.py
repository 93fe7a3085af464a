"""Fetch the official data files, checked against their published SHA-256.

``download(name)`` puts the files where :func:`lft.data.load_source` looks for them
(``<data_dir>/<name>/``). Each file is streamed into a temporary file beside its target while
being hashed, and moved into place only if the hash matches; a mismatching download is deleted.
A file already present with the right hash is not fetched again. Without network access the
error says so and where to copy the files instead.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lft.data.errors import DataError, fetch_hint
from lft.data.sources import resolve_data_dir
from lft.safefiles import atomic_path


@dataclass(frozen=True)
class Remote:
    """One official file: where it is, what it is called locally, its SHA-256."""

    url: str
    filename: str
    sha256: str


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
#: the official files of each of lft.data.sources.SOURCES
REMOTES: dict[str, tuple[Remote, ...]] = {
    "mnist": tuple(Remote(_MNIST + f, f, h) for f, h in (
        ("train-images-idx3-ubyte.gz",
         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz",
         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz",
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz",
         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )),
    "cifar10": (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "cifar-10-python.tar.gz",
                       "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
}

def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fetch(name: str, remote: Remote, folder: Path, timeout: float) -> None:
    """Download one file atomically, or raise a :class:`DataError` that says what to do."""
    target = folder / remote.filename
    try:
        with atomic_path(target, suffix=".part") as tmp:
            h = hashlib.sha256()
            with open(tmp, "wb") as f, urllib.request.urlopen(remote.url, timeout=timeout) as r:
                while chunk := r.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != remote.sha256:
                raise DataError(f"{remote.url}: the downloaded file has SHA-256 "
                                f"{h.hexdigest()}, not the official {remote.sha256}, so it was "
                                f"deleted (a corrupted transfer or a changed mirror); fix: run "
                                f"`lft data download {name}` again, or fetch the file by hand "
                                f"into {folder}")
    except urllib.error.HTTPError as e:
        raise DataError(f"{remote.url}: the server answered {e.code} {e.reason}; "
                        f"{fetch_hint(name, folder)}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"cannot reach {remote.url} ({reason}): this machine looks offline; "
                        f"{fetch_hint(name, folder)}") from None
    except http.client.HTTPException as e:
        raise DataError(f"{remote.url}: the transfer broke off ({type(e).__name__}); fix: run "
                        f"`lft data download {name}` again") from None


def download(name: str, data_dir: str | Path | None = None, *, timeout: float = 60.0,
             progress: bool = False) -> Path:
    """Fetch data set ``name``'s official files into ``<data_dir>/<name>/``; returns that folder.

    ``data_dir`` defaults as in :func:`lft.data.load_source`. Files already there with the
    right SHA-256 are kept.
    """
    if name not in REMOTES:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(REMOTES)}")
    folder = resolve_data_dir(data_dir) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {folder} ({e.strerror or e}); fix: pass a writable "
                        "folder or set LFT_DATA_DIR") from None
    for remote in REMOTES[name]:
        target = folder / remote.filename
        if target.is_file() and sha256_file(target) == remote.sha256:
            if progress:
                print(f"{target}: present, hash checked", file=sys.stderr)
            continue
        if progress:
            print(f"downloading {remote.url} -> {target}", file=sys.stderr)
        _fetch(name, remote, folder, timeout)
    return folder
