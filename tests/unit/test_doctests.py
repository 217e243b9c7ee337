"""Run the docstring examples of the pure modules: they are documentation, so they must stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "salepulse.schemas.codec", "salepulse.schemas.validation", "salepulse.schemas.json_input",
    "salepulse.schemas.limits", "salepulse.streams.collector",
    "salepulse.streams.config", "salepulse.streams.velocity", "salepulse.streams.metrics", "salepulse.streams.catalog",
    "salepulse.consumers.priors", "salepulse.consumers.publish",
    "salepulse.consumers.data", "salepulse.consumers.data.common", "salepulse.consumers.data.csvio",
    "salepulse.consumers.data.rees46", "salepulse.consumers.data.taobao", "salepulse.consumers.data.online_retail",
    "salepulse.consumers.recommend_baselines", "salepulse.consumers.evaluate_recommend",
    "salepulse.streams.presale", "salepulse.streams.stocking", "salepulse.streams.buyer_desk",
    "salepulse.consumers.datasets", "salepulse.streams.preflight", "salepulse.streams.dashboard",
    "salepulse.streams.demo", "salepulse.streams.cli",
    # poison-proofing (issue 9)
    "salepulse.streams.clock", "salepulse.streams.poison", "salepulse.streams.bounded", "salepulse.streams.ingest",
    "salepulse.streams.live", "salepulse.consumers.sink_errors", "salepulse.consumers.deadletters",
    "salepulse.consumers.clickhouse_sink",
    # throughput measurement (issue 13)
    "salepulse.streams.bench_floor", "salepulse.streams.bench_stages", "salepulse.streams.profiles",
    "salepulse.streams.bench_sections", "salepulse.streams.gc_tuning", "salepulse.streams.serving",
    # forecast package (issue 10/11)
    "salepulse.streams.forecast", "salepulse.streams.forecast.distributions",
    "salepulse.streams.forecast.priors", "salepulse.streams.forecast.curves", "salepulse.streams.forecast.dispersion",
    "salepulse.streams.forecast.forecaster", "salepulse.streams.forecast.calibration",
    "salepulse.consumers.forecast_baselines", "salepulse.consumers.evaluate_forecast",
    # module splits (issue 11)
    "salepulse.streams.presale_outcome", "salepulse.streams.presale_spread", "salepulse.streams.presale_correction",
    "salepulse.consumers.replay", "salepulse.consumers.simulate_world",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
