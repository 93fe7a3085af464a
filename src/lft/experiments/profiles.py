"""Profiles of the reproductions as typed, validated specifications.

Each artefact's profile (``quick``, ``paper``, ...) is a frozen dataclass subclassing
:class:`Profile`: one field per setting, checked once in ``__post_init__`` (positive integers,
known choices, non-empty grids), so a bad value fails at the line that made it with one
``ValueError`` that names the field and the fix, not deep inside a worker process.
``profile_overrides`` (tests, probes) go through :meth:`Profile.resolve`, i.e.
``dataclasses.replace``: an unknown key is refused by name and the result is validated again.

:meth:`Profile.to_dict` is the JSON of ``results.json``'s ``config.profile``; it leaves out the
optional fields that are off (declared with :func:`optional`, value ``None``), so a profile
writes exactly the dict it was before it was typed and committed results stay comparable.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping

from lft import validation as v

_OPTIONAL = "omit_if_none"


def optional(default=None):
    """A profile (or job) field that is off when ``None`` and then left out of ``to_dict``."""
    return dataclasses.field(default=default, metadata={_OPTIONAL: True})


def present_fields(obj) -> dict:
    """``obj``'s dataclass fields as a dict (values not copied), without the optional ones
    that are off."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if not (f.metadata.get(_OPTIONAL) and getattr(obj, f.name) is None)}


def check_fields(kind: str, cls, given: Mapping) -> None:
    """Refuse keys of ``given`` that are not fields of ``cls``, naming them and the choices."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{kind}: unknown field{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; choose from {', '.join(known)}")


def check_entries(where: str, given: Mapping, allowed: Iterable[str]) -> None:
    """Refuse keys of the dict ``given`` (a part of a profile or job, e.g. its ``select``)
    outside ``allowed``, naming them and the choices."""
    allowed = list(allowed)
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown entr{'ies' if len(unknown) > 1 else 'y'} "
                         f"{', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}")


class Profile:
    """Base of the artefacts' profile dataclasses: resolution, JSON, validation helpers.

    Subclasses are ``@dataclasses.dataclass(frozen=True)`` and set ``ARTEFACT``; their
    ``__post_init__`` calls the ``_int``/``_number``/``_choice``/... helpers below, each of
    which raises ``ValueError("ARTEFACT profile: FIELD must be ..., got VALUE")``.
    """

    ARTEFACT = "?"

    @classmethod
    def resolve(cls, profiles: Mapping[str, Profile], name: str,
                overrides: Mapping | None = None) -> Profile:
        """A copy of ``profiles[name]`` with ``overrides`` (field -> value) applied and
        validated; an unknown profile name or field raises ``ValueError`` naming it."""
        if name not in profiles:
            raise ValueError(f"unknown profile {name!r}; choose from {sorted(profiles)}")
        prof = copy.deepcopy(profiles[name])
        if overrides:
            check_fields(f"{prof.ARTEFACT} profile override", type(prof), overrides)
            prof = dataclasses.replace(prof, **copy.deepcopy(dict(overrides)))
        return prof

    @classmethod
    def from_dict(cls, d: Mapping) -> Profile:
        """A profile from its :meth:`to_dict` (e.g. ``results.json``'s ``config.profile``)."""
        d = v.mapping(f"a {cls.ARTEFACT} profile", d)
        check_fields(f"{cls.ARTEFACT} profile", cls, d)
        return cls(**copy.deepcopy(dict(d)))

    def to_dict(self) -> dict:
        """The profile as the JSON-ready dict ``results.json`` records (a deep copy), without
        the optional fields that are off."""
        return copy.deepcopy(present_fields(self))

    # -- validation helpers, for subclasses' __post_init__ -----------------------------------

    @property
    def _where(self) -> str:
        return f"{self.ARTEFACT} profile"

    def _int(self, *names: str, low: int = 1) -> None:
        for name in names:
            v.integer(name, getattr(self, name), low, where=self._where)

    def _number(self, *names: str, low: float = 0.0, open_low: bool = True) -> None:
        for name in names:
            v.number(name, getattr(self, name), low, low_open=open_low, where=self._where)

    def _choice(self, name: str, options: Iterable) -> None:
        v.choice(name, getattr(self, name), list(options), where=self._where)

    def _choices(self, name: str, options: Iterable) -> None:
        """Field ``name`` is a non-empty list of entries from ``options``."""
        values, options = getattr(self, name), list(options)
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"{self._where}: {name} must be a non-empty list from "
                             f"{options}, got {values!r}")
        for x in values:
            v.choice(f"{name} entry", x, options, where=self._where)

    def _keys(self, name: str, required: Iterable[str], allowed: Iterable[str] | None = None,
              value=None) -> dict:
        """Field ``name`` (or ``value``, a part of one) is a dict with (at least) the
        ``required`` keys and, if ``allowed`` is given, no other keys than those."""
        d = v.mapping(name, getattr(self, name) if value is None else value, where=self._where)
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{self._where}: {name} needs entries for {missing}; add them "
                             f"(it has {sorted(d)})")
        if allowed is not None:
            check_entries(f"{self._where}: {name}", d, allowed)
        return d

    def _record(self, name: str = "record") -> None:
        """Field ``name`` is ``{"dense": n >= 0, "every": n >= 1}``: metrics at steps
        ``0..dense`` and every ``every``-th (:func:`lft.meta.evaluate.sparse_steps`)."""
        d = self._keys(name, ["dense", "every"], ["dense", "every"])
        v.integer(f"{name} dense", d["dense"], 0, where=self._where)
        v.integer(f"{name} every", d["every"], 1, where=self._where)

    def _int_values(self, name: str, required: Iterable[str] = (), exact: bool = False) -> None:
        """Field ``name`` maps (at least; with ``exact`` only) ``required`` to integers >= 1."""
        for key, value in self._keys(name, required, required if exact else None).items():
            v.integer(f"{name}[{key!r}]", value, 1, where=self._where)

    def _number_values(self, name: str, required: Iterable[str] = (),
                       exact: bool = False) -> None:
        """Field ``name`` maps (at least; with ``exact`` only) ``required`` to numbers > 0."""
        for key, value in self._keys(name, required, required if exact else None).items():
            v.number(f"{name}[{key!r}]", value, 0.0, low_open=True, where=self._where)

    def _grid(self, name: str, grid=None, what: str = "learning rates") -> None:
        """A non-empty list of positive numbers (field ``name`` unless ``grid``)."""
        grid = getattr(self, name) if grid is None else grid
        if not isinstance(grid, list | tuple) or not grid:
            raise ValueError(f"{self._where}: {name} must be a non-empty list of {what}, "
                             f"got {grid!r}")
        for x in grid:
            v.number(name, x, 0.0, low_open=True, where=self._where)

    def _grids(self, name: str, required: Iterable[str], exact: bool = False,
               what: str = "learning rates") -> None:
        """Field ``name`` maps (at least; with ``exact`` only) ``required`` to grids."""
        for key, grid in self._keys(name, required, required if exact else None).items():
            self._grid(f"{name}[{key!r}]", grid, what)

    def _steps(self, name: str, high: int | None = None) -> None:
        """A non-empty, increasing list of positive step counts (at most ``high``)."""
        steps = getattr(self, name)
        if not isinstance(steps, list | tuple) or not steps:
            raise ValueError(f"{self._where}: {name} must be a non-empty list of steps, "
                             f"got {steps!r}")
        for k in steps:
            v.integer(name, k, 1, high, where=self._where)
        if list(steps) != sorted(set(steps)):
            raise ValueError(f"{self._where}: {name} must be increasing without repeats, "
                             f"got {steps!r}; sort it")
