"""Update rules: the inner-loop optimiser, learned (:class:`CoordinateLSTM`) or hand-designed."""

from __future__ import annotations

from lft.rules.base import State, UpdateRule, detach_state, tree_init, tree_update
from lft.rules.combine import Sum
from lft.rules.handcrafted import SGD, Adam, SignSGD
from lft.rules.lstm import CoordinateLSTM

RULES: dict[str, type[UpdateRule]] = {
    cls.kind: cls for cls in (CoordinateLSTM, SGD, Adam, SignSGD, Sum)
}


def build(config: dict) -> UpdateRule:
    """Build a rule from ``{"type": name, **kwargs}`` (what :meth:`UpdateRule.config` returns)."""
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in RULES:
        raise ValueError(f"unknown update rule {kind!r}; choose from {sorted(RULES)}")
    if "features" in config:
        config["features"] = tuple(config["features"])
    try:
        return RULES[kind](**config)
    except TypeError as e:
        raise ValueError(f"bad options for rule {kind!r}: {e}") from None


__all__ = [
    "RULES",
    "SGD",
    "Adam",
    "CoordinateLSTM",
    "SignSGD",
    "State",
    "UpdateRule",
    "build",
    "detach_state",
    "tree_init",
    "tree_update",
]
