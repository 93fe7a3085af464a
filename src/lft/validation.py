"""Checks of user input that fail early with one readable line.

Every public constructor and configuration reader in ``lft`` (rules, oracles, task families,
method and training configurations) checks its arguments with these helpers, so that a bad value
raises ``ValueError("<where>: <name> must be ..., got <value>")`` at the call that introduced it,
not an obscure error (or a silent NaN) many steps later. The ``lft`` command line prints such an
error as one line ``lft: error: ...`` and exits with status 2.

Configuration *data* (dicts read from JSON, checkpoints or the command line) of the wrong type
also raises ``ValueError``, never ``TypeError``: to its author it is a wrong value.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from os import PathLike


def one_line(text: object) -> str:
    """``text`` with its line breaks (and runs of spaces around them) joined by single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(name: str, value: object, low: int | None = 1, high: int | None = None,
            where: str = "") -> int:
    """``value`` as an ``int`` in ``[low, high]``; integral floats (``5.0``) pass, bools do not."""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if ok:
        v = int(value)
        if (low is None or v >= low) and (high is None or v <= high):
            return v
    bounds = (f" in {low}..{high}" if low is not None and high is not None
              else f" >= {low}" if low is not None else f" <= {high}" if high is not None else "")
    raise ValueError(f"{_where(where)}{name} must be an integer{bounds}, got {_show(value)}")


def number(name: str, value: object, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, where: str = "") -> float:
    """``value`` as a finite ``float`` in the interval ``low..high`` (open ends if asked)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and not (
            low is not None and (v < low or (low_open and v == low))) and not (
            high is not None and (v > high or (high_open and v == high)))
        if ok:
            return v
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    bounds = f" {' and '.join(parts)}" if parts else ""
    raise ValueError(f"{_where(where)}{name} must be a finite number{bounds}, got {_show(value)}")


def positive(name: str, value: object, where: str = "") -> float:
    """A finite number ``> 0``."""
    return number(name, value, low=0.0, low_open=True, where=where)


def boolean(name: str, value: object, where: str = "") -> bool:
    """``True`` or ``False`` only (``"no"`` is not false, ``1`` is not true)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{_where(where)}{name} must be true or false, got {_show(value)}")


def choice(name: str, value: object, options: Iterable, where: str = ""):
    """``value`` if it is one of ``options``."""
    options = tuple(options)
    if isinstance(value, Mapping | list | set) or value not in options:
        raise ValueError(f"{_where(where)}unknown {name} {_show(value)}; choose from "
                         f"{', '.join(map(str, options))}")
    return value


def text(name: str, value: object, where: str = "") -> str:
    """A non-empty string."""
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{_where(where)}{name} must be a non-empty string, got {_show(value)}")


def path_or_none(name: str, value: object, where: str = "") -> str | PathLike | None:
    """``None``, a non-empty string or a path object."""
    if value is None or isinstance(value, PathLike) or (isinstance(value, str) and value):
        return value
    raise ValueError(f"{_where(where)}{name} must be a folder path or None, got {_show(value)}")


def mapping(name: str, value: object, where: str = "") -> dict:
    """A copy of ``value`` as a plain dict, if it is a mapping with string keys."""
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise ValueError(f"{_where(where)}{name} must be a dict of options (string keys), "
                     f"got {_show(value)}")


def known_options(where: str, options: Mapping, allowed: Iterable[str]) -> None:
    """Refuse keys of ``options`` outside ``allowed``, listing the allowed ones."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(allowed) or 'none'}")


def parameters_of(fn: Callable) -> list[str]:
    """Keyword parameter names of a function or class constructor (not ``self``)."""
    sig = inspect.signature(fn)
    return [p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def sequence(name: str, value: object, length: int | None = None, where: str = "") -> list:
    """A list or tuple (of ``length`` items if given) as a list."""
    if isinstance(value, list | tuple) and (length is None or len(value) == length):
        return list(value)
    what = f"a list of {length} items" if length is not None else "a list"
    raise ValueError(f"{_where(where)}{name} must be {what}, got {_show(value)}")


def interval(name: str, value: object, where: str = "") -> tuple[float, float]:
    """A pair ``(low, high)`` of finite numbers with ``low <= high``."""
    lo, hi = (number(f"{name} bounds", v, where=where) for v in sequence(name, value, 2, where))
    if lo > hi:
        raise ValueError(f"{_where(where)}{name} must be (low, high) with low <= high, "
                         f"got {_show(value)}")
    return lo, hi


__all__ = ["boolean", "choice", "integer", "interval", "known_options", "mapping", "number",
           "one_line", "parameters_of", "path_or_none", "positive", "sequence", "text"]


def positive_arg(kind):
    """An ``argparse`` type: a finite number of type ``kind`` > 0 (NaN and inf refused)."""
    import argparse

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value
    return parse


def non_negative_arg(text: str) -> float:
    """An ``argparse`` type: a finite number >= 0."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value
