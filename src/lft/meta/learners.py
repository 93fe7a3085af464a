"""LFT, L2O, MAML and their hybrids as configurations of one engine.

A method is four choices, nothing else:

=============  ===============  ================  =========  ======================
method         update rule      initialisation    meta-loss  learned
=============  ===============  ================  =========  ======================
``lft``        coordinate LSTM  random            ``D_val``  rule
``l2o``        coordinate LSTM  random            ``D_tr``   rule (splits merged)
``maml``       SGD, alpha=0.01  learned           ``D_val``  initialisation
``lft+init``   coordinate LSTM  learned           ``D_val``  rule and initialisation
``lft+adam``   Adam + LSTM      random            ``D_val``  schedule and correction
``sgd/adam``   hand-designed    random            --         nothing (lr tuned)
=============  ===============  ================  =========  ======================

The residual rules ``lft+adam``, ``lft+sgd`` and ``lft+signsgd`` are a hand-designed base at
its tuned learning rate, times a learned per-step, per-layer-kind multiplier
(:class:`lft.rules.Scheduled`), plus a coordinate-LSTM correction whose head starts at zero:
they start as exactly the tuned base, so meta-training is judged on what it adds.

plus the gradient oracle (first- or zeroth-order) and the meta-training horizon. A new method
is a new :class:`MethodConfig`, not a new code path.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from lft import rules as rules_mod
from lft import validation as v
from lft.meta.initializers import LearnedInit, RandomInit
from lft.meta.objective import Objective, check_weighting
from lft.meta.unroll import trajectory
from lft.oracles import DEFAULT_FO, DEFAULT_ZO, OracleConfig, build_oracle, is_zeroth_order
from lft.rules import DEFAULT_LSTM, RuleConfig
from lft.seeding import derive_seed
from lft.seeding import generator as make_generator
from lft.tasks.base import TaskBatch, TaskFamily


@dataclass
class MethodConfig:
    """Everything that defines a fine-tuning method (JSON-serialisable).

    Attributes:
        name: label used in tables (``lft``, ``l2o``, ``maml``, ``lft+init``, ``sgd``, ...).
        rule: update-rule configuration, as JSON (see :func:`lft.rules.build`; a typed
            :class:`lft.rules.RuleConfig` given here is stored as its ``to_dict()``).
        learn_rule: meta-train the rule's parameters.
        learn_init: meta-train a shared initial optimisee (congruous tasks only).
        oracle: gradient-oracle configuration, as JSON (see :func:`lft.oracles.build_oracle`;
            a typed :class:`lft.oracles.OracleConfig` is stored as its ``to_dict()``).
        meta_split: ``"val"`` (LFT, MAML) or ``"train"`` (L2O).
        merge_splits: L2O's convention: fine-tune and meta-update on ``D_tr + D_val``.
        weighting: step weights ``w_k``: ``uniform``, ``linear``, ``final``, or a list of
            ``horizon`` explicit weights (:func:`lft.meta.objective.check_weighting`).
        normalize: divide each task's meta-loss by its initial loss.
        horizon: unrolled fine-tuning steps per meta-training episode.
        truncation: steps per truncated-BPTT window (``None``: the whole horizon).
        checkpoint_steps: gradient checkpointing of the inner loop (``None``: off, the
            default). Each window is unrolled in segments of this many steps whose activations
            are dropped after the forward pass and recomputed during backward, so memory grows
            with ``window / checkpoint_steps`` segment boundaries instead of with every step,
            for about one extra forward pass; the meta-gradient is the same up to rounding.
            Meant for long untruncated unrolls (second-order MAML with many inner steps);
            left out of :meth:`to_dict` while ``None``, so existing configurations, checkpoints
            and resumes are unchanged.
    """

    name: str = "lft"
    rule: dict = field(default_factory=DEFAULT_LSTM.to_dict)
    learn_rule: bool = True
    learn_init: bool = False
    oracle: dict = field(default_factory=DEFAULT_FO.to_dict)
    meta_split: str = "val"
    merge_splits: bool = False
    weighting: str | list[float] = "uniform"
    normalize: bool = True
    horizon: int = 20
    truncation: int | None = None
    checkpoint_steps: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> tuple[RuleConfig, OracleConfig]:
        """Check every field's type and value; a bad one raises one ``ValueError`` line.

        The rule and the oracle are read through their typed configurations
        (:meth:`lft.rules.RuleConfig.from_dict`, :meth:`lft.oracles.OracleConfig.from_dict`),
        which check their options; returned, they are what :class:`Method` builds.
        """
        where = f"method {self.name!r}" if isinstance(self.name, str) else "method"
        v.text("name", self.name, where)
        rule = self._typed("rule", RuleConfig, where)
        oracle = self._typed("oracle", OracleConfig, where)
        for label in ("learn_rule", "learn_init", "merge_splits", "normalize"):
            v.boolean(label, getattr(self, label), where)
        v.choice("meta_split", self.meta_split, ("val", "train"), where)
        self.weighting = check_weighting(self.weighting, where=where)
        self.horizon = v.integer("horizon (unrolled steps)", self.horizon, 1, where=where)
        if not isinstance(self.weighting, str) and len(self.weighting) != self.horizon:
            raise ValueError(f"{where}: the weighting lists {len(self.weighting)} step weights "
                             f"but the horizon is {self.horizon} steps; give one per step")
        if self.truncation is not None:
            self.truncation = v.integer("truncation (steps per window, or None)",
                                        self.truncation, 1, where=where)
        if self.checkpoint_steps is not None:
            self.checkpoint_steps = v.integer("checkpoint_steps (steps per recomputed segment, "
                                              "or None)", self.checkpoint_steps, 1, where=where)
        return rule, oracle

    def _typed(self, label: str, base: type, where: str):
        """Field ``label`` read by ``base`` (checked); a typed value is stored as its JSON."""
        value = getattr(self, label)
        try:
            typed = base.of(value)
        except ValueError as e:
            raise ValueError(f"{where}: {label}: {e}") from None
        if isinstance(value, base):
            setattr(self, label, typed.to_dict())
        return typed

    def to_dict(self) -> dict:
        """The fields as a JSON-serialisable dict (a deep copy; see :meth:`from_dict`).

        ``checkpoint_steps`` is left out while off (``None``), so that configurations written
        before it existed compare equal (``--resume``) and serialise byte for byte as before.
        """
        d = copy.deepcopy(asdict(self))
        if d["checkpoint_steps"] is None:
            del d["checkpoint_steps"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MethodConfig:
        """A configuration from a dict of its fields; unknown or bad fields raise ``ValueError``."""
        d = v.mapping("a method configuration", d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown method option(s) {unknown}; known: {sorted(known)}")
        return cls(**copy.deepcopy(d))

    @property
    def objective(self) -> Objective:
        return Objective(self.meta_split, self.weighting, self.normalize)

    @property
    def oracle_kind(self) -> str:
        """``"fo"`` (gradients) or ``"zo"`` (function values only, whatever the estimator)."""
        return "zo" if is_zeroth_order(self.oracle) else "fo"

    @property
    def label(self) -> str:
        """Table label, e.g. ``FO-LFT`` or ``MAML``."""
        if self.name in ("lft", "l2o", "lft+init", *RESIDUAL):
            return f"{self.oracle_kind.upper()}-{self.name.upper()}"
        return {"maml": "MAML", "sgd": "SGD", "adam": "Adam", "signsgd": "signSGD"}.get(
            self.name, self.name)


#: residual learned rules and their hand-designed base
RESIDUAL = {"lft+adam": "adam", "lft+sgd": "sgd", "lft+signsgd": "signsgd"}
METHODS = ("lft", "l2o", "maml", "lft+init", "sgd", "adam", "signsgd", *RESIDUAL)
#: the learning rate of a hand-designed rule (and of a residual rule's base) when none is given
BASE_LR = 0.01


def residual_rule(base: str, lr: float = BASE_LR, steps: int = 20, schedule: bool = True,
                  lstm: dict | None = None) -> dict:
    """The rule of a residual method: ``base`` at ``lr`` (under a learned per-step, per-role
    multiplier of ``steps`` rows when ``schedule``) plus an LSTM correction whose head starts
    at zero (``lstm`` overrides its options, e.g. ``{"output_scale": 0.01}``)."""
    if base not in ("adam", "sgd", "signsgd"):
        raise ValueError(f"unknown base rule {base!r}; choose from adam, sgd, signsgd")
    first = {"type": base, "lr": v.positive("base learning rate", lr, "residual_rule")}
    if schedule:
        first = {"type": "scheduled", "rule": first,
                 "steps": v.integer("schedule steps", steps, 1, where="residual_rule"),
                 "per_role": True, "gain": 10.0}
    return {"type": "sum", "rules": [first, {**DEFAULT_LSTM.to_dict(), "head_init": 0.0,
                                             **(lstm or {})}]}


def with_lstm_options(rule: dict, options: dict) -> dict:
    """``rule`` with ``options`` set on every coordinate LSTM inside it (a copy); e.g. the
    step bound ``{"output_scale": 0.01}`` image tasks want, in a plain or a residual rule."""
    rule = copy.deepcopy(rule)
    if rule.get("type") == "lstm":
        return {**rule, **options}
    if "rules" in rule:
        rule["rules"] = [with_lstm_options(r, options) for r in rule["rules"]]
    if "rule" in rule:
        rule["rule"] = with_lstm_options(rule["rule"], options)
    return rule


def contains_rule(rule: dict, kind: str) -> bool:
    """Whether ``rule`` is, or combines, a rule of type ``kind`` (e.g. ``"lstm"``)."""
    parts = rule.get("rules", []) + ([rule["rule"]] if "rule" in rule else [])
    return rule.get("type") == kind or any(contains_rule(r, kind) for r in parts)


def find_base_lr(rule: dict) -> float | None:
    """The learning rate of the hand-designed rule inside ``rule`` (the base of a residual
    rule, or the rule itself); ``None`` for a rule without one."""
    if "lr" in rule:
        return rule["lr"]
    for part in rule.get("rules", []) + ([rule["rule"]] if "rule" in rule else []):
        found = find_base_lr(part)
        if found is not None:
            return found
    return None


def with_base_lr(rule: dict, lr: float) -> dict:
    """``rule`` (a copy) with the learning rate of its hand-designed rule set to ``lr``: the
    rule itself (``adam``, ``sgd``...) or the base of a residual rule (the first part of a
    ``sum``, inside its schedule)."""
    rule = copy.deepcopy(rule)
    if "lr" in rule or rule.get("type") in ("sgd", "adam", "signsgd"):
        return {**rule, "lr": lr}
    if "rule" in rule:
        return {**rule, "rule": with_base_lr(rule["rule"], lr)}
    if rule.get("type") == "sum":
        return {**rule, "rules": [with_base_lr(rule["rules"][0], lr), *rule["rules"][1:]]}
    raise ValueError(f"rule {rule.get('type')!r} has no hand-designed learning rate to set")


def preset(name: str, zo: bool = False, base_lr: float | None = None,
           **overrides) -> MethodConfig:
    """The paper's methods (and the residual ones) as configurations.

    ``overrides`` replace any field; a dict for ``rule`` or ``oracle`` of the default's type (or
    without a type) is merged into the default's options, one of another type replaces it.
    ``base_lr`` sets the learning rate of a hand-designed method or of a residual method's base
    (default :data:`BASE_LR`); the schedule of a residual method has one row per step of its
    ``horizon``.
    """
    oracle = (DEFAULT_ZO if zo else DEFAULT_FO).to_dict()
    if base_lr is not None and name in ("lft", "l2o", "lft+init"):
        raise ValueError(f"base_lr: method {name!r} has no hand-designed base rule; "
                         f"choose one of {sorted(RESIDUAL)}")
    if name == "lft":
        cfg = MethodConfig(name="lft", oracle=oracle)
    elif name == "l2o":
        cfg = MethodConfig(name="l2o", oracle=oracle, meta_split="train", merge_splits=True)
    elif name == "lft+init":
        # MAML's SGD step plus a learned LSTM correction whose head starts at zero, so the
        # hybrid starts as exactly MAML's rule (and, warm-started, MAML's initialisation).
        lstm = {**DEFAULT_LSTM.to_dict(), "head_init": 0.0}
        cfg = MethodConfig(name="lft+init", oracle=oracle, learn_init=True,
                           rule={"type": "sum", "rules": [{"type": "sgd", "lr": 0.01}, lstm]})
    elif name == "maml":
        if base_lr is not None:
            raise ValueError("base_lr: MAML's inner learning rate is set with rule={'lr': ...}")
        if not zo:
            oracle = {"type": "fo", "second_order": True}
        cfg = MethodConfig(name="maml", rule={"type": "sgd", "lr": 0.01, "momentum": 0.0},
                           learn_rule=False, learn_init=True, oracle=oracle,
                           weighting="final", normalize=False, horizon=1)
    elif name in ("sgd", "adam", "signsgd"):
        cfg = MethodConfig(name=name, rule={"type": name, "lr": base_lr or BASE_LR},
                           learn_rule=False, oracle=oracle, horizon=20)
    elif name in RESIDUAL:
        horizon = overrides.get("horizon", 20)
        cfg = MethodConfig(name=name, oracle=oracle, horizon=horizon,
                           rule=residual_rule(RESIDUAL[name], base_lr or BASE_LR, horizon))
    else:
        raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown method option {key!r}; known: "
                             f"{sorted(f.name for f in fields(MethodConfig))}")
        current = getattr(cfg, key)
        if isinstance(value, dict) and isinstance(current, dict) and value.get(
                "type", current.get("type")) == current.get("type"):
            value = {**current, **value}  # options of the same rule/oracle type: a merge
        setattr(cfg, key, value)
    cfg.validate()
    return cfg


class Method(nn.Module):
    """A configured fine-tuning method: rule + initialisation + oracle.

    Its ``state_dict`` holds exactly the meta-learned parameters (and the learned
    initialisation), which is what a checkpoint stores.
    """

    def __init__(self, config: MethodConfig, family: TaskFamily, seed: int = 0):
        super().__init__()
        if not isinstance(config, MethodConfig):
            raise TypeError(f"Method needs a MethodConfig (e.g. lft.preset('lft')), got "
                            f"{type(config).__name__}")
        if not isinstance(family, TaskFamily):
            raise TypeError(f"Method needs a TaskFamily (e.g. lft.SineFamily()), got "
                            f"{type(family).__name__}")
        rule, oracle = config.validate()
        seed = v.integer("seed", seed, None, where="Method")
        self.config = config
        with torch.random.fork_rng(devices=[]):  # the rule's initial phi depends on the seed only
            torch.manual_seed(derive_seed(seed, "rule-init"))
            self.rule = rules_mod.build(rule)
            self.oracle = build_oracle(oracle)  # a learned one is a module, seeded too
        if config.learn_init:
            if not family.congruous or not hasattr(family, "model"):
                raise ValueError(
                    f"method {config.name!r} learns an initialisation, which needs congruous "
                    f"tasks; family {family.name!r} has tasks of different shapes")
            theta0 = family.model.init(1, make_generator(seed, "learned-init"))[0]
            self.init = LearnedInit(theta0)
        else:
            self.init = RandomInit()
        if not config.learn_rule:
            self.rule.requires_grad_(False)
            if isinstance(self.oracle, nn.Module):
                self.oracle.requires_grad_(False)

    def check_family(self, family: TaskFamily) -> None:
        """Refuse a family whose optimisee does not fit this method's learned initialisation
        (e.g. a MAML checkpoint of the sine MLP used on MNIST tasks), naming both sizes."""
        if not isinstance(family, TaskFamily):
            raise TypeError(f"expected a TaskFamily, got {type(family).__name__}")
        if not self.config.learn_init:
            return
        dim = getattr(getattr(family, "model", None), "dim", None)
        have = self.init.theta0.numel()
        if not family.congruous or dim != have:
            raise ValueError(f"method {self.config.name!r} has a learned initialisation of "
                             f"{have} parameters, but family {family.name!r} has optimisees of "
                             f"{dim if family.congruous else 'several'} parameters; fix: use it "
                             "with the family it was meta-trained on")

    def meta_parameters(self) -> list[nn.Parameter]:
        """The parameters meta-training updates."""
        params = list(self.rule.parameters()) if self.config.learn_rule else []
        if self.config.learn_rule and isinstance(self.oracle, nn.Module):
            params += list(self.oracle.parameters())  # a learned sampling distribution
        if self.config.learn_init:
            params += list(self.init.parameters())
        return params

    def prepare(self, tasks: TaskBatch) -> TaskBatch:
        """Apply the method's split convention (L2O merges ``D_tr`` and ``D_val``)."""
        return tasks.merged() if self.config.merge_splits else tasks

    def start(self, tasks: TaskBatch, generator: torch.Generator | None = None):
        """Initial optimisees and rule state for a batch of tasks."""
        theta = self.init(tasks, generator)
        return theta, self.rule.init(theta, tasks.roles)

    @torch.no_grad()
    def curve(self, tasks: TaskBatch, steps: int, generator: torch.Generator | None = None,
              split: str = "test", record=None, on_step=None) -> dict[str, torch.Tensor]:
        """Fine-tune on ``D_tr`` for ``steps`` steps; metrics on ``split`` at every step.

        Returns ``{metric: (B, steps + 1)}`` (step 0 is the initial optimisee). At meta-test
        time every method fine-tunes on the task's own fine-tuning set only. ``record``
        (optional) names the steps in ``0..steps`` at which to compute the metrics (e.g.
        :func:`lft.meta.evaluate.sparse_steps`), which is most of a step's cost on image tasks;
        the rule still takes all ``steps`` steps, and the columns, one per recorded step in
        increasing order, equal the full curve's at those steps. ``on_step(k, theta, metrics)``
        (optional) sees every step ``0..steps``, with the step's metrics where recorded and
        ``None`` elsewhere (Table 1 tracks each task's first step at 75% ASR with it): the one
        evaluation loop of the package.
        """
        keep = set(recorded_steps(steps, record))
        theta, state = self.start(tasks, generator)
        theta = theta.detach()
        rows = []

        def look(k: int, theta: torch.Tensor) -> None:
            if k in keep:
                rows.append(tasks.metrics(theta, split))
            if on_step is not None:
                on_step(k, theta, rows[-1] if k in keep else None)

        look(0, theta)
        for k, (theta, state) in enumerate(trajectory(self.rule, self.oracle, tasks, theta,
                                                      state, steps, generator), start=1):
            look(k, theta)
        return {k: torch.stack([r[k] for r in rows], dim=1) for k in rows[0]}


def recorded_steps(steps: int, record=None) -> list[int]:
    """The steps ``record`` names (sorted, without repeats), each checked to lie in
    ``0..steps``; all of ``0..steps`` when ``record`` is ``None``."""
    if record is None:
        return list(range(steps + 1))
    keep = sorted({v.integer("recorded step", k, 0, steps, where="record") for k in record})
    if not keep:
        raise ValueError(f"record must name at least one step in 0..{steps}")
    return keep
