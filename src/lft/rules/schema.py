"""What a rule configuration may hold: the value checks of each rule type.

:meth:`lft.rules.RuleConfig.from_dict` reads configurations from JSON (checkpoints,
``MethodConfig.rule``, ``preset(..., rule={...})``) and runs the check of their type here
(:data:`CHECKS`), once: every bad value becomes one ``ValueError`` line naming the rule, the
option and what it accepts, instead of a ``TypeError`` from deep inside a constructor or a rule
that silently produces NaN steps.
"""

from __future__ import annotations

from lft import validation as v
from lft.rules.features import FEATURES

#: size limits of a coordinate-wise LSTM (far above anything useful; they keep a typo such as
#: ``hidden: 100000`` from asking for gigabytes)
MAX_HIDDEN, MAX_LAYERS = 4096, 16


def _lstm(o: dict, where: str) -> dict:
    out = dict(o)
    if "hidden" in o:
        out["hidden"] = v.integer("hidden", o["hidden"], 1, MAX_HIDDEN, where)
    if "layers" in o:
        out["layers"] = v.integer("layers", o["layers"], 1, MAX_LAYERS, where)
    if "features" in o:
        names = v.sequence("features", o["features"], where=where)
        if not names:
            raise ValueError(f"{where}: features must name at least one input feature; "
                             f"choose from {', '.join(FEATURES)}")
        out["features"] = tuple(v.choice("input feature", f, FEATURES, where) for f in names)
    if "p" in o:
        out["p"] = v.positive("p", o["p"], where)
    for name in ("output_scale", "head_init", "raw_scale"):
        if name in o:
            out[name] = v.number(name, o[name], where=where)
    for name in ("bounded", "bias"):
        if name in o:
            out[name] = v.boolean(name, o[name], where)
    return out


def _sgd(o: dict, where: str) -> dict:
    out = dict(o)
    if "lr" in o:
        out["lr"] = v.positive("lr", o["lr"], where)
    if "momentum" in o:
        out["momentum"] = v.number("momentum", o["momentum"], 0.0, 1.0, high_open=True,
                                   where=where)
    return out


def _adam(o: dict, where: str) -> dict:
    out = dict(o)
    if "lr" in o:
        out["lr"] = v.positive("lr", o["lr"], where)
    for name in ("beta1", "beta2"):
        if name in o:
            out[name] = v.number(name, o[name], 0.0, 1.0, high_open=True, where=where)
    if "eps" in o:
        out["eps"] = v.positive("eps", o["eps"], where)
    return out


def _sum(o: dict, where: str) -> dict:
    parts = v.sequence("rules", o.get("rules"), where=where)
    if not parts:
        raise ValueError(f"{where}: rules must list at least one rule configuration")
    return {**o, "rules": parts}


def _scheduled(o: dict, where: str) -> dict:
    out = dict(o)
    out["rule"] = v.mapping("rule", o.get("rule"), where)
    if "steps" in o:
        out["steps"] = v.integer("steps", o["steps"], 1, 10_000, where)
    if "per_role" in o:
        out["per_role"] = v.boolean("per_role", o["per_role"], where)
    if "gain" in o:
        out["gain"] = v.positive("gain", o["gain"], where)
    if o.get("init") is not None:  # a number per step, or a row of one per role per step
        out["init"] = [[v.positive("init multiplier", x, where)
                        for x in v.sequence("init row", m, where=where)]
                       if isinstance(m, (list, tuple)) else v.positive("init multiplier", m, where)
                       for m in v.sequence("init", o["init"], where=where)]
    return out


CHECKS = {"lstm": _lstm, "sgd": _sgd, "adam": _adam, "signsgd": _sgd, "sum": _sum,
          "scheduled": _scheduled}


__all__ = ["CHECKS", "MAX_HIDDEN", "MAX_LAYERS"]
