"""Update-rule configurations, typed: one frozen dataclass per rule type.

``{"type": "sgd", "lr": 0.1}`` is read by :meth:`RuleConfig.from_dict` as ``SGDConfig(lr=0.1)``
(every option checked once, by :mod:`lft.rules.schema`) and written back by ``to_dict()`` as it
was given; :func:`lft.rules.build` takes either. Each dataclass's fields are its rule class's
constructor options, with the same defaults: the defaults of a type. A ``sum`` holds its parts
and a ``scheduled`` rule its base as typed configurations too.

The library's default learned rule (the methods' presets) is :data:`DEFAULT_LSTM`: it differs
from the ``lstm`` type's defaults in its input features (``logsign``, ``adam``, ``role``
instead of ``logsign`` alone) and its step bound (``output_scale`` 1 instead of 0.1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lft.rules import schema
from lft.rules.base import UpdateRule
from lft.rules.combine import Scheduled, Sum, schedule_start
from lft.rules.features import N_ROLES
from lft.rules.handcrafted import SGD, Adam, SignSGD
from lft.rules.lstm import CoordinateLSTM
from lft.typed import TypedConfig

#: rule type -> class; a rule of your own registered here (``RULES["lion"] = Lion``) gets a
#: configuration derived from its constructor
RULES: dict[str, type[UpdateRule]] = {
    cls.kind: cls for cls in (CoordinateLSTM, SGD, Adam, SignSGD, Sum, Scheduled)
}


@dataclasses.dataclass(frozen=True)
class RuleConfig(TypedConfig):
    """Base of the rule configurations: ``RuleConfig.from_dict({"type": ..., ...})`` reads any
    type (``lstm``, ``sgd``, ``adam``, ``signsgd``, ``sum``, ``scheduled``)."""

    KINDS: ClassVar[dict] = {}
    TARGETS: ClassVar[dict] = RULES
    WHAT: ClassVar[str] = "update rule"
    NAME: ClassVar[str] = "an update-rule configuration"
    EXAMPLE: ClassVar[str] = '{"type": "lstm"}'

    def check(self) -> None:
        """The rule's options as :mod:`lft.rules.schema` checks them."""
        check = schema.CHECKS.get(self.KIND)  # none for a rule of your own
        if check is not None:
            check(self.json_options(), self.where)


@dataclasses.dataclass(frozen=True)
class LSTMConfig(RuleConfig):
    """:class:`lft.rules.CoordinateLSTM`, the learned coordinate-wise rule."""

    hidden: int = 10
    layers: int = 1
    features: tuple[str, ...] = ("logsign",)
    p: float = 10.0
    output_scale: float = 0.1
    bounded: bool = True
    bias: bool = False
    head_init: float = 0.1
    raw_scale: float = 1.0

    KIND = "lstm"


@dataclasses.dataclass(frozen=True)
class SGDConfig(RuleConfig):
    """:class:`lft.rules.SGD` (with heavy-ball ``momentum``)."""

    lr: float = 0.01
    momentum: float = 0.0

    KIND = "sgd"


@dataclasses.dataclass(frozen=True)
class AdamConfig(RuleConfig):
    """:class:`lft.rules.Adam`."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    KIND = "adam"


@dataclasses.dataclass(frozen=True)
class SignSGDConfig(RuleConfig):
    """:class:`lft.rules.SignSGD`."""

    lr: float = 0.01

    KIND = "signsgd"


@dataclasses.dataclass(frozen=True)
class SumConfig(RuleConfig):
    """:class:`lft.rules.Sum`: the parts' steps added (``rules``, typed configurations)."""

    rules: tuple[RuleConfig, ...]

    KIND = "sum"
    NESTED = {"rules": RuleConfig}


@dataclasses.dataclass(frozen=True)
class ScheduledConfig(RuleConfig):
    """:class:`lft.rules.Scheduled`: ``rule``'s step times a learned per-step (per-role)
    multiplier, starting at ``init`` (``None``: 1; left out of the JSON then)."""

    rule: RuleConfig
    steps: int = 20
    per_role: bool = True
    gain: float = 10.0
    init: tuple | None = None

    KIND = "scheduled"
    NESTED = {"rule": RuleConfig}
    OMIT_IF_NONE = ("init",)

    def check(self) -> None:
        super().check()
        if self.init is not None:
            schedule_start(self.init, int(self.steps), self.per_role, N_ROLES)


#: the library's default learned rule: a one-layer LSTM of 10 units reading the log/sign
#: gradient, Adam's moments and the parameter's role, with steps bounded by 1 (image tasks
#: bound them at 0.01: :data:`lft.tasks.presets.IMAGE_RULE`)
DEFAULT_LSTM = LSTMConfig(features=("logsign", "adam", "role"), output_scale=1.0)

__all__ = ["AdamConfig", "DEFAULT_LSTM", "LSTMConfig", "RULES", "RuleConfig", "SGDConfig",
           "ScheduledConfig", "SignSGDConfig", "SumConfig"]
