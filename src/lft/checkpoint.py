"""Checkpoints: one safetensors file of tensors with the JSON configuration in its header.

Loading never executes code: safetensors holds raw tensors and a JSON header, nothing is
unpickled. Writes are atomic (temporary file in the same folder, flushed to disk, then
``os.replace``), so a crash mid-write never corrupts an existing checkpoint.

A checkpoint written during meta-training also holds the trainer's state (Adam moments, random
generator states, iteration, statistics) as tensors named ``trainer/...`` and a ``trainer`` JSON
header, so that the run can be resumed; :func:`read` and :func:`load` ignore that part.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from lft import rules
from lft.meta.learners import Method, MethodConfig
from lft.rules.base import UpdateRule
from lft.safefiles import atomic_path, read_tensors
from lft.tasks import TaskFamily, build_family
from lft.tasks.presets import with_data_dir
from lft.validation import one_line

FORMAT = "lft-checkpoint"
VERSION = 1
TRAINER_PREFIX = "trainer/"


class CheckpointError(ValueError):
    """A checkpoint is missing, of the wrong kind, or inconsistent with its configuration.

    A ``ValueError`` with a one-line message, so ``lft`` reports it as ``lft: error: ...``.
    """

    def __init__(self, message: str):
        super().__init__(one_line(message))


def save(path: str | Path, method: Method, family: TaskFamily, extra: dict | None = None,
         trainer_state: tuple[dict[str, torch.Tensor], dict] | None = None) -> Path:
    """Save ``method``'s meta-learned tensors and the configuration that rebuilds it.

    ``trainer_state`` (from :meth:`lft.meta.MetaTrainer.training_state`) makes the checkpoint
    resumable.
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    config = method.config.to_dict()
    if config["oracle"].get("basis") is not None:  # a fitted subspace's basis is in the weights:
        config["oracle"] = {**config["oracle"], "basis": None}  # no machine path in the file
    meta = {"format": FORMAT, "version": str(VERSION),
            "method": json.dumps(config),
            "family": json.dumps(family.config()),
            "extra": json.dumps(extra or {})}
    if trainer_state is not None:
        state_tensors, state_meta = trainer_state
        tensors.update({TRAINER_PREFIX + k: v.detach().cpu().contiguous()
                        for k, v in state_tensors.items()})
        meta["trainer"] = json.dumps(state_meta)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _read_all(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    return read_tensors(path, FORMAT, "checkpoint", "pass the .safetensors file that 'lft train' "
                        "wrote", CheckpointError)


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and parsed header of a checkpoint, with a clear error for anything else."""
    tensors, header = _read_all(path)
    try:
        meta = {k: json.loads(header[k]) for k in ("method", "family", "extra")}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a damaged configuration header ({e})") from None
    meta["version"] = int(header.get("version", "0"))
    return {k: v for k, v in tensors.items() if not k.startswith(TRAINER_PREFIX)}, meta


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The trainer's state saved in a checkpoint (``None`` if it holds none)."""
    tensors, header = _read_all(path)
    if "trainer" not in header:
        return None
    try:
        meta = json.loads(header["trainer"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has a damaged training-state header ({e})") from None
    n = len(TRAINER_PREFIX)
    return {k[n:]: v for k, v in tensors.items() if k.startswith(TRAINER_PREFIX)}, meta


def load(path: str | Path, data_dir: str | None = None,
         family: TaskFamily | None = None) -> tuple[Method, TaskFamily, dict]:
    """Rebuild the method and its task family from a checkpoint; returns ``extra`` too.

    ``data_dir`` (optional) replaces the image folder the family was saved with (that of the
    machine that meta-trained it). ``family`` (optional) is the family to build the method for
    instead of the checkpoint's own, which is then not rebuilt (its data need not be present):
    a coordinate-wise rule fits any family, a learned initialisation only its own shape.
    """
    tensors, meta = read(path)
    if family is None:
        family_config = meta["family"] if data_dir is None else with_data_dir(meta["family"],
                                                                              data_dir)
        family = build_family(family_config)
    method = Method(MethodConfig.from_dict(meta["method"]), family)
    label = f"method {describe_rule(method.rule.config())} on {family.name}"
    load_weights(method, tensors, path, label, label,
                 fix="its tensors do not match its configuration: the file was damaged or "
                     "edited; use the checkpoint 'lft train' wrote")
    return method, family, meta["extra"]


def describe_rule(config: dict) -> str:
    """A short name of a rule configuration, e.g. ``lstm(hidden=10, layers=1, ...)``."""
    kind = config.get("type", "?")
    if kind == "sum":
        return f"sum({', '.join(describe_rule(r) for r in config.get('rules', []))})"
    if kind == "lstm":
        return (f"lstm(hidden={config.get('hidden')}, layers={config.get('layers')}, "
                f"features={'+'.join(config.get('features', []))}, bias={config.get('bias')})")
    return str(kind)


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path,
                 saved: str, target: str, fix: str) -> None:
    """``module.load_state_dict(tensors, strict=True)``, or one :class:`CheckpointError` line
    that names the checkpoint's configuration (``saved``), the target's (``target``), the first
    differing tensors and ``fix``."""
    want = module.state_dict()
    missing = [k for k in want if k not in tensors]
    unexpected = [k for k in tensors if k not in want]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in tensors and tensors[k].shape != want[k].shape]
    problems = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
        [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []) + (
        [f"shapes {', '.join(shapes[:3])}"] if shapes else [])
    if problems:
        where = (f"{path} holds {saved}, which does not fit {target}" if saved != target
                 else f"{path} ({saved})")
        raise CheckpointError(f"{where}: {'; '.join(problems)}; fix: {fix}")
    module.load_state_dict(tensors, strict=True)


def check_warm_start(path: str | Path, method: Method, family: TaskFamily) -> None:
    """Refuse ``--init-from path`` unless its learned initialisation fits ``method``'s, naming
    both task families (e.g. a MAML checkpoint of the sine MLP for an MNIST run)."""
    if not method.config.learn_init:
        raise CheckpointError("--init-from needs a method that learns its initialisation "
                              "(--method maml, or --method lft --learn-init)")
    tensors, meta = read(path)
    theta0 = tensors.get("init.theta0")
    if theta0 is None:
        raise CheckpointError(f"{path} holds no learned initialisation (method "
                              f"{meta['method'].get('name')!r}); fix: --init-from a MAML or "
                              "lft+init checkpoint")
    want = method.init.theta0
    if theta0.shape != want.shape:
        saved = meta["family"].get("task", "?")
        raise CheckpointError(f"{path} holds an initialisation of {theta0.numel()} parameters "
                              f"for {saved!r} tasks ({_family_label(meta['family'])}), but this "
                              f"run's {family.name!r} tasks need {want.numel()}; fix: "
                              "--init-from a checkpoint meta-trained on the same task family")


def _family_label(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()
                     if k not in ("task", "data_dir", "families") and not isinstance(v, dict))


def load_rule(path: str | Path, rule: UpdateRule | dict | None = None) -> UpdateRule:
    """The meta-learned update rule of a checkpoint, as an :class:`~lft.rules.UpdateRule`.

    Without ``rule`` the rule is built from the checkpoint's own configuration. With ``rule`` (a
    rule or a rule configuration) the weights are loaded into it, after checking that it is the
    same kind of rule, with the same input features and tensor shapes: otherwise a
    :class:`CheckpointError` names both configurations (e.g. a checkpoint of a 10-unit LSTM
    loaded into a 20-unit one).
    """
    tensors, meta = read(path)
    method = meta["method"]
    saved = method.get("rule", {})
    if not method.get("learn_rule", True):
        raise CheckpointError(f"{path} holds no meta-learned update rule: method "
                              f"{method.get('name')!r} fine-tunes with the fixed rule "
                              f"{describe_rule(saved)}; pass a checkpoint of lft or l2o")
    built = rules.build(saved)
    if rule is None:
        rule = built
    elif not isinstance(rule, UpdateRule):
        rule = rules.build(rule)
    target = rule.config()
    fix = (f"build the rule from the checkpoint (lft.checkpoint.load_rule({str(path)!r}) or "
           "lft.FineTuner.load), or use a rule configured like the checkpoint's")
    what = f"a {describe_rule(built.config())} rule", f"a {describe_rule(target)} rule"
    if saved.get("type") != target.get("type") or (
            saved.get("type") == "lstm" and list(saved.get("features", [])) != list(
                target.get("features", []))):
        raise CheckpointError(f"{path} holds {what[0]}, not {what[1]}; fix: {fix}")
    rule_tensors = {k[len("rule."):]: t for k, t in tensors.items() if k.startswith("rule.")}
    load_weights(rule, rule_tensors, path, *what, fix=fix)
    return rule
