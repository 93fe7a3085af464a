"""The inner loop: fine-tune a batch of tasks with a rule fed by an oracle.

:func:`trajectory` yields the steps; :func:`segment` runs a few of them and sums their
meta-losses, and :func:`checkpointed_segment` does the same under gradient checkpointing
(``MethodConfig.checkpoint_steps``), trading one extra forward pass for memory that grows with
the number of segments rather than of steps in long untruncated unrolls.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.checkpoint import checkpoint

from lft.rules.base import State, UpdateRule
from lft.tasks.base import TaskBatch


def trajectory(rule: UpdateRule, oracle, tasks: TaskBatch, theta: torch.Tensor, state: State,
               steps: int, generator: torch.Generator | None = None
               ) -> Iterator[tuple[torch.Tensor, State]]:
    """Yield ``(theta_k, state_k)`` for ``k = 1..steps`` (Eq. 3, Algorithm 1 step 6).

    The oracle only ever sees the fine-tuning split; its memory (the past estimates a
    history-guided oracle keeps) starts empty with each call. Whether the result carries a
    graph back to the rule's parameters depends on the caller's grad mode: the same loop serves
    meta-training (graph kept) and evaluation (``torch.no_grad``).
    """

    def loss_fn(th: torch.Tensor) -> torch.Tensor:
        return tasks.loss(th, "train")

    memory = None
    with_memory = hasattr(oracle, "estimate")  # any callable ``oracle(loss_fn, theta, gen)`` works
    for _ in range(steps):
        if with_memory:
            grad, memory = oracle.estimate(loss_fn, theta, generator, memory)
        else:
            grad = oracle(loss_fn, theta, generator)
        delta, state = rule.update(grad, state, theta)
        theta = tasks.project(theta + delta)
        yield theta, state


def segment(rule: UpdateRule, oracle, tasks: TaskBatch, theta: torch.Tensor, state: State,
            steps: int, generator: torch.Generator | None, step_loss, loss: torch.Tensor
            ) -> tuple[torch.Tensor, State, torch.Tensor]:
    """Run ``steps`` steps of :func:`trajectory` and add ``step_loss(j, theta_j)`` to ``loss``.

    ``step_loss(j, theta)`` is the weighted meta-loss of the ``j``-th step of the segment
    (``None`` where the step has none, e.g. MAML's inner steps). Returns the last optimisee,
    rule state and the running loss. This is the unit :func:`checkpointed_segment` recomputes.
    """
    for j, (theta, state) in enumerate(trajectory(rule, oracle, tasks, theta, state, steps,
                                                  generator)):
        term = step_loss(j, theta)
        if term is not None:
            loss = loss + term
    return theta, state, loss


def _flatten(state: State) -> tuple[list[torch.Tensor], object]:
    """The tensors of a (nested) rule-state tuple, and what :func:`_unflatten` rebuilds it from."""
    if isinstance(state, tuple):
        leaves, specs = [], []
        for s in state:
            sub, spec = _flatten(s)
            leaves += sub
            specs.append(spec)
        return leaves, tuple(specs)
    return [state], None


def _unflatten(leaves: list[torch.Tensor], spec) -> State:
    it = iter(leaves)

    def build(sp):
        return next(it) if sp is None else tuple(build(s) for s in sp)

    return build(spec)


def checkpointed_segment(rule: UpdateRule, oracle, tasks: TaskBatch, theta: torch.Tensor,
                         state: State, steps: int, generator: torch.Generator | None, step_loss,
                         loss: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor]:
    """:func:`segment` under gradient checkpointing: the same values, but only the segment's
    inputs are kept for backward, and its steps are run again (with autograd) when backward
    reaches them.

    An untruncated unroll of ``H`` steps in segments of ``c`` so keeps ``H / c`` boundaries
    (optimisee, rule state, running loss) plus one segment's graph instead of the graph of all
    ``H`` steps, for about one extra forward pass. The forward pass runs without autograd and
    the backward pass recomputes the segment and back-propagates through it
    (``torch.utils.checkpoint`` in its reentrant form: in the non-reentrant form, the gradient
    the oracle takes at every step would itself trigger a recomputation of the segment so far,
    and the second-order oracle's graph would be kept). It therefore needs ``backward()``, not
    ``torch.autograd.grad``, on the meta-loss, which is what the trainer calls. An explicit
    ``generator`` (the zeroth-order oracle's random directions) is not part of the random
    state checkpointing restores: its state at the segment's start is kept, set again for the
    recomputation, and put back afterwards, so the recomputed steps see the same directions
    and the outer loop's later draws are untouched.
    """
    start = generator.get_state() if generator is not None else None
    leaves, spec = _flatten(state)
    calls = [0]

    def run(_anchor, theta, loss, *leaves):
        calls[0] += 1
        replay = generator is not None and calls[0] > 1
        if replay:  # recomputation during backward: the directions of the forward pass
            now = generator.get_state()
            generator.set_state(start)
        try:
            theta, state, loss = segment(rule, oracle, tasks, theta, _unflatten(list(leaves), spec),
                                         steps, generator, step_loss, loss)
        finally:
            if replay:
                generator.set_state(now)
        return (theta, loss, *_flatten(state)[0])

    # an input that needs a gradient, so that the segment's outputs do even where neither the
    # optimisee nor the state does (a window's start): the gradient reaches the rule's
    # parameters through the recomputation
    anchor = torch.zeros((), device=theta.device, requires_grad=True)
    out = checkpoint(run, anchor, theta, loss, *leaves, use_reentrant=True)
    return out[0], _unflatten(list(out[2:]), spec), out[1]
