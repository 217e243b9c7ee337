"""The pre-sale desk's newer evidence: a product's own record of earlier sales (:class:`HistoryBlend`), the
sell-out time of sold-out products (:func:`sellout_demand`), and that the evaluations never look ahead."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from salepulse.consumers.tools import evaluate_presale
from salepulse.schemas.check import SAMPLES
from salepulse.schemas.codec import SCHEMA_DIR, Codec
from salepulse.streams.domain.presale import HistoryBlend, Outcome, PresaleDesk, sellout_demand


def _products(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.lognormal(3.0, 1.0, n)


def test_a_product_record_moves_the_expert_toward_what_it_sold() -> None:
    """Each product has a lasting level the expert misjudges the same way sale after sale (the expert sees only
    a noisy hint of it): the product's own record says what the expert's number does not."""
    rng = np.random.default_rng(4)
    level = _products(rng, 200)
    misjudged = rng.lognormal(0.0, 0.5, level.size)  # a lasting error per product
    desk, plain = PresaleDesk(), PresaleDesk()
    plain.history = HistoryBlend(ridge=1e15)  # weights held at 0: the corrected expert alone
    errors = {"desk": 0.0, "plain": 0.0, "expert": 0.0}
    truth_total = 0.0
    for s in range(40):
        demand = rng.poisson(level)
        experts = level * misjudged * rng.lognormal(0.0, 0.2, level.size)
        outs = []
        for k in range(level.size):
            sku, expert = f"p{k}", float(round(experts[k]))
            if s >= 20:
                truth_total += demand[k]
                errors["desk"] += abs(desk.forecast(f"s{s}", sku, expert=expert).p50 - demand[k])
                errors["plain"] += abs(plain.forecast(f"s{s}", sku, expert=expert).p50 - demand[k])
                errors["expert"] += abs(expert - demand[k])
            outs.append(Outcome(f"s{s}", sku, expert, float(demand[k]), ended_ms=s))
        desk.observe_many(outs)
        plain.observe_many(outs)
    wape = {name: e / truth_total for name, e in errors.items()}
    assert wape["desk"] < 0.8 * wape["plain"], wape
    assert wape["plain"] < wape["expert"] * 1.05, wape
    # the expert stays the anchor and the reason says what moved it, with the record's own figures
    worst = int(np.argmax(misjudged))  # the product the expert overrates most: its record must pull it down
    f = desk.forecast("next", f"p{worst}", expert=float(round(level[worst] * misjudged[worst])))
    rec = desk.history.record(f"p{worst}")
    assert rec is not None and rec.n == 40
    assert f.expert is not None and math.isclose(f.correction, f.center / f.expert)
    assert f.center < 0.7 * f.expert
    assert f"over {rec.n} earlier sales" in f.reason and "in its last sale" in f.reason
    assert f"sold {rec.last:.0f} units" in f.reason


def test_a_product_without_a_record_is_read_as_the_correction_reads_it() -> None:
    desk = PresaleDesk()
    for s in range(30):
        desk.observe_many(Outcome(f"s{s}", f"s{s}-k{k}", 100.0, 80.0, ended_ms=s) for k in range(20))
    f = desk.forecast("new", "never-seen", expert=100.0)
    assert f.center == pytest.approx(100.0 * desk.corrections.correction(100.0).factor)
    assert "earlier sale" not in f.reason
    assert desk.history.learned == 0  # no product had a record: the blend learned nothing


def test_the_blend_never_learns_a_sale_from_itself() -> None:
    """The features of a finished forecast are the record BEFORE its own sale is added."""
    blend = HistoryBlend(ridge=1.0)
    assert not blend.observe("k", center=10.0, demand=10.0)  # first sale: no record, nothing to learn
    x_before = blend.features(10.0, "k")
    assert x_before is not None and blend.observe("k", center=10.0, demand=1000.0)
    assert blend.record("k").last == 1000.0  # type: ignore[union-attr]
    nonzero = x_before != 0
    learned_from = blend._xty[None][nonzero] / x_before[nonzero]
    assert np.allclose(learned_from, math.log1p(1000.0) - math.log1p(10.0))


@pytest.mark.parametrize("seed", range(3))
def test_sellout_time_recovers_the_demand_a_stockout_hid(seed: int) -> None:
    """Poisson arrivals along a front-loaded curve G: (units - 1) / G(sell-out time) is unbiased."""
    rng = np.random.default_rng(seed)
    curve = lambda t: (1 - np.exp(-3.0 * t)) / (1 - math.exp(-3.0))  # noqa: E731
    grid = np.linspace(0.0, 1.0, 4001)
    estimates, truths, bounds = [], [], []
    for _ in range(3000):
        demand = int(rng.poisson(rng.lognormal(3.0, 0.5)))
        stock = max(2, int(rng.lognormal(2.8, 0.4)))
        if demand < stock:
            continue
        times = np.sort(np.interp(rng.random(demand), curve(grid), grid))
        estimates.append(sellout_demand(float(stock), float(curve(times[stock - 1]))) or float(stock))
        truths.append(demand)
        bounds.append(stock)
    assert len(truths) > 500
    assert sum(estimates) / sum(truths) == pytest.approx(1.0, abs=0.05)
    assert sum(bounds) / sum(truths) < 0.9  # what the units sold alone would have taught


def test_a_pessimistic_buyer_is_read_through_the_sell_out_times() -> None:
    """A buyer 30% low whose stock follows their number: most of their misses sell out. With each sold-out
    product's exposure the desk reads them within a few points; the units sold alone would read them near right."""
    rng = np.random.default_rng(7)
    desk, without = PresaleDesk(), PresaleDesk()  # without: the same outcomes, sell-out times unknown
    curve = lambda t: (1 - np.exp(-3.0 * t)) / (1 - math.exp(-3.0))  # noqa: E731
    grid = np.linspace(0.0, 1.0, 4001)
    sold_out = 0
    for s in range(60):
        outs = []
        for k in range(20):
            mean = float(rng.lognormal(3.5, 0.8))
            expert = round(mean * 0.7 * float(rng.lognormal(0.0, 0.2)))
            demand, stock = int(rng.poisson(mean)), math.ceil(expert * 1.2)
            exposure = None
            if demand >= stock:
                times = np.sort(np.interp(rng.random(demand), curve(grid), grid))
                exposure = float(curve(times[stock - 1]))
                sold_out += 1
            outs.append(Outcome(f"s{s}", f"s{s}-k{k}", float(expert), float(min(demand, stock)), demand >= stock,
                                buyer_id="pat", ended_ms=s, exposure=exposure))
        desk.observe_many(outs)
        without.observe_many(dataclasses.replace(o, exposure=None) for o in outs)
    assert sold_out > 200
    # as the evaluation scores buyers: over their next forecasts, forecast units over the corrected units
    means = rng.lognormal(3.5, 0.8, 2000)
    experts = np.round(means * 0.7 * rng.lognormal(0.0, 0.2, means.size))
    true_bias = experts.sum() / means.sum() - 1.0

    def read_by(d: PresaleDesk) -> float:
        return float(experts.sum() / sum(d.forecast("next", f"n{i}", expert=float(e), buyer_id="pat").center
                                         for i, e in enumerate(experts)) - 1.0)

    read, read_without = read_by(desk), read_by(without)
    assert read == pytest.approx(true_bias, abs=0.03)
    assert abs(read - true_bias) < abs(read_without - true_bias)


def test_outcomes_carry_the_exposure_and_older_records_read_without_it(tmp_path: Path) -> None:
    codec = Codec()
    sold_out = Outcome("s", "k", 10.0, 12.0, True, ended_ms=5, exposure=0.4)
    record = codec.decode(codec.encode("ForecastOutcome", sold_out.to_record()), timestamps="ms")[1]
    assert Outcome.from_record(record) == sold_out
    # a record from before the field (regions, no exposure) still decodes, with no exposure
    (tmp_path / "ForecastOutcome.avsc").write_text((SCHEMA_DIR / "history" / "ForecastOutcome.v2.avsc").read_text())
    old = Codec(schema_dir=tmp_path)
    data = old.encode("ForecastOutcome", {k: v for k, v in SAMPLES["ForecastOutcome"].items() if k != "exposure"})
    assert data[2:10] != codec.types["ForecastOutcome"].fingerprint
    assert codec.decode(data)[1]["exposure"] is None


class _Recording(PresaleDesk):
    """A desk that remembers, for every forecast, the latest end of the outcomes it had learned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latest_learned = -math.inf
        self.forecasts: list[tuple[str, float]] = []

    def observe(self, outcome: Outcome) -> bool:
        self.latest_learned = max(self.latest_learned, outcome.ended_ms)
        return super().observe(outcome)

    def forecast(self, sale_id: str, sku: str, *args: Any, **kwargs: Any) -> Any:
        self.forecasts.append((sale_id, self.latest_learned))
        return super().forecast(sale_id, sku, *args, **kwargs)


def test_the_simulated_evaluation_forecasts_a_sale_only_from_sales_ended_before_it_opened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    desks: list[_Recording] = []
    monkeypatch.setattr(evaluate_presale, "PresaleDesk", lambda: desks.append(_Recording()) or desks[-1])
    evaluate_presale.run_simulated(seed=2, n_sales=30, min_sales=2, progress=False)
    from salepulse.consumers.tools.simulate import SimulatedWorld

    opens = {s["sale_id"]: s["starts_at"].timestamp() * 1000 for s in SimulatedWorld(seed=2, n_sales=30).sales}
    (desk,) = desks
    assert len(desk.forecasts) > 300 and desk.latest_learned > -math.inf
    assert all(learned <= opens[sale] for sale, learned in desk.forecasts)
    assert any(learned > -math.inf for _, learned in desk.forecasts)


def test_the_online_retail_evaluation_forecasts_a_week_only_from_earlier_weeks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "retail.csv.gz"
    rng = np.random.default_rng(0)
    start = date(2011, 1, 3)
    with gzip.open(path, "wt", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
                      "Country"])
        for day in range(7 * 14):
            when = start + timedelta(days=day)
            for k in range(8):
                if rng.random() < 0.5:
                    out.writerow([f"5{day:03d}{k}", f"C{k}", f"ITEM {k}", int(rng.integers(1, 20)),
                                  f"{when.isoformat()} 10:00:00", "2.5", "17850.0", "United Kingdom"])
    desks: list[_Recording] = []
    monkeypatch.setattr(evaluate_presale, "PresaleDesk", lambda: desks.append(_Recording()) or desks[-1])
    result = evaluate_presale.run_online_retail(path, progress=False)
    (desk,) = desks
    assert result["series"] == len(desk.forecasts) > 0
    # a week's outcomes are learned with ended_ms = its index: every forecast saw only earlier weeks
    weeks = sorted({sale for sale, _ in desk.forecasts})
    index = {sale: i + evaluate_presale.WARMUP_SALES for i, sale in enumerate(weeks)}
    assert all(learned == index[sale] - 1 for sale, learned in desk.forecasts)


def test_the_worker_sends_a_sold_out_products_exposure_at_its_sell_out_time() -> None:
    from tests.unit.test_live import HOUR, START, board_with_sale, sell

    board, state = board_with_sale(stock=10, prior=20.0)
    sell(board, state, 4, START + HOUR // 2, 1)
    sell(board, state, 6, START + HOUR, 2)  # the tenth unit, a quarter into the four-hour sale: sold out
    (record,) = board._sale_outcomes(board.catalog.sales["s"])
    forecaster = board.tracked[("s", "k")].forecaster
    assert record["censored"] and record["actual"] == 10.0
    assert record["exposure"] == pytest.approx(forecaster.curve(0.25)) and 0.0 < record["exposure"] < 1.0
    assert Outcome.from_record(record).exposure == record["exposure"]

    board, state = board_with_sale(stock=100, prior=20.0)
    sell(board, state, 10, START + HOUR, 1)
    (record,) = board._sale_outcomes(board.catalog.sales["s"])
    assert not record["censored"] and record["exposure"] is None  # not sold out: nothing to scale


def test_the_cli_takes_a_seed_for_the_simulated_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--dataset simulated --path SEED`` (the README's form) used to be refused as a missing file."""
    from salepulse.consumers.tools import evaluate_forecast
    from salepulse.streams.platform.config import Settings
    from salepulse.streams.tools import cli

    seen: list[Any] = []
    monkeypatch.setattr(evaluate_forecast, "run", lambda dataset, path, out, score_from=None: seen.append(
        (dataset, str(path))) or {})
    monkeypatch.setattr(evaluate_forecast, "print_table", lambda result: None)
    parser, settings = cli.build_parser(), Settings.from_env()  # not main(): it configures the process's logging
    assert cli.cmd_evaluate(parser.parse_args(["evaluate", "forecast", "--dataset", "simulated", "--path", "1"]),
                            settings) == 0
    assert seen == [("simulated", "1")]
    # a data file is still required where the dataset is one
    with pytest.raises(cli.CliError, match="does not exist"):
        cli.cmd_evaluate(parser.parse_args(["evaluate", "forecast", "--dataset", "online-retail", "--path", "7"]),
                         settings)
    assert len(seen) == 1


def test_evaluate_reads_a_folder_as_a_data_dir_or_the_dataset_folder(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from salepulse.consumers.data import dataset_path
    from salepulse.consumers.tools import evaluate_forecast
    from salepulse.streams.platform.config import Settings
    from salepulse.streams.tools import cli

    seen: list[str] = []
    monkeypatch.setattr(evaluate_forecast, "run", lambda dataset, path, out, score_from=None: seen.append(str(path))
                        or {})
    monkeypatch.setattr(evaluate_forecast, "print_table", lambda result: None)
    parser, settings = cli.build_parser(), Settings.from_env()
    expected = dataset_path("online-retail", tmp_path)
    with pytest.raises(cli.CliError, match=expected.name):  # an empty folder: the error names the file it wants
        cli.cmd_evaluate(parser.parse_args(["evaluate", "forecast", "--dataset", "online-retail",
                                            "--path", str(tmp_path)]), settings)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"")
    for folder in (tmp_path, expected.parent):  # the data dir, and the dataset's own folder
        assert cli.cmd_evaluate(parser.parse_args(["evaluate", "forecast", "--dataset", "online-retail",
                                                   "--path", str(folder)]), settings) == 0
    assert seen == [str(expected), str(expected)]
