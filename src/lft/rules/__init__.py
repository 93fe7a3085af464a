"""Update rules: the inner-loop optimiser, learned (:class:`CoordinateLSTM`) or hand-designed."""

from __future__ import annotations

from lft import validation
from lft.rules import schema
from lft.rules.base import State, UpdateRule, detach_state, tree_init, tree_update
from lft.rules.combine import Scheduled, Sum
from lft.rules.handcrafted import SGD, Adam, SignSGD
from lft.rules.lstm import CoordinateLSTM

RULES: dict[str, type[UpdateRule]] = {
    cls.kind: cls for cls in (CoordinateLSTM, SGD, Adam, SignSGD, Sum, Scheduled)
}


def build(config: dict) -> UpdateRule:
    """Build a rule from ``{"type": name, **kwargs}`` (what :meth:`UpdateRule.config` returns).

    Every option is checked first (:mod:`lft.rules.schema`): a bad configuration raises one
    ``ValueError`` naming the rule, the option and what it accepts.
    """
    config = validation.mapping("an update-rule configuration", config)
    kind = config.pop("type", None)
    if not isinstance(kind, str) or kind not in RULES:
        raise ValueError(f"unknown update rule {kind!r}; choose from {sorted(RULES)} "
                         '(e.g. {"type": "lstm"})')
    config = schema.check(kind, config, RULES[kind])
    try:
        return RULES[kind](**config)
    except TypeError as e:
        raise ValueError(f"bad options for rule {kind!r}: {e}") from None


__all__ = [
    "RULES",
    "SGD",
    "Scheduled",
    "Adam",
    "CoordinateLSTM",
    "SignSGD",
    "Sum",
    "State",
    "UpdateRule",
    "build",
    "detach_state",
    "tree_init",
    "tree_update",
]
