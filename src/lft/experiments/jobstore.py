"""Finished jobs kept on disk, so that ``lft reproduce ARTEFACT --resume`` re-runs only the rest.

The reproductions' job runner (:func:`lft.experiments.runner.run_jobs`) hands each finished
job's record to a :class:`JobStore`: ``OUT/jobs/KEY.json`` (the job and its record, tensors
replaced by references) beside ``KEY.safetensors`` (the tensors), both written atomically,
the JSON last, so a job counts as finished only once both are complete. A run killed at any
point (``kill -9`` included) and started again with ``resume`` reads back the records of the
jobs whose stored description equals the new run's and runs only the others; the records
read back are the ones written (floats through JSON's exact ``repr``, tensors bit for bit), so
the rows are those of an uninterrupted run. Without ``resume`` stored records are ignored and
overwritten.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lft.experiments.jobs import as_dict
from lft.safefiles import atomic_path, atomic_write_bytes

TENSOR, PAIRS = "__tensor__", "__pairs__"


def _encode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {PAIRS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_encode(v, tensors) for v in obj]
    return obj


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict):
        if set(obj) == {TENSOR}:
            return tensors[obj[TENSOR]]
        if set(obj) == {PAIRS}:
            return {_key(_decode(k, tensors)): _decode(v, tensors) for k, v in obj[PAIRS]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _key(k):
    return tuple(k) if isinstance(k, list) else k


def describe(job) -> str:
    """A job's canonical JSON, what a stored record must match to be reused: its fields
    (``to_dict()`` for a typed job, :mod:`lft.experiments.jobs`; the dict itself for a plain
    dict) with sorted keys. A typed job describes itself as
    the plain dict it replaced did, so records stored before it was typed are still reused."""
    return json.dumps(as_dict(job), sort_keys=True, default=str)


class JobStore:
    """Records of finished jobs in ``folder``; ``resume`` reuses the matching ones."""

    def __init__(self, folder: str | Path | None, resume: bool = False):
        self.folder = None if folder is None else Path(folder)
        self.resume = bool(resume)
        self.reused: list[str] = []

    def _paths(self, job) -> tuple[Path, Path]:
        digest = hashlib.sha256(describe(job).encode()).hexdigest()[:16]
        job = as_dict(job)
        stem = f"{job.get('label', job.get('kind', 'job'))}-{digest}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        return self.folder / f"{safe}.json", self.folder / f"{safe}.safetensors"

    def done(self, job) -> dict | None:
        """The stored record of ``job`` when resuming and it finished, else ``None``."""
        if self.folder is None or not self.resume:
            return None
        meta, blob = self._paths(job)
        try:
            stored = json.loads(meta.read_text())
            tensors = load_file(str(blob)) if stored["tensors"] else {}
        except (OSError, ValueError, KeyError):  # absent, or cut short before its JSON
            return None
        if stored.get("job") != describe(job):
            return None
        self.reused.append(as_dict(job).get("label", "?"))
        return _decode(stored["record"], tensors)

    def save(self, job, record: dict) -> None:
        """Keep ``record`` of a finished ``job`` (tensors first, the JSON that marks it last)."""
        if self.folder is None:
            return
        tensors: dict[str, torch.Tensor] = {}
        encoded = _encode(record, tensors)
        meta, blob = self._paths(job)
        if tensors:
            with atomic_path(blob) as tmp:
                save_file(tensors, str(tmp))
        atomic_write_bytes(meta, json.dumps({"job": describe(job), "record": encoded,
                                             "tensors": bool(tensors)}).encode())
