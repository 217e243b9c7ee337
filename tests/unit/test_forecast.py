"""Unit tests of salepulse.streams.domain.forecast (pure forecast logic) and the evaluation protocol helpers."""

from __future__ import annotations

import doctest
import gzip
import importlib
import json
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import salepulse.streams.domain.forecast as forecast_mod
from salepulse.consumers.tools.evaluate_forecast import is_product, run
from salepulse.streams.domain.forecast import (
    CurveBook,
    DemandForecaster,
    DemandModel,
    DispersionBook,
    ExpertErrorModel,
    ExpertPrior,
    GammaPrior,
    RemainingDemand,
    SalesCurve,
    elapsed_fraction,
    gamma_quantile,
    negbin_quantiles,
)


def test_doctests() -> None:
    attempted = 0
    for name in ("distributions", "priors", "curves", "dispersion", "forecaster"):
        res = doctest.testmod(importlib.import_module(f"{forecast_mod.__name__}.{name}"))
        assert res.failed == 0, name
        attempted += res.attempted
    assert attempted > 20


def _nb_pmf(k: int, r: float, p: float) -> float:
    return math.exp(
        math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(p) + k * math.log1p(-p)
    )


def test_posterior_hand_computed() -> None:
    # prior mean 100 (alpha 4, beta 0.04); 30 units by t = 0.2 on a linear curve, Poisson units (phi = 1)
    fc = DemandForecaster(GammaPrior(4.0, 0.04), curve=lambda t: t)
    fc.update(10, 0.1)
    fc.update(20, 0.2)
    a, b, f = fc.posterior(0.2)
    assert (a, b, f) == pytest.approx((34.0, 0.24, 0.2))
    out = fc.forecast(0.2)
    # E[D] = n + (1 - F) a / b = 30 + 0.8 * 34 / 0.24
    assert out.mean == pytest.approx(30 + 0.8 * 34 / 0.24)
    assert out.prior_mean == pytest.approx(100.0)
    # remaining ~ NegBin(34, p = 0.24 / (0.24 + 0.8)); quantiles with the mass of k spread on (k-1, k]
    p = 0.24 / 1.04
    cdf, k = 0.0, 0
    expected = []
    for q in (0.1, 0.5, 0.9):
        while cdf + _nb_pmf(k, 34.0, p) < q:
            cdf += _nb_pmf(k, 34.0, p)
            k += 1
        expected.append(30 + k - 1 + (q - cdf) / _nb_pmf(k, 34.0, p))
    assert [out.p10, out.p50, out.p90] == pytest.approx(expected, abs=1e-6)


def test_overdispersion_weakens_the_data_and_widens_the_band() -> None:
    poisson = DemandForecaster(GammaPrior(4.0, 0.04), curve=lambda t: t, dispersion=1.0)
    lumpy = DemandForecaster(GammaPrior(4.0, 0.04), curve=lambda t: t, dispersion=24.0, order_size=12.0)
    for fc in (poisson, lumpy):
        fc.update(60, 0.2)
    fp, fl = poisson.forecast(0.2), lumpy.forecast(0.2)
    # posterior Gamma(alpha + n/phi, beta + F/phi)
    assert lumpy.posterior(0.2)[:2] == pytest.approx((4 + 60 / 24, 0.04 + 0.2 / 24))
    # velocity says 300; the lumpy series trusts it less, so its mean stays closer to the prior (100)
    assert fl.mean < fp.mean
    assert (fl.p90 - fl.p10) > (fp.p90 - fp.p10)


def test_remaining_demand_moments_and_zero_atom() -> None:
    r = RemainingDemand(a=2.0, b=0.1, share=0.5, mu=6.0, phi=20.0)
    assert r.mean == pytest.approx(2 * 0.5 / 0.1)
    assert r.variance == pytest.approx(20 * 10 + 2 * 0.25 / 0.01)
    assert r.p_zero == pytest.approx((0.1 / (0.1 + 0.5 / 6.0)) ** 2)
    q10, q50, q90 = r.quantiles()
    assert q10 == 0.0 < q50 < q90
    assert r.sf(q90) == pytest.approx(0.1, abs=1e-6)
    assert r.sf(q50) == pytest.approx(0.5, abs=1e-6)


def test_quantiles_monotone_and_above_units_sold() -> None:
    rng = random.Random(7)
    for _ in range(300):
        prior = GammaPrior(rng.uniform(0.05, 50), rng.uniform(0.001, 2))
        mu = rng.choice([1.0, 1.0, 3.0, 12.0])
        phi = mu * rng.choice([1.0, 1.5, 4.0])
        fc = DemandForecaster(prior, curve=SalesCurve(), dispersion=phi, order_size=mu)
        t = 0.0
        for _ in range(rng.randint(0, 6)):
            t = min(1.0, t + rng.uniform(0, 0.2))
            fc.update(rng.choice([1, 2, 12, 100]), t)
        f = fc.forecast(min(1.0, t + 0.05))
        assert f.units_so_far <= f.p10 <= f.p50 <= f.p90
        assert f.p10 <= f.mean * 10 + 1
    assert negbin_quantiles(3.0, 0.001) == sorted(negbin_quantiles(3.0, 0.001))  # gamma branch


def test_gamma_quantile_against_known_values() -> None:
    assert gamma_quantile(0.5, 1.0) == pytest.approx(math.log(2), rel=1e-8)
    assert gamma_quantile(0.95, 0.5, 2.0) == pytest.approx(3.841458820694124, rel=1e-6)  # chi2(1)
    # small x: P(a, x) ~ x^a / Gamma(a + 1)
    assert gamma_quantile(0.1, 0.2) == pytest.approx((0.1 * math.gamma(1.2)) ** 5, rel=1e-3)


def test_censoring_uses_exposure_at_stockout() -> None:
    prior = GammaPrior(4.0, 0.04)
    censored = DemandForecaster(prior, curve=lambda t: t)
    censored.update(30, 0.2)
    before = censored.forecast(0.2)
    censored.mark_stockout(0.2)
    after = censored.forecast(0.9)
    assert after.mean == pytest.approx(before.mean)
    assert (after.p10, after.p50, after.p90) == pytest.approx((before.p10, before.p50, before.p90))
    assert after.stockout_fraction == 0.2
    naive = DemandForecaster(prior, curve=lambda t: t)
    naive.update(30, 0.2)
    assert naive.forecast(0.9).mean < after.mean  # no stockout: silence after 0.2 lowers the forecast
    censored.clear_stockout()
    assert censored.forecast(0.9).mean == pytest.approx(naive.forecast(0.9).mean)


def test_curve_learning_no_look_ahead_and_monotone() -> None:
    book = CurveBook(min_sales=2, grid=10)
    start = book.curve("toys").values
    fc = DemandForecaster(GammaPrior(1, 0.1), curve=book.curve("toys"))
    fc.update(5, 0.05)
    fc.update(5, 0.9)
    assert book.curve("toys").values == start  # nothing learned while the sale runs
    for _ in range(3):
        book.learn("toys", [(0.05, 50.0), (0.5, 10.0)])
    toys = book.curve("toys")
    assert toys is not book.global_curve
    vals = toys.values
    assert vals[0] == 0.0 and vals[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))
    assert toys(0.1) > start[1]  # front-loaded sales pushed F(0.1) up
    assert book.curve("garden") is book.global_curve  # unseen category: global curve


def test_sales_curve_weighting_caps_big_sales() -> None:
    c = SalesCurve(grid=4, prior_weight=1.0, weight_cap=10.0)
    c.learn([(0.1, 1000.0)])  # weight 1 (capped): F(0.25) moves half way to 1
    assert c(0.25) == pytest.approx((0.4375 + 1.0) / 2)


def test_error_model_sets_prior_spread() -> None:
    tight, loose = ExpertErrorModel(initial_log_var=0.5), ExpertErrorModel(initial_log_var=0.5)
    for _ in range(200):
        tight.observe(50.0, 52.0)
        loose.observe(50.0, 10.0)
        loose.observe(50.0, 250.0)
    g_tight = ExpertPrior(50.0).gamma(tight)
    g_loose = ExpertPrior(50.0).gamma(loose)
    assert g_tight.mean == pytest.approx(50.0) and g_loose.mean == pytest.approx(50.0)
    assert g_loose.alpha < g_tight.alpha  # bigger past errors -> wider prior
    # the expert's own 80 % range wins over the error model
    ranged = ExpertPrior(50.0, low=45.0, high=55.0).gamma(loose)
    assert ranged.alpha > g_loose.alpha


def test_dispersion_book_shrinks_and_is_robust() -> None:
    db = DispersionBook()
    for _ in range(50):
        db.observe("small", None, 1)
        db.observe("pack", None, 12)
    db.observe("giant", None, 70000)
    small, pack, new = db.get("small"), db.get("pack"), db.get("new")
    assert small.dispersion < 3.0 < pack.dispersion  # per-sku estimates dominate after 50 lines
    assert pack.dispersion == pytest.approx(12.0, rel=0.3)
    assert pack.mean == pytest.approx(12.0, rel=0.3) and pack.dispersion >= pack.mean
    # a new sku gets the robust pooled level, far below the raw pooled E[Q^2]/E[Q] (~69,000)
    assert new.dispersion < 70000 / 10


def test_model_learned_prior_and_finish() -> None:
    model = DemandModel()
    for i in range(20):
        fc = model.start(f"s{i}", f"sku{i}", category="mugs", expert=ExpertPrior(30.0))
        fc.update(40, 0.3)
        model.finish(fc, price=5.0)
    new = model.start("s99", "fresh", category="mugs", price=5.0)
    assert new.prior.source == "learned"
    assert new.forecast(0.0).prior_source == "learned"
    assert 20 < new.prior.mean < 60
    assert model.curves.global_curve.n_sales == 20


def test_elapsed_fraction_clips() -> None:
    s, e = datetime(2024, 1, 1), datetime(2024, 1, 2)
    assert elapsed_fraction(s - timedelta(hours=1), s, e) == 0.0
    assert elapsed_fraction(s + timedelta(hours=12), s, e) == 0.5


def test_update_is_cheap() -> None:
    import time

    fc = DemandForecaster(GammaPrior(2.0, 0.02), curve=SalesCurve())
    n = 20000
    t0 = time.perf_counter()
    for i in range(n):
        fc.update(2, i / n)
    per = (time.perf_counter() - t0) / n
    assert per < 50e-6


@pytest.mark.parametrize(
    ("code", "desc", "ok"),
    [
        ("85123A", "WHITE HANGING HEART", True),
        ("POST", "POSTAGE", False),
        ("C2", "CARRIAGE", False),
        ("BANK CHARGES", "Bank Charges", False),
        ("gift_0001_10", "voucher", False),
        ("DCGS0003", "ebay", False),
        ("DCGS0070", "", False),
        ("m", "Manual", False),
        ("PADS", "PADS TO MATCH ALL CUSHIONS", False),
    ],
)
def test_is_product(code: str, desc: str, ok: bool) -> None:
    assert is_product(code, desc) is ok


def test_run_on_synthetic_online_retail(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    start = datetime(2011, 1, 3)  # a Monday
    inv = 500000
    for day in range(7 * 14):
        for _ in range(8):
            inv += 1
            ts = start + timedelta(days=day, hours=rng.randint(8, 17), minutes=rng.randint(0, 59))
            code = rng.choice(["10001", "10002", "10003A", "POST"])
            qty = rng.choice([1, 2, 6, 12])
            rows.append(f"{inv},{code},THING,{qty},{ts:%Y-%m-%d %H:%M:%S},1.25,17850.0,United Kingdom")
    rows.append(f"C{inv},10001,THING,-5,{start:%Y-%m-%d %H:%M:%S},1.25,,United Kingdom")
    rows.append(
        f"{inv + 1},10001,THING,1,{start + timedelta(days=98):%Y-%m-%d %H:%M:%S},1.25,,United Kingdom"
    )
    path = tmp_path / "retail.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    out = tmp_path / "out.json"
    res = run("online-retail", path, out, progress=False)
    data = json.loads(out.read_text())
    assert data["dataset"] == "online-retail"
    assert data["checkpoints"] == [0.0, 0.1, 0.25, 0.5]
    assert data["series"] == res["series"] == 3 * (14 - 8)
    for key in ("prior", "velocity", "so_far_plus_prior", "tuned_blend", "blended", "mean"):
        assert set(data["wape"][key]) == {"0", "0.1", "0.25", "0.5"}
    assert set(data["bias"]["blended"]) == {"0", "0.1", "0.25", "0.5"}
    assert data["presale"]["series"] == data["series"] and 0.0 <= data["plan"]["service_level_achieved"] <= 1.0
    assert all(0.0 <= v <= 1.0 for v in data["coverage_p10_p90"].values())
    later = run("online-retail", path, None, score_from=start.date() + timedelta(days=7 * 12), progress=False)
    assert later["series"] == 3 * 2


def test_calibration_learns_a_biased_expert_from_finished_sales_only() -> None:
    # experts say 40, demand is Poisson(20) sold uniformly over the sale: the raw model stays near the expert early
    rng = random.Random(5)

    def sale(model: DemandModel, i: int) -> tuple[float, float, DemandForecaster]:
        fc = model.start(f"s{i}", "k", expert=ExpertPrior(40.0, low=30.0, high=55.0))
        lam = 20.0
        n = 0
        # Poisson(20) by inversion, one unit per order at a uniform time
        p, u, cdf = math.exp(-lam), rng.random(), math.exp(-lam)
        while cdf < u:
            n += 1
            p *= lam / n
            cdf += p
        times = sorted(rng.random() for _ in range(n))
        for t in (t for t in times if t <= 0.1):
            fc.update(1, t)
        mean_at_01 = fc.forecast(0.1).mean
        for t in (t for t in times if t > 0.1):
            fc.update(1, t)
        return float(n), mean_at_01, fc

    def mean_bias(model: DemandModel, learn: bool) -> float:
        err = 0.0
        for i in range(400):
            truth, mean_at_01, fc = sale(model, i)
            err += mean_at_01 - truth
            if learn:
                model.finish(fc)
        return err / 400

    untrained = DemandModel()
    before = mean_bias(untrained, learn=False)
    trained = DemandModel()
    mean_bias(trained, learn=True)  # learns only from sales it has finished
    after = mean_bias(trained, learn=False)
    assert before > 5.0  # the expert's +20 is still half there at t = 0.1
    assert abs(after) < before / 2
    assert trained.calibration.n_series == 400


def test_calibration_reads_the_upper_levels_from_the_series_that_sold() -> None:
    # 800 series end with nothing (PIT inside the atom, 0.2); 200 sell, their PIT uniform on [0.5, 1): over all
    # series the p90 level would sit at 0.75 and leave half of the series that sold above it
    from salepulse.streams.domain.forecast.calibration import Calibration

    cal = Calibration(grid=4, bins=100, prior_weight=1.0, upper_from_sold=1.0)
    rng = random.Random(3)
    sold_u = [0.5 + 0.5 * rng.random() for _ in range(200)]
    for i in range(1000):
        if i % 5:
            cal.add(0.5, u=0.2, predicted=1.0, true=0.0, key=(1, False))
        else:
            cal.add(0.5, u=sold_u[i // 5], predicted=1.0, true=1.0, key=(1, False), sold=True)
    p10, p50, p90 = cal.levels(0.5, (0.1, 0.5, 0.9), key=(1, False))
    above = sum(u > p90 for u in sold_u) / len(sold_u)
    assert above == pytest.approx(0.10, abs=0.03)  # a tenth of the series that sold, as meant
    assert p10 < 0.25 and p50 < 0.25  # the lower levels still describe every series (most sell nothing)
    everything = Calibration(grid=4, bins=100, prior_weight=1.0, upper_from_sold=0.0)
    for i in range(1000):
        sold = i % 5 == 0
        everything.add(0.5, u=sold_u[i // 5] if sold else 0.2, predicted=1.0, true=float(sold), key=(1, False),
                       sold=sold)
    old_p90 = everything.levels(0.5, (0.9,), key=(1, False))[0]
    assert sum(u > old_p90 for u in sold_u) / len(sold_u) > 0.4
