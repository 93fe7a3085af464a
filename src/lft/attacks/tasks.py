"""Few-shot UAP tasks on a user's image source against a user's victim (``lft attack --source``).

Each task is one of :class:`lft.tasks.UAPFamily`'s: a few fine-tuning images of the source's
train split, held-out images of its test split, every one classified correctly by the victim.
:func:`attack_tasks` fine-tunes a perturbation per task with a method (a meta-trained
fine-tuner, :func:`lft.attacks.attack.fine_tuner_method`, or a rule) through the engine's one
evaluation loop (:func:`lft.meta.evaluate`), and keeps each task's final perturbation.

The attack loss should be the one the fine-tuner was meta-trained on: :func:`trained_settings`
reads ``lam`` (and a budget ``eps``/``norm``) from its checkpoint's family configuration (the
packaged ``uap-fo-lft`` was trained at ``lam = 0.001``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft.meta.evaluate import Curve, evaluate
from lft.meta.learners import Method
from lft.oracles import is_zeroth_order, queries_per_step
from lft.safefiles import atomic_path
from lft.tasks.uap import UAPFamily

FORMAT = "lft-uap-deltas"
#: the loss weight when neither the user nor the method's training says otherwise
DEFAULT_LAM = 0.01


def uap_config(config: dict) -> dict:
    """The first UAP family configuration inside a family configuration (mixtures searched),
    ``{}`` when there is none."""
    if config.get("task") == "uap":
        return config
    for sub in config.get("families", []):
        if found := uap_config(sub):
            return found
    return {}


def trained_settings(fine_tuner: str | Path) -> dict:
    """``{"lam": ..., "kappa": ..., "eps": ..., "norm": ...}`` of the UAP tasks a fine-tuner (a
    packaged name or a checkpoint) was meta-trained on; only the keys its configuration
    holds."""
    from lft import checkpoint, pretrained

    _, meta = checkpoint.read(pretrained.resolve(fine_tuner))
    found = uap_config(meta.get("family", {}))
    return {k: found[k] for k in ("lam", "kappa", "eps", "norm") if found.get(k) is not None}


@dataclass
class TaskAttack:
    """What :func:`attack_tasks` measured: curves over steps ``0..K`` of every UAP metric on the
    held-out images (``asr``, ``distortion``, ...), each task's final perturbation ``deltas``
    ``(N, C, H, W)``, and the victim images back-propagated (white box) or loss evaluations
    (black box) per task, ``queries``."""

    curves: dict[str, Curve]
    deltas: torch.Tensor
    family: UAPFamily
    queries: int
    zeroth_order: bool


def attack_tasks(method: Method, family: UAPFamily, n_tasks: int, steps: int, seed: int = 0,
                 progress: bool = False) -> TaskAttack:
    """Fine-tune one perturbation per held-out task of ``family`` (its meta-test part) with
    ``method``; metrics on each task's held-out images at every step."""
    finals: list[torch.Tensor] = []

    def keep(k: int, theta: torch.Tensor, _metrics) -> None:
        if k == steps:
            finals.append(theta.detach().clone())

    curves = evaluate(method, family, n_tasks=n_tasks, steps=steps, seed=seed,
                      progress=progress, on_step=keep)
    oracle = method.config.oracle
    per_step = queries_per_step(oracle, family.ways * family.shots)
    deltas = torch.cat(finals).reshape(-1, *family.model.shape)
    return TaskAttack(curves, deltas, family, steps * per_step, is_zeroth_order(oracle))


def save_deltas(path: str | Path, deltas: torch.Tensor, record: dict) -> Path:
    """Write the perturbations ``(N, C, H, W)`` as safetensors (key ``"deltas"``), with
    ``record`` (JSON) in the header, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": "1", "record": json.dumps(record)}
    with atomic_path(path) as tmp:
        save_file({"deltas": deltas.detach().cpu().float().contiguous()}, str(tmp),
                  metadata=meta)
    return path


__all__ = ["DEFAULT_LAM", "FORMAT", "TaskAttack", "attack_tasks", "save_deltas",
           "trained_settings", "uap_config"]
