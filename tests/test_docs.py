"""The documentation: docstrings on every public object, the generated API reference, links."""

import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import lft

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("index", "update-rules", "oracles", "tasks", "meta-learners", "data", "reproduction",
         "distributed", "attacks", "uap-rivals", "api")


def public_modules() -> list:
    """Every lft module that declares ``__all__`` (``__main__`` modules are not imported)."""
    names = ["lft"] + [m.name for m in pkgutil.walk_packages(lft.__path__, "lft.")
                       if not m.name.endswith("__main__")]
    modules = [importlib.import_module(n) for n in names]
    return [m for m in modules if hasattr(m, "__all__")]


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for module in public_modules():
        for name in module.__all__:
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not (obj.__module__ or "").startswith("lft"):
                continue  # an alias of a builtin, e.g. State = tuple
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(obj):
                for attr, value in vars(obj).items():
                    if (not attr.startswith("_") and inspect.isfunction(value)
                            and not inspect.getdoc(getattr(obj, attr))):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert not missing, f"public objects without a docstring: {sorted(set(missing))}"


def load_build_api():
    spec = importlib.util.spec_from_file_location("build_api", DOCS / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_lists_every_public_name():
    build = load_build_api()
    text = (DOCS / "api.md").read_text()
    for name in build.MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            if not attr.startswith("__"):
                assert f"`{name}.{attr}`" in text, (
                    f"{name}.{attr} is not in docs/api.md: run python docs/build_api.py")
    assert build.render().count("### ") >= 80


@pytest.mark.parametrize("page", PAGES)
def test_docs_page_exists_and_its_links_resolve(page):
    path = DOCS / f"{page}.md"
    text = path.read_text()
    assert text.startswith("# ")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (path.parent / target).exists(), f"{page}.md links to missing {target}"


def test_readme_links_every_docs_page_and_example():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Documentation"):]
    for page in PAGES[1:]:
        assert f"docs/{page}.md" in section
    for target in re.findall(r"\]\(([^)#\s]+)\)", section):
        assert (ROOT / target).exists(), target
    for example in ("fine_tune_your_model", "meta_train_your_task_family",
                    "attack_your_classifier"):
        assert f"examples/{example}.py" in section


def test_api_reference_is_current():
    """docs/api.md is exactly what docs/build_api.py writes from today's docstrings."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "docs" / "build_api.py"), "--check"],
                       capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
