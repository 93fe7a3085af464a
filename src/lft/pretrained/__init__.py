"""Pretrained fine-tuners shipped inside the package (``lft.FineTuner.load(NAME)``).

Each is one ``NAME.safetensors`` file in this folder: an ordinary lft checkpoint (the rule's
meta-learned tensors, the method and task-family configuration in the JSON header) whose
``extra`` header entry adds ``pretrained``: its description, the command that produced it, the
source checkpoint, and the figures its reproduction reported (so ``lft evaluate NAME`` can
re-measure and compare them). ``pyproject.toml`` ships every ``*.safetensors`` file here.

A fine-tuner also travels as a Hugging-Face-Hub-compatible folder
(``FineTuner.save_pretrained`` / ``from_pretrained``, :mod:`lft.pretrained.folder`).

To add one (e.g. the classification or UAP fine-tuners), run one command and nothing else::

    python -m lft.pretrained add results/ARTEFACT/checkpoints/fo-lft.safetensors NAME \\
        --description "one line" --command "lft reproduce ARTEFACT --profile paper" \\
        --results results/ARTEFACT/results.json

(or :func:`lft.pretrained.package.package` from Python), then commit ``NAME.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from lft.checkpoint import CheckpointError

DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the packaged fine-tuners, sorted."""
    return sorted(p.name[: -len(".safetensors")] for p in DIR.glob("*.safetensors"))


def path(name: str) -> Path:
    """The file of a packaged fine-tuner, or a clear error naming the available ones."""
    if name not in names():
        raise CheckpointError(f"unknown pretrained fine-tuner {name!r}; available: "
                              f"{', '.join(names()) or 'none'} (or pass a checkpoint path)")
    return DIR / f"{name}.safetensors"


def info(name: str) -> dict:
    """The ``pretrained`` header entry of a packaged fine-tuner (description, command, ...)."""
    with safe_open(str(path(name)), framework="pt") as f:
        extra = json.loads((f.metadata() or {}).get("extra", "{}"))
    return extra.get("pretrained", {})


def catalogue() -> dict[str, str]:
    """``{name: one-line description}`` of every packaged fine-tuner."""
    return {n: info(n).get("description", "") for n in names()}


def resolve(name_or_path: str | Path) -> Path:
    """A checkpoint path from a packaged name, a path, a pretrained folder or a hub id.

    An existing file wins; a folder written by ``FineTuner.save_pretrained`` gives its
    ``model.safetensors`` and ``hf://owner/name`` that of the hub fine-tuner
    (:func:`lft.pretrained.folder.locate`); otherwise a packaged name; otherwise anything that
    looks like a path is returned unchanged (so the checkpoint reader reports the missing file)
    and anything else is an unknown name, reported with the list of available ones.
    """
    from lft.pretrained import folder

    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    text = str(name_or_path)
    if candidate.is_dir() or text.startswith(folder.HUB_PREFIX):
        return folder.read(folder.locate(text))[0]
    if text in names():
        return path(text)
    if "/" in text or "\\" in text or candidate.suffix:
        return candidate
    return path(text)  # raises, listing the names


def comparison(extra: dict, metric: str, mean, ci, tasks: int, steps: int, seed: int
               ) -> list[str]:
    """Lines comparing a fresh evaluation with the figures a packaged fine-tuner reported."""
    entry = extra.get("pretrained") or {}
    reported = entry.get("reported")
    if not reported or metric not in reported.get("values", {}):
        return []
    ev = reported["evaluate"]
    head = f"reported by `{entry.get('command')}` ({reported['artefact']}, {ev['tasks']} tasks)"
    if (tasks, steps, seed) != (ev["tasks"], ev["steps"], ev["seed"]):
        return [f"{head}: rerun with --tasks {ev['tasks']} --steps {ev['steps']} "
                f"--seed {ev['seed']} to compare"]
    lines = [f"{head} against now:", f"{'step':>5}  {'reported':>18}  {'now':>18}  within CI"]
    within = 0
    for k, (r_mean, r_ci) in sorted(reported["values"][metric].items(), key=lambda x: int(x[0])):
        k = int(k)
        if k >= len(mean) or r_mean is None:
            continue
        now, now_ci = float(mean[k]), float(ci[k])
        ok = abs(now - r_mean) <= (r_ci or 0.0)
        within += ok
        lines.append(f"{k:>5}  {r_mean:>9.4f} ± {r_ci or 0:<6.4f}  {now:>9.4f} ± {now_ci:<6.4f}"
                     f"  {'yes' if ok else 'NO'}")
    lines.append(f"reproduced: {within} of {len(lines) - 2} steps within the reported 95% CI")
    return lines


__all__ = ["DIR", "catalogue", "comparison", "info", "names", "path", "resolve"]
