"""A meta-trained fine-tuner for your own model: ``torch.optim`` drop-in and functional form.

::

    ft = lft.FineTuner.load("sine-fo-lft")        # a packaged name or a checkpoint path
    opt = ft.optimizer(model)                     # or model.parameters(); a torch.optim.Optimizer
    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()

    state = ft.init(params)                       # torch.func users: dicts of tensors
    params, state = ft.update(grads, state, params)

Only the update rule ``m_phi`` travels: a learned initialisation in the checkpoint (MAML,
``lft+init``) belongs to the model it was meta-trained with and is not used here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from lft import checkpoint, pretrained, validation
from lft.models.roles import roles_from_names
from lft.optim import LearnedOptimizer, rule_like
from lft.oracles import is_zeroth_order
from lft.rules.base import State, UpdateRule


class FineTuner:
    """A meta-trained update rule with the oracle it was meta-trained with.

    Build one with :meth:`load`. Attributes: ``name``, ``rule`` (the
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
        """A packaged fine-tuner by name (see :meth:`list`) or any ``lft train`` checkpoint."""
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


__all__ = ["FineTuner"]
