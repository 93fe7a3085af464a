"""A meta-trained update rule as a ``torch.optim.Optimizer``, for any ``nn.Module``.

:class:`LearnedOptimizer` applies a rule (usually a :class:`~lft.rules.CoordinateLSTM` loaded
by :class:`lft.FineTuner`) to every parameter: ``p <- p + lr * delta`` with
``delta, state = rule.update(p.grad, state, p)``. The rule's per-coordinate state (LSTM hidden
and cell, the moments of the ``adam`` feature, the role one-hot) *is* the optimiser state, so
``state_dict()`` / ``load_state_dict()`` save and restore it and a restored optimiser continues
bit-identically. Memory: about ``2 * hidden + 2`` floats of state per parameter coordinate.

Zeroth-order mode (rules meta-trained with ``--zo``): ``step(closure)`` estimates the gradient
from loss values only, ``g = sum_j (f(p + mu u_j) - f(p)) u_j / (mu q)`` with random directions
``u_j`` (the checkpoint's oracle: Rademacher or Gaussian, forward or antithetic differences),
so the model need not be differentiable. The closure must return the loss and must not call
``backward``; it is called ``q + 1`` (forward) or ``2q + 1`` (antithetic) times per step.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lft import validation
from lft.models.roles import roles_from_names, roles_from_shapes
from lft.oracles import DEFAULT_ZO, build_oracle
from lft.rules.base import UpdateRule
from lft.seeding import derive_seed


def rule_like(rule: UpdateRule, tensor: torch.Tensor, cache: dict) -> UpdateRule:
    """``rule`` in ``tensor``'s dtype and device (a cached copy when they differ)."""
    ref = next(rule.parameters(), None)
    if ref is None or (ref.dtype == tensor.dtype and ref.device == tensor.device):
        return rule
    key = (tensor.dtype, tensor.device)
    if key not in cache:
        cache[key] = copy.deepcopy(rule).to(device=tensor.device, dtype=tensor.dtype)
    return cache[key]


def as_param_groups(params) -> list[dict]:
    """Normalise what ``torch.optim`` accepts (and an ``nn.Module``) to groups of tensors, with
    ``param_names`` when names are known (a module, ``named_parameters()`` or named groups)."""
    if isinstance(params, nn.Module):
        params = params.named_parameters()
    if isinstance(params, torch.Tensor):
        raise TypeError("pass an iterable of parameters (model.parameters()), not one tensor")
    items = list(params)
    if not items:
        raise ValueError("the optimiser got an empty parameter list")
    groups = items if isinstance(items[0], dict) else [{"params": items}]
    out = []
    for group in groups:
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
        if ps and all(isinstance(p, tuple) for p in ps):
            group["param_names"] = [n for n, _ in ps]
            ps = [p for _, p in ps]
        group["params"] = ps
        out.append(group)
    return out


class LearnedOptimizer(torch.optim.Optimizer):
    """``torch.optim`` front end of an update rule (see the module docstring).

    Args:
        params: parameters, ``(name, parameter)`` pairs, parameter groups or an ``nn.Module``.
            Names give exact roles for the ``role`` feature; bare tensors get them from order
            and shapes (:func:`lft.models.roles.roles_from_shapes`).
        rule: the update rule; it is not modified.
        lr: multiplies the learned update (1.0: the step the rule was meta-trained to take).
            Named ``lr`` so that ``torch.optim.lr_scheduler`` schedules can decay it.
        zeroth_order: estimate gradients from loss values with ``step(closure)``.
        oracle: the zeroth-order oracle (:func:`lft.oracles.build_oracle`: ``type``, default
            ``zo``, and its options, default :data:`lft.oracles.DEFAULT_ZO`),
            the same estimators meta-training uses; a history-guided one keeps its memory
            across steps.
        seed: seeds the zeroth-order directions (step ``t`` draws from its own stream).
    """

    def __init__(self, params, rule: UpdateRule, lr: float = 1.0, zeroth_order: bool = False,
                 oracle: dict | None = None, seed: int = 0):
        where = "LearnedOptimizer"
        lr = validation.positive("lr (the scale of the learned step)", lr, where)
        if not isinstance(rule, UpdateRule):
            raise TypeError(f"{where} needs an lft update rule (lft.FineTuner.load(...).rule), "
                            f"got {type(rule).__name__}")
        super().__init__(as_param_groups(params), {"lr": lr})
        self.rule = rule
        self.zeroth_order = validation.boolean("zeroth_order", zeroth_order, where)
        settings = {k: v for k, v in (oracle or {}).items() if k != "differentiable"}
        kind = settings.pop("type", "zo")
        if kind == "fo":
            raise ValueError(f"{where}: a zeroth-order oracle has a zeroth-order type, not 'fo'")
        defaults = DEFAULT_ZO.json_options() if kind == "zo" else {}
        self._estimator = build_oracle({"type": kind, **defaults, **settings})  # validates
        self.oracle = self._estimator.config()
        self._memory = None  # a history-guided oracle's past estimates, across steps
        self.seed = validation.integer("seed", seed, None, where=where)
        self._rules: dict = {}

    def _roles(self) -> dict[torch.Tensor, int]:
        params = [p for g in self.param_groups for p in g["params"]]
        if all("param_names" in g for g in self.param_groups):
            roles = roles_from_names([n for g in self.param_groups for n in g["param_names"]])
        else:
            roles = roles_from_shapes([tuple(p.shape) for p in params])
        return dict(zip(params, roles))

    @torch.no_grad()
    def step(self, closure=None):
        """One fine-tuning step; returns the closure's loss (if a closure was given)."""
        if self.zeroth_order:
            if closure is None:
                raise ValueError("zeroth-order mode estimates the gradient from loss values: "
                                 "call step(closure) with a closure that returns the loss")
            loss, grads = self._zo_gradients(closure)
        else:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            grads = {p: p.grad for g in self.param_groups for p in g["params"]
                     if p.grad is not None}
        roles = None
        for group in self.param_groups:
            for p in group["params"]:
                grad = grads.get(p)
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise ValueError("LearnedOptimizer does not support sparse gradients")
                rule = rule_like(self.rule, p, self._rules)
                state = self.state[p]
                if "rule_state" not in state:
                    roles = roles if roles is not None else self._roles()
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["rule_state"] = rule.init(p.detach(), torch.tensor(roles[p]))
                delta, state["rule_state"] = rule.update(grad, state["rule_state"], p.detach())
                p.add_(delta, alpha=group["lr"])
                state["step"] = state["step"] + 1
        return loss

    def _zo_gradients(self, closure):
        """The oracle's estimate for every parameter, from loss values only
        (:mod:`lft.oracles`, as in meta-training): the parameters are one flat optimisee,
        and each query sets them and calls the closure."""
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        first = self.state[params[0]] if params else {}
        t = int(first.get("step", torch.zeros(())))
        gen = torch.Generator().manual_seed(derive_seed(self.seed, f"zo-directions-{t}"))
        theta = torch.cat([p.detach().reshape(-1) for p in params])[None]
        f0 = closure()

        def put(vec: torch.Tensor) -> None:
            for p, part in zip(params, vec.split([p.numel() for p in params])):
                p.copy_(part.view_as(p))

        def loss_fn(th: torch.Tensor) -> torch.Tensor:
            if th.shape == theta.shape and torch.equal(th, theta):
                return torch.tensor([float(f0)], dtype=th.dtype)  # the base point: asked once
            values = []
            for row in th.reshape(-1, th.shape[-1]):
                put(row)
                values.append(float(closure()))
            put(theta[0])
            return torch.tensor(values, dtype=th.dtype).reshape(th.shape[:-1])

        est, self._memory = self._estimator.estimate(loss_fn, theta, gen, self._memory)
        parts = est[0].split([p.numel() for p in params])
        return f0, {p: e.view_as(p).to(p.dtype) for p, e in zip(params, parts)}


__all__ = ["LearnedOptimizer", "as_param_groups", "rule_like"]
