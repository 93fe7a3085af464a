"""A meta-trained fine-tuner for your own model: ``torch.optim`` drop-in and functional form.

::

    ft = lft.FineTuner.load("sine-fo-lft")        # a packaged name or a checkpoint path
    opt = ft.optimizer(model)                     # or model.parameters(); a torch.optim.Optimizer
    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()

    state = ft.init(params)                       # torch.func users: dicts of tensors
    params, state = ft.update(grads, state, params)

    ft.save_pretrained("my-fine-tuner")           # a Hugging-Face-Hub-compatible folder
    ft = lft.FineTuner.from_pretrained("my-fine-tuner")   # or a hub id "owner/name"

    method = ft.method_for(family)                # a lft.meta.Method, for lft.meta.evaluate

Only the update rule ``m_phi`` travels: a learned initialisation in the checkpoint (MAML,
``lft+init``) belongs to the model it was meta-trained with and is not used here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lft import checkpoint, pretrained, validation
from lft.meta.learners import Method, MethodConfig
from lft.models.roles import roles_from_names
from lft.optim import LearnedOptimizer, rule_like
from lft.oracles import is_zeroth_order
from lft.pretrained import folder
from lft.rules.base import State, UpdateRule
from lft.tasks.base import TaskFamily


class FineTuner:
    """A meta-trained update rule with the oracle it was meta-trained with.

    Build one with :meth:`load` or :meth:`from_pretrained`. Attributes: ``name``, ``rule`` (the
    :class:`~lft.rules.UpdateRule`, frozen), ``oracle`` (configuration), ``method`` and
    ``family`` (the configurations it was meta-trained with) and ``info`` (description,
    command, reported figures of a packaged fine-tuner).
    """

    def __init__(self, rule: UpdateRule, oracle: dict, name: str = "fine-tuner",
                 method: dict | None = None, family: dict | None = None,
                 info: dict | None = None):
        self.rule = rule.requires_grad_(False).eval()
        self.oracle = dict(oracle)
        self.name, self.method, self.family = name, method or {}, family or {}
        self.info = info or {}
        self._rules: dict = {}

    @classmethod
    def load(cls, name_or_path: str | Path) -> FineTuner:
        """A packaged fine-tuner by name (see :meth:`list`), any ``lft train`` checkpoint, or a
        folder written by :meth:`save_pretrained`."""
        if Path(name_or_path).is_dir() or str(name_or_path).startswith(folder.HUB_PREFIX):
            return cls.from_pretrained(name_or_path)
        path = pretrained.resolve(name_or_path)
        _, meta = checkpoint.read(path)
        method = meta["method"]
        if not method.get("learn_rule", True):
            raise checkpoint.CheckpointError(
                f"{path} holds no meta-learned update rule: method {method.get('name')!r} "
                f"fine-tunes with the fixed rule {method.get('rule')} (MAML learns an "
                "initialisation for its own model only); use torch.optim with that rule, or "
                f"an lft/l2o checkpoint such as {', '.join(pretrained.names())}")
        rule = checkpoint.load_rule(path)
        return cls(rule, method.get("oracle", {"type": "fo"}), Path(path).stem, method,
                   meta["family"], meta["extra"].get("pretrained"))

    @classmethod
    def from_pretrained(cls, folder_or_hub_id: str | Path, revision: str | None = None,
                        cache_dir: str | Path | None = None,
                        local_files_only: bool = False) -> FineTuner:
        """A fine-tuner from a folder written by :meth:`save_pretrained`, or from the Hugging
        Face Hub by id (``"owner/name"``).

        Hub ids need ``pip install lft[hub]`` (``huggingface_hub``) to download; ``revision``
        (branch, tag or commit), ``cache_dir`` and ``local_files_only`` are passed to it, and
        ``HF_HUB_OFFLINE=1`` keeps it offline. Without it, a copy already in the Hugging Face
        cache is used. Local folders need nothing extra; loading never executes code.
        """
        where = folder.locate(folder_or_hub_id, revision, cache_dir, local_files_only)
        weights, config = folder.read(where)
        ft = cls.load(weights)
        ft.name, ft.info = config.get("name", ft.name), config.get("info") or {}
        return ft

    def save_pretrained(self, directory: str | Path, overwrite: bool = False,
                        repo_id: str | None = None) -> Path:
        """Write this fine-tuner as a Hugging-Face-Hub-compatible folder; returns it.

        The folder holds ``config.json`` (name, method, task family, ``info``: no machine
        paths), ``model.safetensors`` (the rule's tensors, an lft checkpoint) and ``README.md``
        (a model card with the reported figures and the command that re-measures them), each
        written atomically. Upload it with ``huggingface-cli upload owner/name DIRECTORY``.

        Args:
            directory: a new or empty folder, or one written before by this method.
            overwrite: write into a non-empty folder that is not an lft pretrained folder.
            repo_id: the hub id (``owner/name``) the model card's usage lines name.
        """
        method = {**(self.method or MethodConfig(name=self.name).to_dict()),
                  "rule": self.rule.config(), "oracle": self.oracle}
        return folder.write(directory, self.rule.state_dict(), self.name, method, self.family,
                            self.info, overwrite=overwrite, repo_id=repo_id)

    def method_for(self, family: TaskFamily, seed: int = 0) -> Method:
        """A :class:`~lft.meta.Method` that fine-tunes ``family``'s tasks with this rule and
        oracle, e.g. for :func:`lft.meta.evaluate` on your own task family.

        The rule acts per coordinate, so it fits any family; only the rule travels (a learned
        initialisation is not kept by a fine-tuner: use :func:`fine_tuner_method` with the
        checkpoint for that).
        """
        base = self.method or MethodConfig(name=self.name).to_dict()
        cfg = MethodConfig.from_dict({**base, "rule": self.rule.config(),
                                      "oracle": self.oracle, "learn_init": False})
        method = Method(cfg, family, seed=seed)
        method.rule.load_state_dict(self.rule.state_dict(), strict=True)
        return method

    @staticmethod
    def list() -> dict[str, str]:
        """``{name: one-line description}`` of the fine-tuners shipped in the package."""
        return pretrained.catalogue()

    @property
    def zeroth_order(self) -> bool:
        """Whether the rule was meta-trained on zeroth-order (function-value) estimates."""
        return is_zeroth_order(self.oracle)

    def optimizer(self, params, lr_scale: float = 1.0, zeroth_order: bool | None = None,
                  seed: int = 0, **oracle) -> LearnedOptimizer:
        """A ``torch.optim.Optimizer`` that fine-tunes ``params`` with this rule.

        Args:
            params: ``model``, ``model.parameters()``, ``model.named_parameters()`` or
                parameter groups (names give the rule's role feature exact roles).
            lr_scale: multiplies the learned step (the group key is ``lr``, for schedulers).
            zeroth_order: estimate gradients from loss values, ``step(closure)`` (default:
                whether the rule was meta-trained that way).
            seed: seeds the zeroth-order directions.
            oracle: zeroth-order overrides ``q``, ``mu``, ``directions``, ``scheme``.
        """
        lr_scale = validation.positive("lr_scale", lr_scale, "FineTuner.optimizer")
        if zeroth_order is not None:
            validation.boolean("zeroth_order", zeroth_order, "FineTuner.optimizer")
        zo = self.zeroth_order if zeroth_order is None else zeroth_order
        settings = {**(self.oracle if self.zeroth_order else {}), **oracle}
        if zo and settings.get("type") == "subspace" and settings.get("basis") is None:
            raise ValueError(
                f"FineTuner.optimizer: {self.name} queries along {settings.get('q')} directions "
                f"fitted for optimisees of {settings.get('dim')} parameters (one victim's "
                "perturbation); the optimizer needs them as a file: pass basis=FILE (the "
                "checkpoint's 'oracle.basis' tensor, written with lft.oracles.save_basis), "
                "or use lft attack / lft evaluate, which read them from the checkpoint")
        return LearnedOptimizer(params, self.rule, lr=lr_scale, zeroth_order=zo,
                                oracle=settings, seed=seed)

    def init(self, params: Mapping[str, torch.Tensor]) -> dict[str, State]:
        """Functional form: the rule state of a dict of named parameters (roles from names)."""
        roles = roles_from_names(list(params))
        return {name: rule_like(self.rule, p, self._rules).init(p.detach(), torch.tensor(r))
                for (name, p), r in zip(params.items(), roles)}

    def update(self, grads: Mapping[str, torch.Tensor], state: Mapping[str, State],
               params: Mapping[str, torch.Tensor], lr_scale: float = 1.0
               ) -> tuple[dict[str, torch.Tensor], dict[str, State]]:
        """Functional form: ``(new_params, new_state)``; differentiable in params and grads.

        The same arithmetic as one :meth:`LearnedOptimizer.step`, so both give identical
        parameters. Entries of ``params`` without a gradient in ``grads`` are kept unchanged.
        """
        unknown = sorted(set(grads) - (set(params) & set(state)))
        if unknown:
            raise ValueError(f"FineTuner.update: gradients for {unknown[:3]} have no parameter "
                             "or state of that name; fix: pass the dicts of ft.init(params)")
        new_params, new_state = dict(params), dict(state)
        for name, grad in grads.items():
            rule = rule_like(self.rule, params[name], self._rules)
            delta, new_state[name] = rule.update(grad, state[name], params[name])
            new_params[name] = torch.add(params[name], delta, alpha=lr_scale)
        return new_params, new_state

    def __repr__(self) -> str:
        kind = "zeroth-order" if self.zeroth_order else "first-order"
        return f"FineTuner({self.name!r}, {kind}, rule={self.rule.config()['type']})"


def fine_tuner_method(fine_tuner: FineTuner | str | Path, family: TaskFamily, seed: int = 0,
                      target: str | None = None) -> Method:
    """A :class:`~lft.meta.Method` that fine-tunes ``family``'s tasks with a meta-trained
    fine-tuner: a :class:`FineTuner`, a packaged name (``images-fo-lft``), an ``lft train``
    checkpoint, a :meth:`FineTuner.save_pretrained` folder or ``hf://owner/name``.

    From a file, every meta-learned tensor is loaded, a learned initialisation (MAML,
    ``lft+init``) included: it fits only tasks of its own shape, and any other ``family`` is
    refused in one line naming the fine-tuner and ``target`` (default: the family's name). A
    learned rule acts per coordinate and fits any family.
    """
    if isinstance(fine_tuner, FineTuner):
        return fine_tuner.method_for(family, seed)
    source = pretrained.resolve(fine_tuner)
    tensors, meta = checkpoint.read(source)
    cfg = MethodConfig.from_dict(meta["method"])
    method = Method(cfg, family, seed=seed)
    trained_on = meta["family"].get("task", "?")
    checkpoint.load_weights(method, tensors, source,
                            f"a {cfg.label} fine-tuner meta-trained on {trained_on} tasks",
                            target or f"{family.name} tasks",
                            fix="a learned initialisation fits only its own task shape: pass "
                                "an lft/l2o fine-tuner (its rule fits any shape) or a rule")
    return method


__all__ = ["FineTuner", "fine_tuner_method"]
