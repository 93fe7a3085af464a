"""The image-data layer: real data sets, every kind of bad data, safe unpickling, episodes."""

import gzip
import importlib
import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lft.data import (
    DataError,
    ImageSplit,
    class_index,
    download,
    load_idx_pair,
    load_image_folder,
    load_image_tree,
    load_source,
    meta_splits,
    resolve_data_dir,
    sample_episodes,
    split_for,
)
from lft.data.idx import read_idx

# the module (``lft.data.download`` the attribute is the function of the same name)
download_module = importlib.import_module("lft.data.download")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_MEAN = 0.1307
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache or data folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("LFT_DATA_DIR", raising=False)


def one_line_error(excinfo) -> str:
    """The message of a DataError, checked to be a single line."""
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------- synthetic files

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train=30, n_test=20, gz=True, seed=0):
    """Four small IDX files in the MNIST layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            data = idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        arrays[prefix] = (images, labels)
    return arrays


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, "PNG")
    return buf.getvalue()


def write_tree(root: Path, classes, n=3, shape=(4, 4, 3), splits=("train", "test"), seed=0):
    """A ``<split>/<class>/NNN.png`` tree (or ``<class>/...`` when ``splits`` is empty)."""
    rng = np.random.default_rng(seed)
    for split in splits or ("",):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i:03d}.png").write_bytes(png(rng.integers(0, 256, shape, np.uint8)))
    return root


def tar_gz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for p in sorted(folder.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(folder)), recursive=False)
    return out


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """HWC images -> official channel-major rows ``(n, 3072)``."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_cifar_batches(folder: Path, n=4, seed=0):
    """A fake ``cifar-10-batches-py/``, protocol-2 pickles as in the official files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": cifar_rows(images), b"labels": labels,
                         b"filenames": [b"a.png"] * n}, f, protocol=2)
        out["test" if name == "test_batch" else "train"].append((images, labels))
    return {s: (np.concatenate([i for i, _ in v]), np.concatenate([la for _, la in v]))
            for s, v in out.items()}


# ----------------------------------------------------------------------------- real data

def need_shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.skip(f"offline copy {path} is absent (the shared data folder is not mounted)")
    return SHARED


def test_mnist_real(tmp_path):
    data = load_source("mnist", need_shared("mnist"), cache_dir=tmp_path)
    tr, te = data["train"], data["test"]
    assert tr.images.shape == (60000, 28, 28, 1) and te.images.shape == (10000, 28, 28, 1)
    assert tr.images.dtype == np.uint8 and tr.labels.dtype == np.int64
    assert tr.classes == [str(d) for d in range(10)]
    assert abs(tr.images.mean() / 255 - MNIST_MEAN) < 0.002
    assert tr.counts().tolist() == MNIST_TRAIN_COUNTS


def test_cifar10_real_and_cache_is_fast(tmp_path):
    root = need_shared("cifar10/cifar10-jpeg.tar.gz")
    t0 = time.perf_counter()
    first = load_source("cifar10", root, cache_dir=tmp_path)
    t1 = time.perf_counter()
    second = load_source("cifar10", root, cache_dir=tmp_path)
    t2 = time.perf_counter()
    for split, n in (("train", 50000), ("test", 10000)):
        a, b = first[split], second[split]
        assert a.images.shape == (n, 32, 32, 3)
        assert a.counts().tolist() == [n // 10] * 10
        assert a.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                             "horse", "ship", "truck"]
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
        assert a.classes == b.classes
    assert (t2 - t1) < (t1 - t0) / 5, f"cached load {t2 - t1:.2f}s vs first {t1 - t0:.2f}s"


# ----------------------------------------------------------- synthetic sources, cache, dirs

@pytest.mark.parametrize("gz", [True, False])
def test_mnist_layout_round_trip(tmp_path, gz):
    arrays = write_mnist(tmp_path / "data" / "mnist", gz=gz)
    data = load_source("mnist", tmp_path / "data", use_cache=False)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[prefix]
        assert np.array_equal(data[split].images[..., 0], images)
        assert np.array_equal(data[split].labels, labels)


def test_data_dir_resolution(tmp_path, monkeypatch):
    assert resolve_data_dir() == tmp_path / "xdg-cache" / "lft"
    monkeypatch.setenv("LFT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    write_mnist(tmp_path / "env" / "mnist")
    assert len(load_source("mnist")["train"]) == 30  # found through LFT_DATA_DIR


def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path):
    write_mnist(tmp_path / "data" / "mnist")
    cache = tmp_path / "cache"
    first = load_source("mnist", tmp_path / "data", cache_dir=cache)
    [folder] = list((cache / "decoded").iterdir())
    assert folder.name.startswith("mnist-")
    target = folder / "train-images.npy"
    target.write_bytes(target.read_bytes()[:100])                    # truncated
    np.save(folder / "test-labels.npy", np.array([{"x": 1}], dtype=object),
            allow_pickle=True)                                        # a pickle: never loaded
    again = load_source("mnist", tmp_path / "data", cache_dir=cache)
    for s in ("train", "test"):
        assert np.array_equal(first[s].images, again[s].images)
        assert np.array_equal(first[s].labels, again[s].labels)
    assert np.load(target, allow_pickle=False).shape == (30, 28, 28, 1)  # rewritten
    assert np.load(folder / "test-labels.npy", allow_pickle=False).dtype == np.int64


def test_changed_source_files_get_a_new_cache_entry(tmp_path):
    write_mnist(tmp_path / "data" / "mnist", seed=0)
    cache = tmp_path / "cache"
    a = load_source("mnist", tmp_path / "data", cache_dir=cache)
    arrays = write_mnist(tmp_path / "data" / "mnist", n_train=40, seed=1)
    b = load_source("mnist", tmp_path / "data", cache_dir=cache)
    assert len(a["train"]) == 30 and len(b["train"]) == 40
    assert np.array_equal(b["train"].images[..., 0], arrays["train"][0])


# -------------------------------------------------------------------------------- bad data

def test_missing_data_set_names_files_folder_and_both_fixes(tmp_path):
    with pytest.raises(DataError) as e:
        load_source("mnist", tmp_path)
    msg = one_line_error(e)
    for part in ("train-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]",
                 str(tmp_path / "mnist"), "lft data download mnist", "LFT_DATA_DIR"):
        assert part in msg
    with pytest.raises(DataError) as e:
        load_source("cifar10", tmp_path)
    msg = one_line_error(e)
    for part in ("cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz", str(tmp_path / "cifar10"),
                 "lft data download cifar10", "LFT_DATA_DIR"):
        assert part in msg


def test_one_missing_mnist_file_is_named(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\];"):
        load_source("mnist", tmp_path)


def test_truncated_gzip(tmp_path):
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError) as e:
        load_source("mnist", tmp_path, use_cache=False)
    msg = one_line_error(e)
    assert str(path) in msg and "truncated or corrupt gzip" in msg
    assert "lft data download mnist" in msg


def test_wrong_magic_number(tmp_path):
    write_mnist(tmp_path / "mnist")
    labels = (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(labels)  # swapped file
    with pytest.raises(DataError) as e:
        load_source("mnist", tmp_path, use_cache=False)
    assert "magic number 0x00000801" in one_line_error(e)
    assert "IDX images file" in str(e.value)


def test_length_disagrees_with_header(tmp_path):
    path = tmp_path / "images.idx"
    data = idx_bytes(np.zeros((5, 28, 28), np.uint8), 0x803)
    path.write_bytes(data[:-28 * 28])  # header says 5 images, holds 4
    with pytest.raises(DataError) as e:
        read_idx(path, "images")
    assert "5x28x28 = 3920 bytes" in one_line_error(e) and "holds 3136" in str(e.value)


def test_images_and_labels_count_mismatch(tmp_path):
    (tmp_path / "i").write_bytes(idx_bytes(np.zeros((5, 4, 4), np.uint8), 0x803))
    (tmp_path / "l").write_bytes(idx_bytes(np.arange(4) % 2, 0x801))
    with pytest.raises(DataError) as e:
        load_idx_pair(tmp_path / "i", tmp_path / "l")
    msg = one_line_error(e)
    assert "holds 5 images" in msg and "holds 4 labels" in msg and "not a pair" in msg
    (tmp_path / "l").write_bytes(idx_bytes(np.arange(5) % 2, 0x801))
    split = load_idx_pair(tmp_path / "i", tmp_path / "l")
    assert split.images.shape == (5, 4, 4, 1) and split.classes == ["0", "1"]


def test_corrupt_tarball(tmp_path):
    tree = write_tree(tmp_path / "tree", ["a", "b"], n=20, shape=(8, 8, 3))
    (tmp_path / "cifar10").mkdir()
    good = tar_gz(tree, tmp_path / "cifar10" / "cifar10-jpeg.tar.gz")
    assert len(load_image_tree(good)["train"]) == 40
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError) as e:
        load_image_tree(good)
    msg = one_line_error(e)
    assert str(good) in msg and "truncated or corrupt archive" in msg
    with pytest.raises(DataError, match="truncated or corrupt archive.*lft data download"):
        load_source("cifar10", tmp_path, use_cache=False)


def test_image_folder_needs_two_classes(tmp_path):
    write_tree(tmp_path / "one", ["cat"], splits=())
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path / "one")
    assert "needs at least 2 classes" in one_line_error(e)


def test_image_folder_with_mixed_shapes(tmp_path):
    write_tree(tmp_path / "f", ["a"], shape=(4, 4, 3), splits=())
    write_tree(tmp_path / "f", ["b"], shape=(5, 4, 3), splits=())
    with pytest.raises(DataError) as e:
        load_image_folder(tmp_path / "f")
    msg = one_line_error(e)
    assert "mixed shapes" in msg and "4x4x3" in msg and "5x4x3" in msg


def test_image_folder_and_its_tarball_agree(tmp_path):
    write_tree(tmp_path / "f", ["zebra", "ant", "mole"], n=2, shape=(6, 5, 1), splits=())
    a = load_image_folder(tmp_path / "f")
    b = load_image_folder(tar_gz(tmp_path / "f", tmp_path / "f.tar.gz"))
    assert a.classes == ["ant", "mole", "zebra"] and a.image_shape == (6, 5, 1)
    assert a.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    expected = np.asarray(Image.open(tmp_path / "f" / "mole" / "001.png"))
    assert np.array_equal(a.images[3, ..., 0], expected)
    c = load_image_folder(tmp_path / "f", class_order=["zebra", "mole", "ant"])
    assert c.labels.tolist() == [0, 0, 1, 1, 2, 2] and np.array_equal(c.images[4:], a.images[:2])


class Boom:
    """A pickle that would run a shell command, or print, when loaded by pickle.load."""

    def __init__(self, call):
        self.call = call

    def __reduce__(self):
        return self.call


@pytest.mark.parametrize("kind", ["system", "print"])
def test_malicious_cifar_pickle_is_refused_not_executed(tmp_path, capsys, kind):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar_batches(batches)
    marker = tmp_path / "pwned"
    call = (os.system, (f"touch {marker}",)) if kind == "system" else (print, ("PWNED",))
    with open(batches / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Boom(call), b"labels": [0]}, f, protocol=2)
    with pytest.raises(DataError) as e:
        load_source("cifar10", tmp_path, use_cache=False)
    msg = one_line_error(e)
    assert "refused to unpickle" in msg and "data_batch_1" in msg and "nothing was executed" in msg
    assert not marker.exists() and "PWNED" not in capsys.readouterr().out


def test_official_cifar_batches_round_trip(tmp_path):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    expected = write_cifar_batches(batches)
    data = load_source("cifar10", tmp_path, use_cache=False)
    for split, n in (("train", 20), ("test", 4)):
        assert data[split].images.shape == (n, 32, 32, 3)
        assert np.array_equal(data[split].images, expected[split][0])  # HWC, not CHW
        assert data[split].labels.tolist() == expected[split][1].tolist()
    assert data["train"].classes[0] == "airplane" and data["train"].classes[9] == "truck"
    # the official tarball of the same batches reads the same
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    (tmp_path / "other" / "cifar10").mkdir(parents=True)
    (tmp_path / "cifar-10-python.tar.gz").rename(
        tmp_path / "other" / "cifar10" / "cifar-10-python.tar.gz")
    again = load_source("cifar10", tmp_path / "other", use_cache=False)
    assert np.array_equal(again["train"].images, data["train"].images)


def test_cifar_batch_with_wrong_content(tmp_path):
    batches = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar_batches(batches)
    with open(batches / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match="test_batch: not a CIFAR-10 batch.*uint8"):
        load_source("cifar10", tmp_path, use_cache=False)


# -------------------------------------------------------------------------------- download

def fake_remote(monkeypatch, url, sha):
    remote = download_module.Remote(url, "train-images-idx3-ubyte.gz", sha)
    monkeypatch.setitem(download_module.REMOTES, "mnist", (remote,))


def test_download_offline_says_so(tmp_path, monkeypatch):
    fake_remote(monkeypatch, "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz", "0" * 64)
    with pytest.raises(DataError) as e:
        download("mnist", tmp_path, timeout=5)
    msg = one_line_error(e)
    assert "offline" in msg and str(tmp_path / "mnist") in msg and "LFT_DATA_DIR" in msg
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial file left


def test_download_checks_sha256(tmp_path, monkeypatch):
    import hashlib

    src = tmp_path / "served.gz"
    src.write_bytes(b"official bytes")
    sha = hashlib.sha256(b"official bytes").hexdigest()
    fake_remote(monkeypatch, src.as_uri(), "f" * 64)
    with pytest.raises(DataError) as e:
        download("mnist", tmp_path / "data")
    assert "SHA-256" in one_line_error(e) and "deleted" in str(e.value)
    assert list((tmp_path / "data" / "mnist").iterdir()) == []
    fake_remote(monkeypatch, src.as_uri(), sha)
    folder = download("mnist", tmp_path / "data")
    assert (folder / "train-images-idx3-ubyte.gz").read_bytes() == b"official bytes"
    src.unlink()  # a file already present with the right hash is not fetched again
    download("mnist", tmp_path / "data")


# -------------------------------------------------------------------------------- episodes

def coded_split(n_classes, per_class, split_id):
    """A split whose image ``i`` stores ``i`` and ``split_id`` in its first pixel."""
    ids = np.arange(n_classes * per_class)
    images = np.zeros((len(ids), 3, 2, 3), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1], images[:, 0, 0, 2] = ids // 256, ids % 256, split_id
    return ImageSplit(images, ids % n_classes, [f"c{k}" for k in range(n_classes)])


def decode_ids(x):
    """``(T, N, C, H, W)`` -> image ids ``(T, N)`` and split ids."""
    px = (x[:, :, :, 0, 0] * 255).round().long()
    return px[..., 0] * 256 + px[..., 1], px[..., 2]


def test_episode_shapes_labels_and_sources():
    tr, val = coded_split(6, 40, split_id=1), coded_split(6, 20, split_id=2)
    g = torch.Generator().manual_seed(0)
    x_tr, y_tr, x_val, y_val = sample_episodes(tr, val, 7, ways=3, shots=4, queries=5, generator=g)
    assert x_tr.shape == (7, 12, 3, 3, 2) and x_val.shape == (7, 15, 3, 3, 2)
    assert x_tr.dtype == torch.float32 and 0 <= x_tr.min() and x_tr.max() <= 1
    assert y_tr.dtype == torch.int64 and y_tr.shape == (7, 12) and y_val.shape == (7, 15)
    ids_tr, src_tr = decode_ids(x_tr)
    ids_val, src_val = decode_ids(x_val)
    assert (src_tr == 1).all() and (src_val == 2).all()  # each set from its own split
    for t in range(7):
        assert len(set(ids_tr[t].tolist())) == 12 and len(set(ids_val[t].tolist())) == 15
        orig_tr = torch.from_numpy(tr.labels)[ids_tr[t]]
        orig_val = torch.from_numpy(val.labels)[ids_val[t]]
        ways_tr = [set(orig_tr[y_tr[t] == w].tolist()) for w in range(3)]
        ways_val = [set(orig_val[y_val[t] == w].tolist()) for w in range(3)]
        assert all(len(s) == 1 for s in ways_tr) and ways_tr == ways_val  # one class per way
        assert len(set.union(*ways_tr)) == 3                               # distinct classes
    assert sorted(y_tr[0].tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_episodes_draw_without_replacement():
    tr, val = coded_split(5, 4, 1), coded_split(5, 3, 2)  # shots/queries = whole classes
    x_tr, y_tr, x_val, y_val = sample_episodes(tr, val, 20, ways=5, shots=4, queries=3,
                                               generator=torch.Generator().manual_seed(1))
    ids_tr, _ = decode_ids(x_tr)
    ids_val, _ = decode_ids(x_val)
    for t in range(20):
        assert sorted(ids_tr[t].tolist()) == list(range(20))
        assert sorted(ids_val[t].tolist()) == list(range(15))


def test_episodes_are_deterministic_and_vary():
    tr, val = coded_split(5, 30, 1), coded_split(5, 10, 2)

    def draw(seed):
        return sample_episodes(tr, val, 4, ways=2, shots=3, queries=4,
                               generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(3), draw(3), draw(4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_episode_errors():
    tr, val = coded_split(4, 6, 1), coded_split(4, 3, 2)
    with pytest.raises(DataError, match="shots=7 but class 'c0' has only 6"):
        sample_episodes(tr, val, 2, ways=2, shots=7, queries=1)
    with pytest.raises(DataError, match="queries=4 .* use queries <= 3"):
        sample_episodes(tr, val, 2, ways=2, shots=2, queries=4)
    with pytest.raises(DataError, match="5-way tasks need 5 classes but the data set has 4"):
        sample_episodes(tr, val, 2, ways=5, shots=1, queries=1)
    with pytest.raises(DataError, match="different classes"):
        sample_episodes(tr, coded_split(3, 3, 2), 2, ways=2, shots=1, queries=1)


def test_class_index():
    split = coded_split(3, 4, 0)
    index = class_index(split)
    assert [i.tolist() for i in index] == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
    assert class_index(split) is index  # computed once


def test_split_for_parts_are_disjoint_and_cover():
    split = coded_split(4, 25, 0)
    train = split_for(split, "meta-train", 0.8, seed=0)
    test = split_for(split, "meta-test", 0.8, seed=0)
    ids_a = set((train.images[:, 0, 0, 0].astype(int) * 256 + train.images[:, 0, 0, 1]).tolist())
    ids_b = set((test.images[:, 0, 0, 0].astype(int) * 256 + test.images[:, 0, 0, 1]).tolist())
    assert not ids_a & ids_b and ids_a | ids_b == set(range(100))
    assert train.counts().tolist() == [20] * 4 and test.counts().tolist() == [5] * 4
    assert train.classes == split.classes
    assert np.array_equal(train.labels, np.arange(100)[sorted(ids_a)] % 4)  # labels kept
    again = split_for(split, "meta-train", 0.8, seed=0)
    assert np.array_equal(again.images, train.images)
    other = split_for(split, "meta-train", 0.8, seed=1)
    assert not np.array_equal(other.images, train.images)
    with pytest.raises(DataError, match="part must be one of"):
        split_for(split, "validation", 0.8)


def test_meta_splits_keep_meta_test_images_unseen():
    source = {"train": coded_split(3, 10, 1), "test": coded_split(3, 4, 2)}
    (mtr_tr, mtr_val), (mte_tr, mte_val) = (meta_splits(source, p) for p in
                                            ("meta-train", "meta-test"))
    assert len(mtr_tr) == 24 and len(mte_tr) == 6 and len(mtr_val) == 6 and len(mte_val) == 6

    def ids(s):
        return set((s.images[:, 0, 0, 0].astype(int) * 256 + s.images[:, 0, 0, 1]).tolist())

    assert not ids(mtr_tr) & ids(mte_tr) and not ids(mtr_val) & ids(mte_val)
