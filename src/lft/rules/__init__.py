"""Update rules: the inner-loop optimiser, learned (:class:`CoordinateLSTM`) or hand-designed.

A rule's configuration is ``{"type": ..., **options}`` in JSON and a typed, checked
:class:`RuleConfig` in Python (:mod:`lft.rules.configs`: one dataclass per type, whose defaults
are the type's; :data:`DEFAULT_LSTM` is the library's default learned rule); :func:`build`
takes either.
"""

from __future__ import annotations

from collections.abc import Mapping

from lft.rules.base import State, UpdateRule, detach_state, tree_init, tree_update
from lft.rules.combine import Scheduled, Sum
from lft.rules.configs import (
    DEFAULT_LSTM,
    RULES,
    AdamConfig,
    LSTMConfig,
    RuleConfig,
    ScheduledConfig,
    SGDConfig,
    SignSGDConfig,
    SumConfig,
)
from lft.rules.handcrafted import SGD, Adam, SignSGD
from lft.rules.lstm import CoordinateLSTM


def build(config: RuleConfig | Mapping) -> UpdateRule:
    """Build a rule from its typed configuration (:class:`RuleConfig`) or from ``{"type":
    name, **kwargs}`` (what :meth:`UpdateRule.config` returns).

    A dict is read by :meth:`RuleConfig.from_dict`, which checks every option first
    (:mod:`lft.rules.schema`): a bad configuration raises one ``ValueError`` naming the rule,
    the option and what it accepts.
    """
    config = RuleConfig.of(config)
    options = config.options()
    if isinstance(config, SumConfig):
        options["rules"] = [build(part) for part in config.rules]
    elif isinstance(config, ScheduledConfig):
        options["rule"] = build(config.rule)
    try:
        return RULES[config.KIND](**options)
    except TypeError as e:
        raise ValueError(f"bad options for rule {config.KIND!r}: {e}") from None


__all__ = [
    "DEFAULT_LSTM",
    "RULES",
    "SGD",
    "AdamConfig",
    "LSTMConfig",
    "RuleConfig",
    "SGDConfig",
    "ScheduledConfig",
    "SignSGDConfig",
    "SumConfig",
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
