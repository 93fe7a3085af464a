"""Hugging-Face-Hub-compatible folders (``FineTuner.save_pretrained``, ``from_pretrained``).

A folder holds three files:

* ``config.json``: ``library_name: lft``, the fine-tuner's name, method (rule and oracle),
  task family and ``info`` (description, command, reported figures), with no machine paths;
* ``model.safetensors``: an ordinary lft checkpoint of the rule's tensors (its header holds
  the same configuration), so anything that reads checkpoints reads it (``lft evaluate
  FOLDER``) and loading never executes code;
* ``README.md``: the model card (:mod:`lft.pretrained.card`).

A hub id (``owner/name``, or ``hf://owner/name`` wherever a checkpoint is accepted) is fetched
with ``huggingface_hub`` (``pip install lft[hub]``); without it a copy already in the local
Hugging Face cache is used, so cached fine-tuners load offline.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft import checkpoint
from lft.checkpoint import CheckpointError
from lft.pretrained.card import model_card
from lft.safefiles import atomic_path, atomic_write_bytes
from lft.tasks.presets import with_data_dir

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
FILES = (CONFIG, WEIGHTS, CARD)
FORMAT = "lft-pretrained"
VERSION = 1
HUB_PREFIX = "hf://"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
#: strings that name a folder of one machine (POSIX or Windows absolute paths, home folders)
MACHINE_PATH = re.compile(r"^(/|~[/\\]|[A-Za-z]:[\\/]|\\\\|file:)")


def machine_paths(value, where: str = "") -> list[str]:
    """``key: value`` of every string in ``value`` (nested dicts and lists) that is an absolute
    or home path, i.e. names a folder of the machine that wrote it."""
    if isinstance(value, dict):
        return [hit for k, v in value.items()
                for hit in machine_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in machine_paths(v, f"{where}[{i}]")]
    if isinstance(value, str) and MACHINE_PATH.match(value.strip()):
        return [f"{where}: {value}"]
    return []


def is_pretrained_folder(directory: str | Path) -> bool:
    """Whether ``directory`` holds an lft pretrained folder's ``config.json``."""
    try:
        config = json.loads((Path(directory) / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def write(directory: str | Path, rule_tensors: dict[str, torch.Tensor], name: str,
          method: dict, family: dict, info: dict, overwrite: bool = False,
          repo_id: str | None = None) -> Path:
    """Write a pretrained folder (the three files, each atomically); returns the folder.

    ``rule_tensors`` are the rule's ``state_dict``; ``family``'s ``data_dir`` entries are
    dropped (the data is found on each machine as any command finds it). A non-empty folder
    that is not an lft pretrained folder is refused unless ``overwrite``; a configuration that
    names a machine path (e.g. a victim file) is refused. ``repo_id`` (``owner/name``) is the
    hub id the model card's usage lines name.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} is a file; pass a folder for the pretrained "
                              "fine-tuner")
    if (directory.is_dir() and any(directory.iterdir()) and not overwrite
            and not is_pretrained_folder(directory)):
        raise FileExistsError(f"{directory} is a non-empty folder that is not an lft pretrained "
                              "folder; fix: pass a new or empty folder, or overwrite=True to "
                              "write the fine-tuner's files into it")
    if repo_id is not None and not HUB_ID.match(repo_id):
        raise ValueError(f"repo_id {repo_id!r} is not a hub id; pass 'owner/name'")
    config = {"library_name": "lft", "format": FORMAT, "version": VERSION, "name": name,
              "method": method, "family": with_data_dir(family, None), "info": info}
    found = machine_paths(config)
    if found:
        raise ValueError(f"the fine-tuner's configuration names a folder of this machine "
                         f"({'; '.join(found[:3])}), which would not exist elsewhere; fix: set "
                         "those entries to a relative path or None before save_pretrained")
    header = {"format": checkpoint.FORMAT, "version": str(checkpoint.VERSION),
              "method": json.dumps(method), "family": json.dumps(config["family"]),
              "extra": json.dumps({"pretrained": info} if info else {})}
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file({f"rule.{k}": v.detach().cpu().contiguous() for k, v in rule_tensors.items()},
                  str(tmp), metadata=header)
    atomic_write_bytes(directory / CARD, model_card(config, directory.name, repo_id).encode())
    atomic_write_bytes(directory / CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def read(directory: str | Path) -> tuple[Path, dict]:
    """``(path of model.safetensors, config)`` of a pretrained folder, checked: both files
    present, the config an lft one, and the weights' header configured like it."""
    directory = Path(directory)
    config_path, weights = directory / CONFIG, directory / WEIGHTS
    if not config_path.is_file() or not weights.is_file():
        missing = [f for f in (CONFIG, WEIGHTS) if not (directory / f).is_file()]
        raise CheckpointError(f"{directory} is not an lft pretrained folder (no "
                              f"{' or '.join(missing)}); fix: pass a folder written by "
                              "FineTuner.save_pretrained, or a checkpoint to FineTuner.load")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path} is not readable JSON ({e}); fix: save the "
                              "fine-tuner again with save_pretrained") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not an lft fine-tuner configuration (no "
                              f"'format: {FORMAT}'; a model of another library?); fix: pass "
                              "a folder written by FineTuner.save_pretrained")
    _, meta = checkpoint.read(weights)
    for key in ("method", "family"):
        if config.get(key) != meta[key]:
            raise CheckpointError(f"{directory}: {CONFIG} and {WEIGHTS} disagree on the {key} "
                                  "configuration (one was edited or replaced); fix: save the "
                                  "fine-tuner again with save_pretrained")
    return weights, config


def hub_cache() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or
    ``~/.cache/huggingface/hub`` (as ``huggingface_hub`` finds it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME")
                                             or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def cached_snapshot(repo_id: str, revision: str | None = None,
                    cache_dir: str | Path | None = None) -> Path | None:
    """The folder of ``repo_id`` at ``revision`` (a branch or tag name, or a commit hash;
    default ``main``) in a Hugging Face cache laid out as ``huggingface_hub`` lays it
    (``models--OWNER--NAME/refs/REVISION`` -> ``snapshots/COMMIT``), or ``None``."""
    revision = revision or "main"
    if ".." in revision or revision.startswith(("/", "\\")):
        raise ValueError(f"revision {revision!r} is not a branch, tag or commit")
    repo = Path(cache_dir or hub_cache()) / f"models--{repo_id.replace('/', '--')}"
    commit = revision
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if (snapshot / CONFIG).is_file() else None


def hub_download(repo_id: str, revision: str | None = None,
                 cache_dir: str | Path | None = None, local_files_only: bool = False) -> Path:
    """The folder of the hub fine-tuner ``repo_id`` (``owner/name``): downloaded (or found in
    the cache) by ``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE=1``;
    without ``huggingface_hub`` the cached copy, or an error naming ``pip install lft[hub]``."""
    if not HUB_ID.match(repo_id):
        raise ValueError(f"{repo_id!r} is neither a folder nor a hub id ('owner/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        found = cached_snapshot(repo_id, revision, cache_dir)
        if found is None:
            raise CheckpointError(
                f"{repo_id!r} is no local folder and not in the Hugging Face cache "
                f"({cache_dir or hub_cache()}), and huggingface_hub is not installed to "
                "download it; fix: pip install lft[hub], or pass the folder") from None
        return found
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only,
                                      allow_patterns=list(FILES)))
    except Exception as e:  # the hub's many errors (offline, 404, auth) become one line
        raise CheckpointError(f"cannot fetch the fine-tuner {repo_id!r} from the Hugging Face "
                              f"hub ({type(e).__name__}: {e}); fix: check the id and the "
                              "network, or pass a local folder") from None


def locate(ref: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
           local_files_only: bool = False) -> Path:
    """The pretrained folder named by ``ref``: an existing folder, else a hub id
    (``owner/name`` or ``hf://owner/name``) through :func:`hub_download`."""
    text = str(ref)
    if text.startswith(HUB_PREFIX):
        return hub_download(text[len(HUB_PREFIX):], revision, cache_dir, local_files_only)
    path = Path(ref)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a pretrained folder; fix: "
                              "FineTuner.load(path) reads checkpoint files")
    if HUB_ID.match(text) and not text.startswith("."):
        return hub_download(text, revision, cache_dir, local_files_only)
    raise CheckpointError(f"no pretrained folder {path} (and not a hub id 'owner/name'); fix: "
                          "pass a folder written by FineTuner.save_pretrained")


__all__ = ["CARD", "CONFIG", "FILES", "FORMAT", "HUB_PREFIX", "WEIGHTS", "cached_snapshot",
           "hub_cache", "hub_download", "is_pretrained_folder", "locate", "machine_paths",
           "read", "write"]
