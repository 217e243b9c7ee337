"""Run the docstring examples of every salepulse module that has some: they are documentation, so they must stay true.

Modules are found by walking the installed packages, so a new module's examples run without being listed here.
The pure layers (platform, domain, data) must carry examples; the few that do not are named below, with why.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ("salepulse.schemas", "salepulse.streams", "salepulse.consumers")
PURE_LAYERS = ("salepulse.streams.platform.", "salepulse.streams.domain.", "salepulse.consumers.data.")
#: Pure modules without examples, and why.
WITHOUT_EXAMPLES = {
    "salepulse.streams.platform.logs": "configures structlog; nothing to show but side effects",
}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    return sorted(names)


MODULES = _modules()


def _source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    with open(spec.origin) as handle:
        return handle.read()


WITH_EXAMPLES = [name for name in MODULES if ">>>" in _source(name)]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module)
    assert result.attempted > 0, f"{name} has '>>>' in its source but no example doctest can find"
    assert result.failed == 0


def test_pure_modules_carry_examples() -> None:
    pure = [name for name in MODULES if name.startswith(PURE_LAYERS) and not _is_package(name)]
    missing = [name for name in pure if name not in WITH_EXAMPLES and name not in WITHOUT_EXAMPLES]
    assert len(pure) > 30, pure
    assert not missing, f"pure modules without a docstring example: {missing}"


def _is_package(name: str) -> bool:
    return inspect.getfile(importlib.import_module(name)).endswith("__init__.py")
