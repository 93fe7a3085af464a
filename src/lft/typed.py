"""Typed configurations: the base of the rule, oracle and task-family configurations.

A configuration is stored as JSON, ``{"type": kind, **options}`` (``{"task": kind, ...}`` for
a task family), in checkpoints, ``MethodConfig`` and the reproductions' jobs. In Python it is a
frozen dataclass per kind (:class:`lft.rules.LSTMConfig`, :class:`lft.oracles.ZerothOrderConfig`,
:class:`lft.tasks.SineConfig`, ...) whose fields are the options of that kind's class, with the
same names, order and defaults (tested): its field defaults are the one table of a kind's
defaults. A kind's dataclass checks every value when it is made, once; building from it
(:func:`lft.rules.build`, :func:`lft.oracles.build_oracle`, :func:`lft.tasks.build_family`)
checks nothing again.

``Base.from_dict(d)`` picks the kind's dataclass from ``d``'s ``type`` (or ``task``) and refuses an
unknown kind, an unknown or missing option and a bad value with one ``ValueError`` line that
names it and the choices. ``to_dict()`` writes the configuration back exactly: a configuration
read from a dict gives back that dict, with the same keys in the same order and the values as
they were given (``{"task": "sine"}`` stays ``{"task": "sine"}``, ``"p": 10`` stays ``10``), so
JSON written before the typed configurations existed round-trips byte for byte. One made in
Python writes every option, in the order of the fields. Two configurations are equal when they
build the same thing (``LSTMConfig() == RuleConfig.from_dict({"type": "lstm"})``), whichever
options they spell out. Lists are held as tuples; nested configurations (the parts of a
``sum`` rule, the members of a mixture) as typed configurations.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from lft import validation as v


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: configurations as dicts, tuples as lists (fresh copies)."""
    if isinstance(value, TypedConfig):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {k: plain(x) for k, x in value.items()}
    return value


def _frozen(value: Any) -> Any:
    """Lists (also nested) as tuples."""
    return tuple(_frozen(x) for x in value) if isinstance(value, list | tuple) else value


@dataclasses.dataclass(frozen=True)
class TypedConfig:
    """Base of the typed configurations (frozen dataclasses, one per kind).

    A family of configurations (rules, oracles, task families) has a base subclass that
    declares its own ``KINDS`` registry (filled by its subclasses' ``KIND``), ``TARGETS`` (kind
    -> the class a configuration builds, e.g. :data:`lft.rules.RULES`), the JSON ``KEY`` naming
    the kind, ``WHAT`` (e.g. ``"update rule"``) and ``NAME`` (what a dict of it is called in
    errors). A kind's subclass sets ``KIND``, ``WHERE`` (the label of its value errors),
    ``NESTED`` (fields holding configurations of a family: ``{"rules": RuleConfig}``) and
    ``check()``, which raises ``ValueError`` for a bad value. A class registered in
    ``TARGETS`` without a dataclass of its own (a user's rule or family) gets one derived from
    its constructor's signature, whose values its constructor checks.
    """

    KEY: ClassVar[str] = "type"
    KINDS: ClassVar[dict[str, type[TypedConfig]]] = {}
    TARGETS: ClassVar[dict[str, type]] = {}
    KIND: ClassVar[str] = ""
    #: the class of a configuration derived from its constructor (``None``: written by hand)
    DERIVED: ClassVar[type | None] = None
    WHAT: ClassVar[str] = "configuration"
    NAME: ClassVar[str] = "a configuration"
    EXAMPLE: ClassVar[str] = ""  # a valid dict of the family, for the unknown-kind error
    WHERE: ClassVar[str] = ""
    NESTED: ClassVar[dict[str, type[TypedConfig]]] = {}
    #: fields the full form (a configuration made in Python) leaves out while ``None``
    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("KIND"):
            cls.KINDS[cls.KIND] = cls

    def __post_init__(self):
        for f in dataclasses.fields(self) if self.DERIVED is None else ():
            value = getattr(self, f.name)
            base = self.NESTED.get(f.name)
            if base is None:
                value = _frozen(value)
            elif isinstance(value, list | tuple):
                value = tuple(base.of(x) for x in value)
            elif isinstance(value, Mapping | TypedConfig):
                value = base.of(value)  # anything else is for check() to refuse
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Raise one ``ValueError`` line for a bad value (a derived configuration leaves its
        values to its class's constructor)."""

    @property
    def where(self) -> str:
        """The label of this configuration's errors, e.g. ``update rule 'lstm'``."""
        return self.WHERE or f"{self.WHAT} {self.KIND!r}"

    @classmethod
    def unknown(cls, kind: object) -> str:
        """The error for an unknown kind, with the family's ``EXAMPLE`` if it has one."""
        example = f" (e.g. {cls.EXAMPLE})" if cls.EXAMPLE else ""
        return f"unknown {cls.WHAT} {kind!r}; choose from {sorted(cls.kinds())}{example}"

    @classmethod
    def kinds(cls) -> dict[str, type[TypedConfig]]:
        """``{kind: dataclass}`` of the kinds this class (a family's base, or one kind) reads."""
        for kind, typed in list(cls.KINDS.items()):  # a class unregistered or replaced
            if typed.DERIVED is not None and cls.TARGETS.get(kind) is not typed.DERIVED:
                del cls.KINDS[kind]
        for kind, target in list(cls.TARGETS.items()):
            if kind not in cls.KINDS:
                cls._derive(kind, target)
        return {k: c for k, c in cls.KINDS.items() if issubclass(c, cls)}

    @classmethod
    def _derive(cls, kind: str, target: type) -> None:
        """Register a dataclass for ``target`` (a user's class): its constructor's options,
        with their defaults."""
        base = next(c for c in cls.__mro__ if "KINDS" in c.__dict__)
        fields = []
        for p in inspect.signature(target.__init__).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                default = p.default
                fields.append((p.name, Any) if default is p.empty else (p.name, Any, (
                    dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d))
                    if isinstance(default, list | dict | set) else
                    dataclasses.field(default=default))))
        dataclasses.make_dataclass(f"{target.__name__}Config", fields, bases=(base,),
                                   frozen=True, namespace={"KIND": kind, "DERIVED": target})

    @classmethod
    def from_dict(cls, d: Mapping) -> TypedConfig:
        """The typed configuration of ``{KEY: kind, **options}``, checked once; ``to_dict``
        gives ``d`` back."""
        d = v.mapping(cls.NAME, d)
        kind = d.get(cls.KEY)
        sub = cls.kinds().get(kind) if isinstance(kind, str) else None
        if sub is None:
            raise ValueError(cls.unknown(kind))
        where = f"{sub.WHAT} {kind!r}"
        options = {k: x for k, x in d.items() if k != cls.KEY}
        fields = dataclasses.fields(sub)
        v.known_options(where, options, [f.name for f in fields])
        missing = [f.name for f in fields if f.name not in options
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{where}: missing option(s) {', '.join(missing)}")
        config = sub(**options)
        object.__setattr__(config, "_keys", tuple(d))  # what to_dict writes, in this order
        return config

    @classmethod
    def of(cls, config: TypedConfig | Mapping) -> TypedConfig:
        """``config`` if it is a configuration of this class, else :meth:`from_dict` of it."""
        return config if isinstance(config, cls) else cls.from_dict(config)

    def to_dict(self) -> dict:
        """The JSON of this configuration (a fresh dict): the dict it was read from, or every
        option (less the ``OMIT_IF_NONE`` ones that are ``None``) for one made in Python."""
        keys = self.__dict__.get("_keys") or (self.KEY, *[
            f.name for f in dataclasses.fields(self) if f.name not in self.omitted()])
        return {k: self.KIND if k == self.KEY else plain(getattr(self, k)) for k in keys}

    def omitted(self) -> set[str]:
        """The options the full form leaves out (by default the ``None`` ones of
        ``OMIT_IF_NONE``)."""
        return {name for name in self.OMIT_IF_NONE if getattr(self, name) is None}

    def options(self) -> dict[str, Any]:
        """Every option by field name, as held (the keyword arguments of the kind's class)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def json_options(self) -> dict[str, Any]:
        """Every option as JSON-ready data (nested configurations as dicts, lists as lists)."""
        return {name: plain(value) for name, value in self.options().items()}


__all__ = ["TypedConfig", "plain"]
