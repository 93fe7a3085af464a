"""IBM ART's universal adversarial perturbation as a rival to fine-tuned UAPs.

:func:`art_uap` runs ART's ``UniversalPerturbation`` (Moosavi-Dezfooli et al., 2017) on one
UAP task's fine-tuning images, with ``"fgsm"`` or ``"pgd"`` as the per-image attacker, under
the same budget as the fine-tuners (``||delta||_2 <= eps`` or ``|delta_i| <= eps``, on images
in ``[0, 1]``); :func:`art_uap_batch` does it for every task of a
:class:`~lft.tasks.UAPBatch`, so the perturbations can be scored with
``tasks.metrics(result.theta, "test")`` like any fine-tuner's.

ART's algorithm, in short: start from ``delta = 0``; for up to ``max_iter`` passes over the
images in a random order, attack each image the current ``delta`` does not yet fool (FGSM: one
gradient step of size ``eps_step``; PGD: ``pgd_iter`` steps of ``eps_step`` within a radius
``attacker_eps`` of ``x + delta``), and if that flips its label set ``delta`` to the attack's
perturbation projected onto the budget's ball; stop early once the fraction of fooled images
reaches ``1 - delta_stop`` (ART's ``delta``).

**What is counted.** ``queries`` is the number of images ART back-propagates through the victim:
the batch size of every forward pass it runs with autograd enabled, i.e. of every
``PyTorchClassifier.loss_gradient`` call (one per FGSM step, ``pgd_iter`` per PGD call,
each on one image). ART's label checks (``predict``: forward passes without autograd, on one
image before and after each per-image attack and on all images after each pass) are counted
apart as ``predictions``; the fine-tuners' ``queries`` likewise count back-propagated images
(10 per step), so the two are comparable.

ART is an optional dependency (``pip install -e '.[rivals]'``); without it every function here
raises :class:`ARTUnavailable`, an ``ImportError`` saying how to install it, and
:func:`available` is ``False``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lft.seeding import derive_seed
from lft.tasks.uap import UAPBatch, check_budget, project_ball

INSTALL = "pip install -e '.[rivals]'"
ATTACKERS = ("fgsm", "pgd")


class ARTUnavailable(ImportError):
    """IBM ART (``adversarial-robustness-toolbox``) is not installed."""


_AVAILABLE: list[bool] = []


def available() -> bool:
    """Whether IBM ART can be imported (checked once)."""
    if not _AVAILABLE:
        try:
            _art()
            _AVAILABLE.append(True)
        except ARTUnavailable:
            _AVAILABLE.append(False)
    return _AVAILABLE[0]


def _art():
    """ART's ``UniversalPerturbation`` and ``PyTorchClassifier``, or one clear ImportError."""
    try:
        from art.attacks.evasion import UniversalPerturbation
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:
        raise ARTUnavailable(f"IBM ART (adversarial-robustness-toolbox) is not installed or "
                             f"does not import ({e}); install the optional extra: "
                             f"{INSTALL}") from None
    logging.getLogger("art").setLevel(logging.WARNING)  # no per-attack INFO lines
    return UniversalPerturbation, PyTorchClassifier


class CountingModule(nn.Module):
    """A victim (a callable images -> logits) as a torch module that counts the images it sees:
    ``backprop`` those of forward passes run with autograd enabled (ART then back-propagates
    through them), ``forward_only`` the others (ART's ``predict``)."""

    def __init__(self, victim):
        super().__init__()
        self.victim = victim
        inner = victim if isinstance(victim, nn.Module) else getattr(victim, "model", None)
        # registered, so that ART's eval() and .to() reach the victim's layers
        self.inner = inner if isinstance(inner, nn.Module) else None
        self.backprop, self.forward_only = 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The victim's logits on ``x``, counting its images as back-propagated (autograd on)
        or only predicted."""
        if torch.is_grad_enabled():
            self.backprop += int(x.shape[0])
        else:
            self.forward_only += int(x.shape[0])
        return self.victim(x)


@dataclass
class ARTResult:
    """One ART attack: the perturbation ``delta`` ``(C, H, W)`` (in the budget's ball), the
    images back-propagated (``queries``) and only predicted (``predictions``), its wall time
    and ART's own fooling rate on the attack images."""

    delta: torch.Tensor
    queries: int
    predictions: int
    wall_time_s: float
    fooling_rate: float


def _attacker_params(attacker: str, norm, eps: float, eps_step: float | None,
                     attacker_eps: float | None, pgd_iter: int) -> dict:
    radius = eps if attacker_eps is None else attacker_eps
    if attacker == "fgsm":  # one step of eps_step (ART's FGM takes a step of its ``eps``)
        step = radius if eps_step is None else eps_step
        return {"norm": norm, "eps": step, "eps_step": step, "num_random_init": 0,
                "minimal": False}
    step = radius / 4 if eps_step is None else eps_step
    return {"norm": norm, "eps": radius, "eps_step": step, "max_iter": pgd_iter,
            "num_random_init": 0, "verbose": False}


def art_uap(victim, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "2",
            attacker: str = "pgd", *, max_iter: int = 5, delta: float = 0.0,
            eps_step: float | None = None, attacker_eps: float | None = None,
            pgd_iter: int = 10, seed: int = 0, nb_classes: int | None = None) -> ARTResult:
    """ART's universal perturbation of the images ``x`` ``(N, C, H, W)`` in ``[0, 1]`` with
    labels ``y`` ``(N,)`` against ``victim`` (a callable or module, images -> logits).

    Args:
        eps, norm: the budget, ``||delta||_2 <= eps`` (``"2"``, over all ``C*H*W`` pixels) or
            ``|delta_i| <= eps`` (``"inf"``): ART's ``UniversalPerturbation(eps=, norm=)``.
        attacker: ``"fgsm"`` or ``"pgd"``, ART's per-image attack.
        max_iter: ART's passes over the images; ``delta``: stop once ART's fooling rate on them
            reaches ``1 - delta`` (``0``: only when every image is fooled).
        eps_step: the attacker's step (FGSM's one step, default ``attacker_eps``; PGD's, default
            ``attacker_eps / 4``); ``attacker_eps``: PGD's radius around ``x + delta``
            (default ``eps``); ``pgd_iter``: PGD's steps per call.
        seed: seeds ART's random image order (Python's ``random``, restored afterwards).
        nb_classes: the victim's classes (default: read from its logits on one image).

    Returns an :class:`ARTResult`; what ``queries`` counts is in the module docstring.
    """
    universal, classifier = _art()
    where = "ART universal perturbation"
    eps, norm = check_budget(eps, norm, where)
    if eps is None:
        raise ValueError(f"{where}: eps is None; fix: pass the budget's radius eps > 0")
    if attacker not in ATTACKERS:
        raise ValueError(f"{where}: attacker must be one of {list(ATTACKERS)}, got "
                         f"{attacker!r}")
    for label, n in (("max_iter", max_iter), ("pgd_iter", pgd_iter)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{where}: {label} must be an integer >= 1, got {n!r}")
    if not 0 <= delta <= 1:
        raise ValueError(f"{where}: delta (1 - target fooling rate) must lie in [0, 1], got "
                         f"{delta}")
    for label, v in (("eps_step", eps_step), ("attacker_eps", attacker_eps)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{where}: {label} must be a finite number > 0 or None, got {v}")
    if x.dim() != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"{where}: need images (N, C, H, W) and N labels, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    module = CountingModule(victim).eval()
    if nb_classes is None:
        with torch.no_grad():
            nb_classes = int(victim(x[:1]).shape[-1])
    module.forward_only = 0  # that look was ours, not ART's
    p = 2 if norm == "2" else np.inf
    est = classifier(model=module, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                     nb_classes=nb_classes, clip_values=(0.0, 1.0), device_type="cpu")
    attack = universal(est, attacker=attacker,
                       attacker_params=_attacker_params(attacker, p, eps, eps_step,
                                                        attacker_eps, pgd_iter),
                       delta=float(delta), max_iter=max_iter, eps=eps, norm=p,
                       batch_size=max(1, x.shape[0]), verbose=False)
    xs = x.detach().cpu().numpy().astype(np.float32)
    ys = y.detach().cpu().numpy().astype(np.int64)
    state = random.getstate()
    random.seed(derive_seed(seed, "art-uap-order"))
    t0 = time.perf_counter()
    try:
        with torch.enable_grad():
            attack.generate(xs, y=ys)
    finally:
        random.setstate(state)
    wall = time.perf_counter() - t0
    noise = torch.from_numpy(np.asarray(attack.noise, dtype=np.float32)).reshape(1, -1)
    out = project_ball(noise, eps, norm).reshape(x.shape[1:])
    return ARTResult(delta=out, queries=module.backprop, predictions=module.forward_only,
                     wall_time_s=wall, fooling_rate=float(attack.fooling_rate or 0.0))


@dataclass
class ARTBatchResult:
    """ART's perturbations of ``B`` tasks: ``deltas`` ``(B, C, H, W)``; per task ``queries``
    (images back-propagated), ``predictions``, ``wall_time_s`` and ``fooling_rate``
    (``(B,)`` each)."""

    deltas: torch.Tensor
    queries: torch.Tensor
    predictions: torch.Tensor
    wall_time_s: torch.Tensor
    fooling_rate: torch.Tensor

    @property
    def theta(self) -> torch.Tensor:
        """The perturbations flattened as the tasks' optimisee, ``(B, C*H*W)``, for
        ``tasks.metrics(result.theta, "test")``."""
        return self.deltas.reshape(self.deltas.shape[0], -1)


def art_uap_batch(tasks: UAPBatch, attacker: str = "pgd", eps: float | None = None,
                  norm: str | None = None, seed: int = 0, first_index: int = 0,
                  split: str = "train", **settings) -> ARTBatchResult:
    """:func:`art_uap` on each task of ``tasks``, from its ``split`` images (the fine-tuning
    set: the only images a fine-tuner sees) against the tasks' victim.

    ``eps``/``norm`` default to the tasks' budget. Task ``i`` of the batch is attacked with
    the seed ``derive_seed(seed, first_index + i)``, so a run split into chunks (pass each
    chunk's first task index) gives the same perturbations. ``settings``: :func:`art_uap`'s.
    """
    if not isinstance(tasks, UAPBatch):
        raise TypeError(f"art_uap_batch needs UAP tasks (a UAPBatch), got "
                        f"{type(tasks).__name__}")
    eps = tasks.eps if eps is None else eps
    norm = (tasks.norm if eps is not None and tasks.eps is not None else "2") \
        if norm is None else norm
    if eps is None:
        raise ValueError("art_uap_batch: these tasks have no budget (eps is None); fix: pass "
                         "eps=RADIUS, or sample tasks from a family with eps set")
    x_all, y_all = tasks.data[split]
    model = tasks.model
    with torch.no_grad():
        nb_classes = int(model.victim(x_all[0, :1]).shape[-1])
    results = [art_uap(model.victim, x_all[i], y_all[i], eps, norm, attacker,
                       seed=derive_seed(seed, f"art-task-{first_index + i}"),
                       nb_classes=nb_classes, **settings)
               for i in range(tasks.size)]
    return ARTBatchResult(
        deltas=torch.stack([r.delta for r in results]),
        queries=torch.tensor([r.queries for r in results], dtype=torch.float64),
        predictions=torch.tensor([r.predictions for r in results], dtype=torch.float64),
        wall_time_s=torch.tensor([r.wall_time_s for r in results], dtype=torch.float64),
        fooling_rate=torch.tensor([r.fooling_rate for r in results], dtype=torch.float64))


__all__ = ["ARTBatchResult", "ARTResult", "ARTUnavailable", "ATTACKERS", "CountingModule",
           "INSTALL", "art_uap", "art_uap_batch", "available"]
