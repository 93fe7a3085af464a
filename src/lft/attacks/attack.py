"""One universal perturbation for a user's victim and images, by any fine-tuner (``lft attack``).

:func:`universal_perturbation` fine-tunes ``delta`` on a handful of labelled images with a
method (a meta-learned fine-tuner or a hand-designed rule) fed by exact gradients (white box) or
by the zeroth-order oracle (black box: only the victim's outputs are read, every image sent to
it is counted). The loss and metrics are those of the UAP tasks (:mod:`lft.tasks.uap`), so an
attack here is one UAP task built from the user's data instead of a data set.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lft.meta.learners import Method
from lft.meta.unroll import trajectory
from lft.oracles import DEFAULT_ZO, FirstOrder, build_oracle, is_zeroth_order
from lft.tasks.base import TaskFamily
from lft.tasks.uap import Perturbation, UAPBatch, attack_success, check_budget, steps_to_asr
from lft.tasks.victims import Victim, read_victim


class CountingVictim:
    """Wraps a victim; counts the calls and images sent to it while counting is on."""

    def __init__(self, victim):
        self.victim, self.calls, self.images, self.on = victim, 0, 0, True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.on:
            self.calls += 1
            self.images += x.shape[0]
        return self.victim(x)

    @contextmanager
    def paused(self):
        """Victim calls made for reporting (not by the attack itself) are not counted."""
        self.on = False
        try:
            yield
        finally:
            self.on = True


class FixedShape(TaskFamily):
    """A stand-in family of one perturbation shape, so a :class:`Method` can be built for it."""

    congruous = True

    def __init__(self, model: Perturbation, name: str = "user images"):
        self.model, self.name = model, name

    def config(self) -> dict:
        return {"task": "user-images", "shape": list(self.model.shape)}


def fine_tuner_method(fine_tuner: str | Path, shape: tuple[int, ...], seed: int = 0
                      ) -> tuple[Method, str]:
    """A :class:`Method` that fine-tunes perturbations of ``shape`` with a meta-trained
    fine-tuner (a packaged name such as ``uap-fo-lft``, or a checkpoint), for
    :func:`universal_perturbation`; and a one-line description of it.

    A learned rule acts per coordinate, so it fits any image shape; a learned initialisation
    (MAML) fits only its own and is refused with the reason. The UAP case of
    :func:`lft.finetuner.fine_tuner_method`, which builds methods for any task family.
    """
    from lft import checkpoint, pretrained
    from lft.finetuner import fine_tuner_method as general

    method = general(fine_tuner, FixedShape(Perturbation(None, tuple(shape))), seed=seed,
                     target=f"perturbations of shape {tuple(shape)}")
    cfg = method.config
    trained_on = checkpoint.read(pretrained.resolve(fine_tuner))[1]["family"].get("task", "?")
    return method, f"{cfg.label} from {fine_tuner} (meta-trained on {trained_on} tasks)"


# --------------------------------------------------------------------------- victims

def _callable_victim(spec: str) -> Victim:
    """``module:function`` or ``path/to/file.py:function``: a callable images -> logits."""
    mod_name, _, attr = spec.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ValueError(f"no Python file {path}")
            mspec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except (ImportError, OSError, SyntaxError) as e:
        raise ValueError(f"victim {spec!r}: cannot import {mod_name!r} "
                         f"({type(e).__name__}: {e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"victim {spec!r}: {mod_name!r} has no callable {attr!r}; pass "
                         "module:function where function maps images (N, C, H, W) in [0, 1] to "
                         "logits (N, K)")
    if isinstance(fn, torch.nn.Module):
        fn.eval()

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(fn(x), dtype=torch.float32)

    return Victim(logits, attr, record={"callable": spec})


def load_attack_victim(spec: str) -> Victim:
    """A victim file written by ``lft victims train``, or ``module:function`` (a callable)."""
    if Path(spec).is_file() or ":" not in spec:
        return read_victim(spec)
    return _callable_victim(spec)


def check_victim(victim, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The victim's clean logits on ``x``, after checking they are finite ``(N, K > max y)``."""
    with torch.no_grad():
        try:
            logits = victim(x)
        except Exception as e:  # a user's model can fail in any way; say which input did it
            raise ValueError(f"the victim failed on images of shape {tuple(x.shape[1:])} "
                             f"({type(e).__name__}: {e})") from None
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the victim must return logits of shape (N, K) for N images, got "
                         f"{tuple(logits.shape)} for N = {x.shape[0]}")
    if not torch.isfinite(logits).all():
        raise ValueError("the victim returned NaN or infinite logits on the clean images")
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(f"label {int(y.max())} is out of range for a victim with "
                         f"{logits.shape[1]} classes")
    return logits


# --------------------------------------------------------------------------- images

def load_labelled_images(folder: str | Path, victim: Victim) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` and the victim's label indices from a
    ``<class>/*.png|jpg`` folder.

    A class folder is named after one of the victim's classes (e.g. ``cat``) or is its index
    (``3``); the images must have the victim's input shape.
    """
    from lft.data import load_image_folder

    split = load_image_folder(folder)
    x = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255
    if victim.input_shape is not None and tuple(x.shape[1:]) != tuple(victim.input_shape):
        c, h, w = x.shape[1:]
        vc, vh, vw = victim.input_shape
        raise ValueError(f"{folder}: images are {c}x{h}x{w} (CxHxW) but the victim takes "
                         f"{vc}x{vh}x{vw}; fix: resize or convert the images")
    labels = []
    for name in split.classes:
        if victim.classes and name in victim.classes:
            labels.append(victim.classes.index(name))
        elif name.isdigit():
            labels.append(int(name))
        else:
            known = f" or one of {victim.classes}" if victim.classes else ""
            raise ValueError(f"{folder}: class folder {name!r} is not a class index{known}; "
                             "fix: name class folders by index, or pass the victim's class "
                             "names in label order (--classes)")
    n_classes = len(victim.classes) if victim.classes else None
    if n_classes is not None and max(labels) >= n_classes:
        raise ValueError(f"{folder}: class {max(labels)} is out of range for a victim with "
                         f"{n_classes} classes")
    y = torch.tensor(labels)[torch.from_numpy(split.labels)]
    return x, y


def check_images(x: torch.Tensor, y: torch.Tensor, what: str = "images") -> None:
    """Images must be a finite ``(N, C, H, W)`` batch in ``[0, 1]`` with ``N`` integer labels."""
    if x.dim() != 4 or x.shape[0] < 1:
        raise ValueError(f"{what} must be a non-empty batch (N, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite pixels")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"{what} must lie in [0, 1], got values in "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    if y.shape != (x.shape[0],) or y.dtype not in (torch.int64, torch.int32) or y.min() < 0:
        raise ValueError(f"{what}: need one non-negative integer label per image, got labels "
                         f"of shape {tuple(y.shape)} and type {y.dtype}")


# --------------------------------------------------------------------------- the attack

@dataclass
class AttackResult:
    """What an attack produced and measured (curves have one entry per step ``0..steps``).

    ``queries`` counts the images the attack sent to the victim (white box: each one
    back-propagated, ``steps x images``); ``loss_evaluations`` (black box) the evaluations of
    the attack loss on the attack images, the base points included; ``wall_time_s`` is the
    attack's own time (its fine-tuning steps, not the reporting); ``eps``/``norm`` its budget
    (``None``: none).
    """

    delta: torch.Tensor
    asr: list[float]
    loss: list[float]
    distortion: list[float]
    l2: float
    clean_asr: float
    queries: int
    victim_calls: int
    eval_asr: float | None = None
    eval_clean_asr: float | None = None
    eval_images: int = 0
    steps_to_75: float | None = None
    wall_time_s: float = 0.0
    eps: float | None = None
    norm: str = "2"
    info: dict = field(default_factory=dict)
    loss_evaluations: int | None = None


def universal_perturbation(victim, x: torch.Tensor, y: torch.Tensor, method: Method,
                           steps: int = 200, lam: float = 0.01, black_box: bool = False,
                           q: int = 20, mu: float = 0.005, init_scale: float = 0.05,
                           seed: int = 0, x_eval: torch.Tensor | None = None,
                           y_eval: torch.Tensor | None = None,
                           callback=None, eps: float | None = None,
                           norm: str = "2", oracle: dict | None = None,
                           kappa: float = 0.0) -> AttackResult:
    """Fine-tune one perturbation of ``x``'s image shape on ``(x, y)`` for ``steps`` steps.

    ``method``'s rule and random start are used; its oracle is replaced by exact gradients, or
    with ``black_box`` by the antithetic zeroth-order oracle (``q`` Gaussian directions, radius
    ``mu``), which only reads the victim's outputs, or the zeroth-order ``oracle``
    configuration given (:func:`lft.oracles.build_oracle`, e.g. ``{"type": "history", "q":
    20}``: 21 loss evaluations per step). ``queries`` counts the images the attack
    sent to the victim (reporting calls excluded; white box, each is back-propagated).
    ``eps`` (optional) is a budget: the start and every step are projected onto the ball
    ``||delta||_2 <= eps`` (``norm="2"``) or ``|delta_i| <= eps`` (``norm="inf"``).
    ``kappa`` is the C&W confidence of the loss (the margin keeps pushing until the wrong class
    leads by ``kappa``). ``callback(step, metrics)`` sees each step; its time is not part of
    ``wall_time_s``.
    """
    eps, norm = check_budget(eps, norm, "attack")
    check_images(x, y)
    if x_eval is not None:
        check_images(x_eval, y_eval, "held-out images")
        if x_eval.shape[1:] != x.shape[1:]:
            raise ValueError(f"held-out images are {tuple(x_eval.shape[1:])} but the attack "
                             f"images are {tuple(x.shape[1:])}")
    for label, v in (("lam", lam), ("mu", mu), ("init_scale", init_scale), ("kappa", kappa)):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{label} must be a finite number >= 0, got {v}")
    if steps < 0 or q < 1:
        raise ValueError(f"need steps >= 0 and q >= 1, got {steps} and {q}")
    clean = check_victim(victim, x, y)
    counter = CountingVictim(victim)
    model = Perturbation(counter, tuple(x.shape[1:]), init_scale)
    batch = (x[None], y[None])
    tasks = UAPBatch(model, {"train": batch, "val": batch, "test": batch}, primary_metric="asr",
                     lam=lam, kappa=kappa, eps=eps, norm=norm)
    if oracle is not None and not black_box:
        raise ValueError("an oracle configuration is for black-box attacks; pass "
                         "black_box=True or leave oracle out")
    if oracle is not None and not is_zeroth_order(oracle):
        raise ValueError(f"a black-box attack needs a zeroth-order oracle, got {oracle!r}")
    oracle = (build_oracle(oracle) if oracle is not None
              else build_oracle(replace(DEFAULT_ZO, q=q, mu=mu)) if black_box else FirstOrder())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        theta, state = method.start(tasks, gen)
    theta = theta.detach()
    if not black_box:
        with counter.paused():  # a capability check, not part of the attack
            _check_differentiable(tasks, theta)
    rows = []
    reporting = [0.0]  # seconds spent measuring (not attacking)

    def record(k: int, th: torch.Tensor) -> None:
        t = time.perf_counter()
        with counter.paused():
            m = {key: float(v[0]) for key, v in tasks.metrics(th, "train").items()}
        if not math.isfinite(m["loss"]):
            raise ValueError(f"the attack loss became {m['loss']} at step {k}: the victim "
                             "returned non-finite outputs or the step size is too large")
        rows.append(m)
        if callback:
            callback(k, m)
        reporting[0] += time.perf_counter() - t

    record(0, theta)
    reporting[0], t0 = 0.0, time.perf_counter()
    with torch.no_grad():
        for k, (theta, state) in enumerate(trajectory(method.rule, oracle, tasks, theta, state,
                                                      steps, gen), start=1):
            record(k, theta)
    wall = time.perf_counter() - t0 - reporting[0]
    delta = theta[0].reshape(x.shape[1:]).detach()
    asr = [r["asr"] for r in rows]
    result = AttackResult(delta=delta, asr=asr, loss=[r["loss"] for r in rows],
                          distortion=[r["distortion"] for r in rows], l2=rows[-1]["l2"],
                          clean_asr=float(attack_success(clean, y)), queries=counter.images,
                          victim_calls=counter.calls,
                          steps_to_75=_nan_to_none(steps_to_asr(torch.tensor(asr))),
                          wall_time_s=wall, eps=eps, norm=norm,
                          loss_evaluations=counter.images // len(y) if black_box else None)
    if x_eval is not None:
        with torch.no_grad():
            clean_eval = check_victim(victim, x_eval, y_eval)
            adv = victim((x_eval + delta).clamp(0, 1))
        result.eval_asr = float(attack_success(adv, y_eval))
        result.eval_clean_asr = float(attack_success(clean_eval, y_eval))
        result.eval_images = x_eval.shape[0]
    return result


def _nan_to_none(v: torch.Tensor) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def _check_differentiable(tasks: UAPBatch, theta: torch.Tensor) -> None:
    """A white-box attack needs the victim's gradient; say so clearly when there is none."""
    try:
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            torch.autograd.grad(tasks.loss(leaf, "train").sum(), leaf)
    except RuntimeError as e:
        raise ValueError(f"cannot differentiate through the victim ({e}); use --black-box to "
                         "attack it from its outputs only") from None


def save_perturbation(delta: torch.Tensor, out: str | Path) -> tuple[Path, Path]:
    """Write ``delta.npy`` (float32 ``(C, H, W)``) and ``delta.png`` (grey 0.5 = no change,
    contrast stretched to the largest ``|delta|``) into folder ``out``."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arr = delta.detach().cpu().numpy().astype(np.float32)
    npy = out / "delta.npy"
    np.save(npy, arr, allow_pickle=False)
    scale = float(np.abs(arr).max()) or 1.0
    img = np.clip(np.round((0.5 + arr / (2 * scale)) * 255), 0, 255).astype(np.uint8)
    img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    png = out / "delta.png"
    Image.fromarray(img).save(png)
    return npy, png
