"""Write docs/api.md: the API reference of lft, generated from its docstrings.

Every module in :data:`MODULES` gets a section with its docstring's first paragraph and, for
each name in its ``__all__``, the signature and docstring; classes also list their public
methods and properties. An object exported by several modules (``lft.SGD`` is
``lft.rules.SGD``) is documented once, in the most specific module that exports it, and the
others link to it. Run it after changing a public docstring::

    python docs/build_api.py          # rewrites docs/api.md
    python docs/build_api.py --check  # exit 1 if docs/api.md is out of date
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "api.md"

#: The public modules, in reading order.
MODULES = ("lft", "lft.rules", "lft.oracles", "lft.tasks", "lft.models", "lft.meta",
           "lft.finetuner", "lft.optim", "lft.checkpoint", "lft.resume",
           "lft.meta.distributed", "lft.meta.loggers", "lft.data", "lft.attacks",
           "lft.rivals.art", "lft.analysis", "lft.analysis.run_plot", "lft.pretrained",
           "lft.pretrained.folder", "lft.validation", "lft.typed", "lft.safefiles", "lft.perf",
           "lft.reporting")


def markdown(doc: str) -> str:
    """Docstring (reStructuredText-ish) to Markdown: roles and double backticks to code."""
    doc = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", doc)
    doc = doc.replace("``", "`")
    return re.sub(r"::\n", ":\n", doc)


def stable_repr(value) -> str:
    """``repr`` without memory addresses (a function default is shown by its name)."""
    if inspect.isfunction(value) or inspect.isclass(value):
        return value.__name__
    if isinstance(value, Path):  # a path inside the package: shown relative to ``lft``
        import lft

        root = Path(lft.__file__).resolve().parent
        try:
            return f"<lft package>/{value.resolve().relative_to(root).as_posix()}"
        except ValueError:
            return "<path>"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def signature(obj) -> str:
    """``(a: int = 1, *, b)`` without quotes around postponed annotations and without self."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts, star = [], False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.kind is p.VAR_POSITIONAL:
            star = True
        if p.annotation is not p.empty:
            ann = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(
                p.annotation)
            text += f": {ann}"
        if p.default is not p.empty:
            value = stable_repr(p.default)
            text += f" = {value}" if p.annotation is not p.empty else f"={value}"
        parts.append(text)
    ret = sig.return_annotation
    if ret is sig.empty:
        tail = ""
    else:
        tail = f" -> {ret if isinstance(ret, str) else inspect.formatannotation(ret)}"
    return f"({', '.join(parts)}){tail}"


def anchor(qualified: str) -> str:
    """The Markdown heading anchor of ``qualified`` (GitHub style)."""
    return re.sub(r"[^a-z0-9_-]", "", qualified.lower().replace(" ", "-"))


def homes(modules: dict[str, object]) -> dict[int, str]:
    """For each exported object, the most specific module that exports it (its home)."""
    out: dict[int, tuple[int, str]] = {}
    for name, module in modules.items():
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            defined = getattr(obj, "__module__", "") or ""
            score = len(name) if defined.startswith(name) else -len(name)
            if id(obj) not in out or score > out[id(obj)][0]:
                out[id(obj)] = (score, name)
    return {k: v for k, (_, v) in out.items()}


def members(cls) -> list[str]:
    """Lines for the public methods and properties a class defines itself."""
    lines = []
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            doc = inspect.getdoc(attr) or ""
            lines.append(f"- `{name}` (property): {markdown(doc.split(chr(10) * 2)[0])}")
        elif inspect.isfunction(attr) or isinstance(attr, (classmethod, staticmethod)):
            fn = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
            doc = inspect.getdoc(getattr(cls, name)) or ""
            summary = " ".join(markdown(doc.split(chr(10) * 2)[0]).split())
            lines.append(f"- `{name}{signature(fn)}`: {summary}")
    return lines


def section(name: str, module, home: dict[int, str]) -> list[str]:
    """The Markdown section of one module."""
    doc = markdown(inspect.getdoc(module) or "")
    lines = [f"## `{name}`", "", doc.split("\n\n")[0], ""]
    for attr in getattr(module, "__all__", []):
        obj = getattr(module, attr, None)
        qualified = f"{name}.{attr}"
        ours = getattr(obj, "__module__", "") or ""
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and ours.startswith("lft"):
            where = home.get(id(obj), name)
            if where != name:
                target = f"{where}.{obj.__name__}"
                lines.append(f"- `{qualified}`: see [`{target}`](#{anchor(target)})")
                continue
            kind = "class" if inspect.isclass(obj) else "def"
            if lines[-1] != "":
                lines.append("")
            lines += [f"### `{qualified}`", "", "```python",
                      f"{kind} {attr}{signature(obj)}", "```", "",
                      markdown(inspect.getdoc(obj) or "(no docstring)"), ""]
            if inspect.isclass(obj):
                extra = members(obj)
                if extra:
                    lines += extra + [""]
        elif inspect.ismodule(obj) or attr.startswith("__"):
            continue
        else:
            text = stable_repr(obj)
            text = text if len(text) <= 90 else text[:87] + "..."
            lines.append(f"- `{qualified}` = `{text}`")
    if lines[-1] != "":
        lines.append("")
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    modules = {name: importlib.import_module(name) for name in MODULES}
    home = homes(modules)
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/build_api.py`; do not edit by hand.",
             "Concepts and examples: [index.md](index.md).", "",
             "Modules: " + ", ".join(f"[`{n}`](#{anchor(n)})" for n in MODULES), ""]
    for name, module in modules.items():
        lines += section(name, module, home)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) docs/api.md."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is stale")
    a = p.parse_args(argv)
    text = render()
    if a.check:
        current = OUT.read_text() if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is out of date: run python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
