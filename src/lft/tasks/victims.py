"""Victim classifiers: LeNet-5 per image source, trained once, saved as safetensors, reused.

``lft victims train mnist|cifar10`` (or :func:`train_victim`) trains a seeded LeNet-5 on the
source's train split, reports its clean test accuracy and saves it to
``<cache>/victims/lenet5-<source>[-quick].safetensors`` (``<cache>`` is the user cache folder
that also holds decoded data, see :func:`lft.data.user_cache_dir`). The file holds the weights
and, in its JSON header, a record of the data, the training settings and the accuracy
(also written beside it as ``.json`` for reading); loading never unpickles anything.
:func:`load_victim` returns the cached victim, training it first if asked to.

The *quick* settings (one or two epochs on 10 000 images, a few seconds) give a weaker victim
under its own file name, for tests and CI; the default settings reach the accuracies of the
issue (MNIST >= 99%, CIFAR-10 >= 60%).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from lft.data.sources import SOURCES
from lft.models.lenet import lenet5, predict
from lft.safefiles import atomic_path, atomic_write_bytes, read_tensors

FORMAT = "lft-victim"
VERSION = 1
ARCHITECTURE = "lenet5"
SPLITS = ("train", "test")


@dataclass
class TrainSettings:
    """How a victim is trained (JSON-serialisable; part of its record)."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    augment: bool = False  # random horizontal flips and 4-pixel shifted crops
    train_subset: int | None = None  # use only this many (seeded) training images
    seed: int = 0


#: Default settings per source; quick ones for tests and CI (seconds, weaker victims).
SETTINGS = {"mnist": TrainSettings(epochs=4),
            "cifar10": TrainSettings(epochs=20, augment=True, weight_decay=5e-4)}
QUICK_SETTINGS = {"mnist": TrainSettings(epochs=1, train_subset=10_000),
                  "cifar10": TrainSettings(epochs=2, train_subset=10_000)}
#: Settings for a user's source (``lft victims train --source PATH``): smaller batches and more
#: epochs, as a user's data set may hold only a few hundred images.
USER_SETTINGS = TrainSettings(epochs=20, batch_size=32)
QUICK_USER_SETTINGS = TrainSettings(epochs=5, batch_size=32, train_subset=10_000)


def settings_for(source, quick: bool = False) -> TrainSettings:
    """The default training settings of ``source``: a named one's, else the user settings."""
    if isinstance(source, str) and source in SOURCES:
        return (QUICK_SETTINGS if quick else SETTINGS)[source]
    return QUICK_USER_SETTINGS if quick else USER_SETTINGS


@dataclass
class Victim:
    """A classifier under attack: ``victim(x)`` maps images ``(N, C, H, W)`` in ``[0, 1]`` to
    logits ``(N, K)``.

    ``input_shape`` ``(C, H, W)`` and ``classes`` (names in label order) are ``None`` when
    unknown (a user's callable); ``record`` says where a saved victim came from.
    """

    model: object
    name: str
    input_shape: tuple[int, int, int] | None = None
    classes: list[str] | None = None
    record: dict = field(default_factory=dict)
    path: Path | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def key(self) -> str:
        """Identifies the victim's weights (file, size and time) for caches of its predictions."""
        if self.path is None:
            return f"{self.name}@{id(self.model)}"
        st = self.path.stat()
        return f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def victim_dir(folder: str | Path | None = None) -> Path:
    """Where cached victims live: ``folder``, else ``<user cache>/victims``."""
    if folder is not None:
        return Path(folder).expanduser()
    from lft.data import user_cache_dir
    return user_cache_dir() / "victims"


def victim_path(source: str, quick: bool = False, folder: str | Path | None = None) -> Path:
    """The cache file of ``source``'s default (or quick) victim."""
    _check_source(source)
    return victim_dir(folder) / f"{ARCHITECTURE}-{source}{'-quick' if quick else ''}.safetensors"


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"no victim recipe for image source {source!r}; choose from "
                         f"{', '.join(SOURCES)}, or pass the path of your own image source "
                         "(lft victims train --source PATH), or attack your own model with "
                         "'lft attack --victim module:function'")


# ------------------------------------------------------------------------------- training

def _as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> uint8 ``(N, C, H, W)`` (converted to float batch by batch)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random crop of the 4-pixel zero-padded image, per sample."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    oy, ox = torch.randint(0, 9, (2, b), generator=g)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:16]


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on uint8 ``images`` ``(N, C, H, W)``."""
    pred = torch.cat([predict(model, images[i:i + 2000].float() / 255)
                      for i in range(0, len(images), 2000)])
    return float((pred == labels).float().mean())


def train_victim(source, data_dir: str | Path | None = None,
                 settings: TrainSettings | None = None, quick: bool = False,
                 progress: bool = True) -> Victim:
    """Train a LeNet-5 on ``source``'s train split and measure its clean test accuracy.

    ``source``: ``"mnist"``, ``"cifar10"``, the path of a user's image source or ``(train,
    test)`` splits (:mod:`lft.tasks.images`). Seeded (initialisation, shuffling and
    augmentation come from ``settings.seed``), Adam with a cosine learning-rate decay; the
    returned victim carries the full record of what made it.
    """
    from lft._version import __version__
    from lft.data import resolve_data_dir
    from lft.tasks.images import image_source

    if isinstance(source, str) and source not in SOURCES and not Path(source).exists():
        _check_source(source)  # neither a named source nor a path: say what is known
    data, source, label = image_source(source, data_dir, "victim")
    s = settings or settings_for(source, quick)
    train, test = data["train"], data["test"]
    g = torch.Generator().manual_seed(s.seed)
    index = torch.randperm(len(train), generator=g)
    if s.train_subset is not None:
        index = index[:s.train_subset]
    x_all, y_all = _as_tensor(train.images)[index], torch.from_numpy(train.labels)[index]
    h, w, c = train.image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        try:
            model = lenet5(c, (h, w), len(train.classes))
        except ValueError as e:
            raise ValueError(f"victim for {label}: {e}; fix: use larger images") from None
    pixels = x_all.double() / 255
    model[0].mean.copy_(pixels.mean((0, 2, 3)).float())
    model[0].std.copy_(pixels.std((0, 2, 3)).float())
    del pixels
    n_batches = -(-len(x_all) // s.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs * n_batches)
    t0 = time.perf_counter()
    bar = tqdm(total=s.epochs * n_batches, desc=f"train victim {label}", disable=not progress,
               dynamic_ncols=True, leave=False)
    model.train()
    for _ in range(s.epochs):
        order = torch.randperm(len(x_all), generator=g)
        for i in range(n_batches):
            idx = order[i * s.batch_size:(i + 1) * s.batch_size]
            x = x_all[idx].float() / 255
            if s.augment:
                x = _augment(x, g)
            loss = nn.functional.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    flush_denormals_(model.eval().requires_grad_(False))
    train_time = time.perf_counter() - t0
    test_acc = accuracy(model, _as_tensor(test.images), torch.from_numpy(test.labels))
    record = {"architecture": ARCHITECTURE, "source": source, "quick": bool(quick),
              "input_shape": [c, h, w], "classes": list(train.classes),
              "settings": asdict(s),
              "data": {"data_dir": str(resolve_data_dir(data_dir)),
                       "train_images": len(train), "test_images": len(test),
                       "train_used": len(x_all),
                       "train_sha256_16": _fingerprint(train.images, train.labels),
                       "test_sha256_16": _fingerprint(test.images, test.labels)},
              "clean_test_accuracy": test_acc, "train_time_s": round(train_time, 1),
              "torch": torch.__version__, "lft_version": __version__,
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    name = f"{ARCHITECTURE}-{label}{'-quick' if quick else ''}"
    return Victim(model, name, (c, h, w), list(train.classes), record)


def flush_denormals_(model: nn.Module) -> nn.Module:
    """Set ``model``'s subnormal float weights (``|w|`` below the smallest normal number,
    ~1.2e-38 in float32, which weight decay leaves behind) to zero, in place.

    They change no logit measurably, but CPU arithmetic on subnormals is slow: the CIFAR-10
    LeNet-5 (7 830 of its 48 000 first fully connected weights subnormal) ran its forward pass
    2.4x slower with them (0.164 against 0.068 ms per image, one thread).
    """
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0.0)
    return model


# ------------------------------------------------------------------------------- files

def save_victim(path: str | Path, victim: Victim) -> Path:
    """Write the victim's weights and record (atomically) plus a ``.json`` copy of the record."""
    path = Path(path)
    if not isinstance(victim.model, nn.Module):
        raise ValueError("only an lft-trained LeNet-5 victim can be saved")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in victim.model.state_dict().items()}
    meta = {"format": FORMAT, "version": str(VERSION), "record": json.dumps(victim.record)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(victim.record, indent=1)
                                                   + "\n").encode())
    victim.path = path
    return path


def read_victim(path: str | Path) -> Victim:
    """A victim saved by :func:`save_victim`; anything else is refused with a clear error."""
    path = Path(path)
    tensors, header = read_tensors(path, FORMAT, "victim file", "train one with 'lft victims "
                                   "train mnist|cifar10', or pass a Python callable as "
                                   "module:function")
    try:
        record = json.loads(header["record"])
        c, h, w = record["input_shape"]
        model = lenet5(c, (h, w), len(record["classes"]))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"{path}: damaged victim file ({type(e).__name__}: {e})") from None
    flush_denormals_(model.eval().requires_grad_(False))
    return Victim(model, path.stem, (c, h, w), list(record["classes"]), record, path)


def load_victim(source: str, data_dir: str | Path | None = None, *, quick: bool = False,
                train_if_missing: bool = True, folder: str | Path | None = None,
                progress: bool = False) -> Victim:
    """The cached victim of ``source``; trained (and cached) first when missing and allowed.

    A victim is found by name in the cache folder, whatever settings made it; its record says
    which. Without ``train_if_missing`` a missing victim is a ``ValueError`` naming the command
    that makes it.
    """
    path = victim_path(source, quick, folder)
    if path.is_file():
        return read_victim(path)
    if not train_if_missing:
        raise ValueError(f"no {'quick ' if quick else ''}{source} victim at {path}; fix: run "
                         f"'lft victims train {source}{' --quick' if quick else ''}'")
    victim = train_victim(source, data_dir, quick=quick, progress=progress)
    save_victim(path, victim)
    return victim


def train_or_reuse(source, data_dir: str | Path | None = None,
                   settings: TrainSettings | None = None, quick: bool = False,
                   path: str | Path | None = None, force: bool = False,
                   progress: bool = True) -> tuple[Victim, bool]:
    """``(victim, reused)``: the victim at ``path`` if it was made with the same settings and
    data folder, else a freshly trained and saved one (always fresh with ``force``)."""
    s = settings or settings_for(source, quick)
    named = isinstance(source, str) and source in SOURCES
    if path is None and not named:
        raise ValueError("a victim of a user's image source needs a file name; fix: pass "
                         "path='V.safetensors'")
    path = Path(path) if path is not None else victim_path(source, quick)
    if path.is_file() and not force:
        old = read_victim(path)
        from lft.data import resolve_data_dir
        if named:
            same_data = old.record.get("data", {}).get("data_dir") == \
                str(resolve_data_dir(data_dir))
        else:  # a user's source: the very same images (a fingerprint of both splits)
            from lft.tasks.images import image_source
            data, source, _ = image_source(source, data_dir, "victim")
            same_data = {k: old.record.get("data", {}).get(f"{k}_sha256_16") for k in SPLITS} \
                == {k: _fingerprint(data[k].images, data[k].labels) for k in SPLITS}
        if old.record.get("source") == source and old.record.get("settings") == asdict(s) \
                and same_data:
            return old, True
    victim = train_victim(source, data_dir, s, quick=quick, progress=progress)
    save_victim(path, victim)
    return victim, False
