"""Run the docstring examples of the pure modules: they are documentation, so they must stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "salepulse.schemas.codec", "salepulse.schemas.validation", "salepulse.schemas.json_input",
    "salepulse.streams.config", "salepulse.streams.velocity", "salepulse.streams.metrics", "salepulse.streams.catalog",
    "salepulse.streams.clock", "salepulse.streams.forecast", "salepulse.streams.forecast.distributions",
    "salepulse.streams.forecast.priors", "salepulse.streams.forecast.curves", "salepulse.streams.forecast.dispersion",
    "salepulse.streams.forecast.forecaster", "salepulse.streams.forecast.calibration",
    "salepulse.consumers.priors", "salepulse.consumers.publish", "salepulse.consumers.forecast_baselines",
    "salepulse.consumers.evaluate_forecast",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
