"""Run the docstring examples of the pure modules: they are documentation, so they must stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["schemas.codec", "schemas.validation", "schemas.json_input", "streams.config", "streams.velocity",
           "streams.metrics", "streams.catalog", "consumers.priors", "consumers.publish"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
