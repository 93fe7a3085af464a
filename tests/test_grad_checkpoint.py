"""Gradient checkpointing of inner steps (``MethodConfig.checkpoint_steps``).

Checkpointed unrolls must give the meta-gradients of the plain ones (float64, FO-LFT,
second-order MAML, ZO-LFT whose random directions must be replayed on recomputation, nested
rule states, incongruous groups), leave the random streams where the plain run leaves them,
and keep far fewer tensors alive for backward.
"""

import weakref

import pytest
import torch
from conftest import double_tasks

from lft import MetaTrainer, Method, SineFamily, TrainConfig, preset
from lft.meta.learners import MethodConfig
from lft.tasks import MixtureFamily
from lft.tasks.base import TaskBatch, TaskFamily


class _Saved:
    """A tensor autograd saved for backward, held so that a weak reference tells whether the
    graph still keeps it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


class _DoubleBatch(TaskBatch):
    """A task batch whose data and random initial optimisees are float64."""

    def init(self, generator=None):
        return self.model.init(self.size, generator, dtype=torch.float64)


class Float64(TaskFamily):
    """Wraps a family so that every sampled batch is float64 (exact gradient comparisons)."""

    def __init__(self, family: TaskFamily):
        self.family, self.name, self.congruous = family, family.name, family.congruous
        if hasattr(family, "model"):
            self.model = family.model

    def sample(self, n, generator=None):
        out = self.family.sample(n, generator)
        batches = out if isinstance(out, list) else [out]
        doubled = [_DoubleBatch(b.model, double_tasks(b).data, b.loss_fn, b.metric_fns,
                                b.primary_metric) for b in batches]
        return doubled if isinstance(out, list) else doubled[0]

    def config(self):
        return self.family.config()


def meta_step(cfg: MethodConfig, family: TaskFamily, meta_batch: int = 3):
    """One meta-iteration; returns the loss and gradients of every window, the oracle
    generator's state afterwards, and the bytes of tensors the first window's forward pass
    saved for backward."""
    method = Method(cfg, family, seed=3).double()
    trainer = MetaTrainer(method, family, TrainConfig(iterations=1, meta_batch=meta_batch,
                                                      seed=5))
    windows, saved, forward_bytes = [], [], []

    def apply(loss):
        # what the forward pass left alive for backward (not the transient inner gradients)
        forward_bytes.append(sum(r().tensor.numel() * r().tensor.element_size()
                                 for r in saved if r() is not None))
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        windows.append((loss.detach().clone(), [p.grad.clone() for p in trainer.params]))
        return 0.0  # nothing applied: every window sees the same parameters

    def pack(t):
        holder = _Saved(t)
        saved.append(weakref.ref(holder))
        return holder

    trainer._apply = apply
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda holder: holder.tensor):
        trainer.iteration(0)
    return windows, trainer.streams[0]["oracle"].get_state(), forward_bytes[0]


def assert_same(plain, ckpt):
    (wa, ga, _), (wb, gb, _) = plain, ckpt
    assert len(wa) == len(wb) > 0
    for (la, pa), (lb, pb) in zip(wa, wb):
        torch.testing.assert_close(lb, la, rtol=1e-12, atol=0)
        for a, b in zip(pa, pb):
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    assert torch.equal(ga, gb)  # the random stream ends where the plain run leaves it


LSTM = {"hidden": 4}
CASES = {
    "fo-lft": lambda: preset("lft", horizon=7, rule=LSTM),
    "fo-lft-truncated": lambda: preset("lft", horizon=9, truncation=5, rule=LSTM),
    "maml-second-order": lambda: preset("maml", horizon=7),
    "zo-lft": lambda: preset("lft", zo=True, horizon=7, rule=LSTM, oracle={"q": 3}),
    "zo-lft-rademacher-forward": lambda: preset(
        "lft", zo=True, horizon=5, rule=LSTM,
        oracle={"q": 2, "directions": "rademacher", "scheme": "forward"}),
    "lft+init-nested-state": lambda: preset("lft+init", horizon=6,
                                            rule={"rules": [{"type": "sgd", "lr": 0.01},
                                                            {"type": "lstm", "hidden": 3}]}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_checkpointed_meta_gradients_equal_plain(name):
    family = Float64(SineFamily(hidden=(8,)))
    plain = meta_step(CASES[name](), family)
    cfg = CASES[name]()
    cfg.checkpoint_steps = 2
    assert_same(plain, meta_step(cfg, family))


def test_incongruous_groups_and_nested_states():
    """One segment run per shape group, with the ``Sum`` rule's nested state tuples."""
    family = Float64(MixtureFamily([SineFamily(hidden=(8,)), SineFamily(hidden=(5, 4))]))
    rule = {"type": "sum", "rules": [{"type": "sgd", "lr": 0.01}, {"type": "lstm", "hidden": 3,
                                                                   "features": ["logsign"]}]}

    def make(**kw):
        cfg = preset("lft", zo=True, horizon=6, oracle={"q": 2}, **kw)
        cfg.rule = rule  # replaced, not merged into the default LSTM's options
        return cfg

    plain = meta_step(make(), family, meta_batch=4)
    assert_same(plain, meta_step(make(checkpoint_steps=4), family, meta_batch=4))


def test_checkpointing_keeps_fewer_saved_tensors():
    """Untruncated second-order MAML over 12 steps: what the forward pass keeps for backward
    (segment boundaries only) is a small fraction of the plain graph."""
    family = Float64(SineFamily(hidden=(8,)))
    _, _, plain = meta_step(preset("maml", horizon=12), family)
    _, _, ckpt = meta_step(preset("maml", horizon=12, checkpoint_steps=4), family)
    assert ckpt < 0.05 * plain


def test_off_by_default_and_serialised_only_when_on():
    cfg = preset("lft")
    assert cfg.checkpoint_steps is None and "checkpoint_steps" not in cfg.to_dict()
    on = preset("lft", checkpoint_steps=5)
    assert on.to_dict()["checkpoint_steps"] == 5
    assert MethodConfig.from_dict(on.to_dict()).checkpoint_steps == 5
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match="checkpoint_steps"):
            preset("lft", checkpoint_steps=bad)


def test_segment_as_long_as_the_window_is_the_plain_loop():
    """Segments covering the whole window give nothing to save: the plain loop runs, exactly."""
    family = Float64(SineFamily(hidden=(8,)))
    (wa, ga, _), (wb, gb, _) = (meta_step(preset("lft", horizon=4, rule=LSTM,
                                                 checkpoint_steps=c), family) for c in (None, 4))
    assert torch.equal(ga, gb)
    for (la, pa), (lb, pb) in zip(wa, wb):
        assert torch.equal(la, lb) and all(torch.equal(a, b) for a, b in zip(pa, pb))
