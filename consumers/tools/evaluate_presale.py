"""Evaluation of the pre-sale desk (checkpoint ``"0"``): raw expert vs corrected forecast, the plan, the buyers.

Replayed in time order with no look-ahead: each sale is forecast from what finished before it opened, then its
outcome is learned. Called by :mod:`salepulse.consumers.tools.evaluate_forecast`; the block it returns is merged into
that report:

* ``wape.prior["0"]`` / ``bias.prior["0"]``: the raw expert number; ``wape.blended["0"]`` / ``bias.blended["0"]``:
  the corrected pre-sale p50 (:class:`salepulse.streams.domain.presale.PresaleDesk`).
* ``plan``: the newsvendor quantity at ``service_level`` per sku (:mod:`salepulse.streams.domain.stocking`):
  ``service_level_achieved`` = share of skus whose demand the plan covered (the target is ``service_level``),
  ``fill_rate_units`` = units served / demand, ``overstock_units`` = units left over.
* ``buyers`` (simulated only): per buyer, ``true_bias`` (their forecast units over the true expected demand, minus
  1, known by construction) and ``learned_bias`` (their forecast units over the desk's corrected units, minus 1),
  over the forecasts of their sales after their ``min_sales``-th finished sale; ``oracle_bias``: the same
  quantity read by an oracle that knows the true mean demand of every forecast of the buyer's finished sales (the
  same sales the desk had learned from when it forecast; the buyer's ratio ``sum(mean demand) / sum(forecast)``, the
  desk's own estimator without demand noise or sell-outs), with ``oracle_sd``, its standard error over the buyer's
  first ``min_sales`` sales (:func:`ratio_estimate`). When the oracle itself misses the true bias by more than
  the target, the target is limited by the simulator's noise at that many sales, not by the desk.
  ``oracle_demand_bias``: the same oracle fed the demand actually drawn (uncensored) instead of its mean: what the
  desk's estimator could read from the buyer's first ``min_sales`` sales with no sell-outs and no shrinkage.
  ``oracle_log_bias`` / ``oracle_log_size_bias``: efficient readers of the same finished forecasts' mean demand
  that weigh each forecast alike instead of by its units (:func:`salepulse.consumers.tools.presale_oracles.habit_ratio`:
  the lognormal mean of ``f / mu``, overall or per size class of ``mu`` summed with the classes' units).
  ``true_bias`` is the buyer's habit (:mod:`salepulse.consumers.tools.buyer_habits`: their expected forecast
  over the mean demand, the per-forecast noise and rounding integrated out), ``realised_bias_of_scored`` the
  forecasts actually drawn over the mean demand (the former definition of ``true_bias``); the counts
  ``buyers_within_5_points[_realised][_oracle|_oracle_demand]`` and ``mean_abs_miss[...]`` read each reader
  against each truth.
* ``prior_strength``: the correction's prior strength the desk had learned by the end (see
  :class:`salepulse.streams.domain.presale_correction.CorrectionModel`).

Datasets
--------
``online-retail``: weeks are sales, the expert is the mean weekly units of the 4 previous weeks (as in
:mod:`salepulse.consumers.tools.evaluate_forecast`), no buyer and no category, so the correction is by forecast size and
price band. No stock, so nothing is censored.

``simulated``: :class:`salepulse.consumers.tools.simulate.SimulatedWorld` planned with many sales (no events are
generated: the outcome of a sku is ``min(true demand, stock)``, censored when it sold out).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from tqdm import tqdm

from salepulse.consumers.data import online_retail
from salepulse.consumers.data.online_retail import complete_weeks, load_online_retail, weekly_totals
from salepulse.consumers.tools.presale_oracles import habit_ratio
from salepulse.streams.domain.presale import Outcome, PresaleDesk

HISTORY_WEEKS = 4
WARMUP_SALES = 8


@dataclass
class PresaleScores:
    """Per-sku pre-sale forecasts, plans and truths."""

    service_level: float
    expert: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p10: list[float] = field(default_factory=list)
    p90: list[float] = field(default_factory=list)
    plan: list[float] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)

    def add(self, expert: float, forecast: Any, truth: float) -> None:
        self.expert.append(expert)
        self.p50.append(forecast.p50)
        self.p10.append(forecast.p10)
        self.p90.append(forecast.p90)
        self.plan.append(float(np.ceil(forecast.quantile(self.service_level) - 1e-9)))
        self.truth.append(truth)

    def result(self) -> dict[str, Any]:
        y = np.asarray(self.truth, dtype=float)
        tot = float(y.sum())
        if y.size == 0 or tot <= 0:
            return {"series": int(y.size)}
        e, p = np.asarray(self.expert), np.asarray(self.p50)
        plan = np.asarray(self.plan)
        inside = (y >= np.asarray(self.p10) - 1e-9) & (y <= np.asarray(self.p90) + 1e-9)
        return {
            "series": int(y.size),
            "wape": {"prior": {"0": float(np.abs(e - y).sum() / tot)},
                     "blended": {"0": float(np.abs(p - y).sum() / tot)}},
            "bias": {"prior": {"0": float((e - y).sum() / tot)}, "blended": {"0": float((p - y).sum() / tot)}},
            "coverage_p10_p90": {"0": float(inside.mean())},
            "plan": {
                "service_level": self.service_level,
                "service_level_achieved": float((y <= plan + 1e-9).mean()),
                "fill_rate_units": float(np.minimum(plan, y).sum() / tot),
                "overstock_units": float(np.maximum(plan - y, 0).sum()),
                "overstock_share": float(np.maximum(plan - y, 0).sum() / max(plan.sum(), 1.0)),
                "planned_units": float(plan.sum()),
                "demand_units": tot,
            },
        }


def ratio_estimate(numerators: Iterable[float], denominators: Iterable[float]) -> tuple[float, float]:
    """The ratio estimator ``R = sum(y) / sum(x)`` over clusters (a buyer's sales) and its standard error.

    Sales are the independent units (a sale's products share its crowd), so the error is the cluster
    (linearisation) estimate ``sqrt(n / (n - 1) * sum((y_i - R x_i)^2)) / sum(x)``: big sales weigh as much as
    they weigh in ``R``. NaN error with fewer than two clusters.

    >>> r, se = ratio_estimate([80.0, 120.0, 100.0], [100.0, 100.0, 100.0])
    >>> round(r, 3), round(se, 4)
    (1.0, 0.1155)
    """
    y = np.asarray(list(numerators), dtype=float)
    x = np.asarray(list(denominators), dtype=float)
    if x.sum() <= 0:
        return float("nan"), float("nan")
    r = float(y.sum() / x.sum())
    n = y.size
    if n < 2:
        return r, float("nan")
    return r, float(np.sqrt(n / (n - 1) * ((y - r * x) ** 2).sum()) / x.sum())


def _prices(path: Path) -> dict[str, float]:
    """Median unit price per stock code (the product's price band), over the sold product lines of the one
    Online Retail reader (the rule replay and the forecast evaluation use)."""
    prices: dict[str, list[float]] = defaultdict(list)
    for row in online_retail.rows(path):
        prices[row.sku].append(row.price)
    return {code: median(v) for code, v in prices.items()}


def run_online_retail(path: Path, service_level: float = 0.9, progress: bool = True,
                      score_from: date | None = None) -> dict[str, Any]:
    weeks, first_ts, last_ts = load_online_retail(Path(path))
    prices = _prices(Path(path))
    totals = weekly_totals(weeks)
    mondays = complete_weeks(first_ts, last_ts)
    desk = PresaleDesk()
    scores = PresaleScores(service_level)
    for idx, monday in enumerate(tqdm(mondays, desc="online-retail pre-sale", disable=not progress)):
        history = [totals.get(monday - timedelta(days=7 * k), {}) for k in range(1, HISTORY_WEEKS + 1)]
        codes = sorted(set().union(*history))
        sale_id = monday.isoformat()
        scored = idx >= WARMUP_SALES and (score_from is None or monday >= score_from)
        week = totals.get(monday, {})
        outcomes = []
        for code in codes:
            expert = sum(h.get(code, 0) for h in history) / HISTORY_WEEKS
            truth = float(week.get(code, 0))
            if scored:
                scores.add(expert, desk.forecast(sale_id, code, expert=expert, price=prices.get(code)), truth)
            outcomes.append(Outcome(sale_id, code, expert, truth, price=prices.get(code), sale_hours=168.0,
                                    ended_ms=idx))
        desk.observe_many(outcomes)
    return {**scores.result(), "prior_strength": desk.corrections.prior_strength}


class _LearnedCurve:
    """The sales curve the worker would know when a sale ends: the mean curve of the sales finished before it
    (the worker learns one from their orders), not the sale's own true curve."""

    def __init__(self, world: Any, window: int = 200) -> None:
        self.world = world
        self.finished: list[str] = []
        self.window = window

    def learn(self, sale_id: str) -> None:
        self.finished = [*self.finished[-(self.window - 1):], sale_id]

    def __call__(self, fraction: float) -> float:
        if not self.finished:
            return fraction
        return float(np.mean([self.world.arrival_share(s, fraction) for s in self.finished]))


def run_simulated(seed: int = 0, n_sales: int = 360, service_level: float = 0.9, min_sales: int = 30,
                  progress: bool = True, sellout_times: bool = True) -> dict[str, Any]:
    """``sellout_times``: sold-out outcomes carry the exposure at their sell-out time (as the worker sends them);
    False reproduces outcomes without it (records from before that field, or a sku whose time is unknown)."""
    from salepulse.consumers.tools.simulate import SimulatedWorld

    world = SimulatedWorld(seed=seed, n_members=20_000, n_sales=n_sales)
    desk = PresaleDesk()
    scores = PresaleScores(service_level)
    priors = {(p["sale_id"], p["sku"]): p for p in world.priors}
    stock = {s["sku"]: s["on_hand"] for s in world.stock}
    expected = world.expected_demand
    finished_by_buyer: dict[str, int] = defaultdict(int)
    per_buyer: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sales = sorted(world.sales, key=lambda s: s["starts_at"])
    ends = sorted(sales, key=lambda s: (s["ends_at"], s["sale_id"]))
    pending = iter(ends)
    nxt = next(pending, None)

    curve = _LearnedCurve(world)
    # per buyer, per finished sale: (sum of true mean demand, sum of forecast units) of its forecast products
    finished_totals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    # per buyer, every finished forecast's (mean demand, forecast): the efficient oracles' record
    finished_pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    efficient: dict[tuple[str, int, bool], float] = {}

    def efficient_factor(buyer: str, size: bool) -> float:
        key = (buyer, len(finished_pairs[buyer]), size)
        if key not in efficient:  # refitted only when the buyer's record grew
            pairs = np.asarray(finished_pairs[buyer])
            efficient[key] = 1.0 / habit_ratio(pairs[:, 0], pairs[:, 1], size=size)
        return float(efficient[key])

    def finish_until(moment: datetime | None) -> None:
        nonlocal nxt
        while nxt is not None and (moment is None or nxt["ends_at"] <= moment):
            sale, nxt = nxt, next(pending, None)
            desk.observe_many(_outcomes(world, sale, priors, stock, curve if sellout_times else None))
            curve.learn(sale["sale_id"])
            buyer = _buyer_of(sale, priors)
            if buyer:
                finished_by_buyer[buyer] += 1
                keys = [(sale["sale_id"], p["sku"]) for p in sale["products"] if (sale["sale_id"], p["sku"]) in priors]
                finished_totals[buyer].append((sum(expected[k] for k in keys),
                                               sum(float(priors[k]["expected_units"]) for k in keys),
                                               sum(float(world.true_demand[k]) for k in keys)))
                finished_pairs[buyer] += [(expected[k], float(priors[k]["expected_units"])) for k in keys]

    for sale in tqdm(sales, desc="simulated pre-sale", disable=not progress):
        finish_until(sale["starts_at"])
        hours = (sale["ends_at"] - sale["starts_at"]).total_seconds() / 3600
        habit: dict[str, float] = {}
        habit_unrounded: dict[str, float] = {}
        for p in sale["products"]:
            ef = priors.get((sale["sale_id"], p["sku"]))
            buyer = ef.get("buyer_id") if ef else None
            f = desk.forecast(sale["sale_id"], p["sku"], expert=ef["expected_units"] if ef else None,
                              buyer_id=buyer, category=p["category"], price=p["price"], brand=sale["brand"],
                              sale_hours=hours)
            truth = float(world.true_demand[(sale["sale_id"], p["sku"])])
            if ef is not None:
                scores.add(float(ef["expected_units"]), f, truth)
                if buyer and finished_by_buyer[buyer] >= min_sales:
                    if not habit:
                        habit = world.habit_forecasts(sale["sale_id"])
                        habit_unrounded = world.habit_forecasts(sale["sale_id"], rounding=False)
                    acc = per_buyer[buyer]
                    acc["habit"] += habit[p["sku"]]
                    acc["habit_unrounded"] += habit_unrounded[p["sku"]]
                    acc["forecast"] += float(ef["expected_units"])
                    acc["corrected"] += f.center
                    totals = finished_totals[buyer]
                    acc["oracle"] += float(ef["expected_units"]) * (sum(t[0] for t in totals)
                                                                    / sum(t[1] for t in totals))
                    acc["oracle_demand"] += float(ef["expected_units"]) * (sum(t[2] for t in totals)
                                                                           / sum(t[1] for t in totals))
                    forecast_units = float(ef["expected_units"])
                    acc["oracle_log"] += forecast_units * efficient_factor(buyer, False)
                    acc["oracle_log_size"] += forecast_units * efficient_factor(buyer, True)
                    acc["expected"] += float(expected[(sale["sale_id"], p["sku"])])
                    acc["sold"] += truth
                    acc["forecasts"] += 1
    finish_until(None)
    out = scores.result()
    out["buyers"] = {}
    for b, acc in sorted(per_buyer.items()):
        first = finished_totals[b][:min_sales]
        ratio, se = ratio_estimate([t[0] for t in first], [t[1] for t in first])
        out["buyers"][b] = {
            **bias_truths(acc["habit"], acc["forecast"], acc["expected"]),
            "true_bias_unrounded": acc["habit_unrounded"] / acc["expected"] - 1.0,
            "learned_bias": acc["forecast"] / acc["corrected"] - 1.0,
            "oracle_bias": acc["forecast"] / acc["oracle"] - 1.0,
            "oracle_sd": se / ratio**2,  # bias = 1 / R - 1: its error is R's over R squared
            "oracle_demand_bias": acc["forecast"] / acc["oracle_demand"] - 1.0,
            "oracle_log_bias": acc["forecast"] / acc["oracle_log"] - 1.0,
            "oracle_log_size_bias": acc["forecast"] / acc["oracle_log_size"] - 1.0,
            "realised_bias": acc["forecast"] / acc["sold"] - 1.0,
            "forecasts_scored": int(acc["forecasts"]), "finished_sales": finished_by_buyer[b]}
    out.update(within_counts(out["buyers"]))
    out["sales"] = len(sales)
    out["prior_strength"] = desk.corrections.prior_strength
    out["buyer_prior_strength"] = desk.corrections.buyer_prior_strength
    return out


def bias_truths(habit_units: float, forecast_units: float, mean_demand: float) -> dict[str, float]:
    """A buyer's two truths over the same scored forecasts, given their sums.

    ``true_bias``: what their habit makes them say on average over what the products' mean demand was,
    ``sum E[forecast] / sum mu - 1`` (:func:`salepulse.consumers.tools.buyer_habits.expected_forecast`): the bias
    a colleague who knew the habit exactly would name. ``realised_bias_of_scored``: the forecasts actually drawn,
    ``sum forecast / sum mu - 1``, which adds those forecasts' own noise (a few hero products carry most units).

    >>> t = bias_truths(habit_units=120.0, forecast_units=150.0, mean_demand=100.0)
    >>> round(t["true_bias"], 3), round(t["realised_bias_of_scored"], 3)
    (0.2, 0.5)
    """
    return {"true_bias": habit_units / mean_demand - 1.0,
            "realised_bias_of_scored": forecast_units / mean_demand - 1.0}


def within_counts(buyers: dict[str, dict[str, float]], points: float = 0.05) -> dict[str, Any]:
    """How many buyers the desk (``learned_bias``) and the oracle (``oracle_bias``) read within ``points`` of each
    truth, as ``(within, buyers)``, and their mean absolute misses.

    With the oracle's standard errors (``oracle_sd``), also what even that unbiased oracle could expect:
    ``oracle_expected_within_5_points``, the sum over buyers of ``P(|error| <= points)`` for a normal error of
    that spread, and ``oracle_chance_all_within_5_points``, their product (every buyer inside at once, the
    issue's target). No reader sees more than the oracle, so these bound what any desk can promise.

    >>> out = within_counts({"a": {"true_bias": 0.2, "realised_bias_of_scored": 0.3, "learned_bias": 0.22,
    ...                            "oracle_bias": 0.1}})
    >>> out["buyers_within_5_points"], out["buyers_within_5_points_realised"], out["buyers_within_5_points_oracle"]
    ((1, 1), (0, 1), (0, 1))
    >>> out = within_counts({b: {"true_bias": 0.0, "realised_bias_of_scored": 0.0, "learned_bias": 0.0,
    ...                          "oracle_bias": 0.0, "oracle_sd": 0.05} for b in "ab"})
    >>> round(out["oracle_expected_within_5_points"], 3), round(out["oracle_chance_all_within_5_points"], 3)
    (1.365, 0.466)
    """
    out: dict[str, Any] = {}
    spreads = [v["oracle_sd"] for v in buyers.values() if v.get("oracle_sd")]
    if spreads and len(spreads) == len(buyers):
        inside = [math.erf(points / (sd * math.sqrt(2.0))) for sd in spreads]
        out["oracle_expected_within_5_points"] = float(sum(inside))
        out["oracle_chance_all_within_5_points"] = float(math.prod(inside))
    for truth, suffix in (("true_bias", ""), ("realised_bias_of_scored", "_realised")):
        for reader, name in (("learned_bias", ""), ("oracle_bias", "_oracle"),
                             ("oracle_demand_bias", "_oracle_demand"), ("oracle_log_bias", "_oracle_log"),
                             ("oracle_log_size_bias", "_oracle_log_size")):
            if any(reader not in v for v in buyers.values()):
                continue
            misses = [abs(v[truth] - v[reader]) for v in buyers.values()]
            out[f"buyers_within_5_points{suffix}{name}"] = (sum(m <= points for m in misses), len(misses))
            out[f"mean_abs_miss{suffix}{name}"] = float(np.mean(misses)) if misses else float("nan")
    return out


def _buyer_of(sale: dict[str, Any], priors: dict[tuple[str, str], dict[str, Any]]) -> str | None:
    for p in sale["products"]:
        ef = priors.get((sale["sale_id"], p["sku"]))
        if ef is not None and ef.get("buyer_id"):
            return str(ef["buyer_id"])
    return None


def _outcomes(world: Any, sale: dict[str, Any], priors: dict[tuple[str, str], dict[str, Any]],
              stock: dict[str, int], curve: Any = None) -> Iterable[Outcome]:
    hours = (sale["ends_at"] - sale["starts_at"]).total_seconds() / 3600
    ended = int(sale["ends_at"].timestamp() * 1000)
    for p in sale["products"]:
        key = (sale["sale_id"], p["sku"])
        demand = world.true_demand[key]
        on_hand = stock.get(p["sku"], p["stock"])
        ef = priors.get(key)
        exposure = None
        if curve is not None and demand >= on_hand:
            at = world.sellout_fraction(sale["sale_id"], p["sku"], on_hand)
            exposure = None if at is None else curve(at)
        yield Outcome(sale["sale_id"], p["sku"], None if ef is None else float(ef["expected_units"]),
                      float(min(demand, on_hand)), demand >= on_hand, ef.get("low") if ef else None,
                      ef.get("high") if ef else None, ef.get("buyer_id") if ef else None, p["category"],
                      p["price"], sale["brand"], hours, ended, exposure=exposure)


def presale_block(dataset: str, path: Path | None, service_level: float = 0.9, progress: bool = True,
                  score_from: date | None = None) -> dict[str, Any]:
    """The pre-sale block of ``salepulse evaluate forecast`` for ``dataset``."""
    if dataset == "online-retail":
        return run_online_retail(Path(str(path)), service_level, progress, score_from)
    if dataset == "simulated":
        seed = int(str(path)) if path is not None and str(path).isdigit() else 0
        return run_simulated(seed, service_level=service_level, progress=progress)
    raise ValueError(f"unknown dataset {dataset!r}")


def merge_presale(result: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """Put the checkpoint "0" figures into an ``evaluate forecast`` result, and the rest under ``presale``."""
    for metric in ("wape", "bias", "coverage_p10_p90"):
        for name, values in (block.get(metric) or {}).items():
            if isinstance(values, dict):
                result.setdefault(metric, {}).setdefault(name, {}).update(values)
            else:
                result.setdefault(metric, {})[name] = values
    if "plan" in block:
        result["plan"] = block["plan"]
    if "buyers" in block:
        result["buyers"] = block["buyers"]
    result["presale"] = {k: v for k, v in block.items() if k not in ("wape", "bias", "coverage_p10_p90", "plan",
                                                                       "buyers")}
    return result


def print_presale(result: dict[str, Any]) -> None:
    """The pre-sale lines of the ``evaluate forecast`` table."""
    wape, bias = result.get("wape", {}), result.get("bias", {})
    if "0" not in wape.get("blended", {}):
        return
    print(f"pre-sale (t=0): WAPE expert {wape['prior']['0']:.3f} -> corrected p50 {wape['blended']['0']:.3f} "
          f"(x{wape['blended']['0'] / wape['prior']['0']:.2f}); bias {bias['prior']['0']:+.3f} -> "
          f"{bias['blended']['0']:+.3f}; coverage p10-p90 {result['coverage_p10_p90']['0']:.3f}")
    plan = result.get("plan")
    if plan:
        print(f"plan at service level {plan['service_level']:.2f}: achieved {plan['service_level_achieved']:.3f} "
              f"of skus fully served, unit fill rate {plan['fill_rate_units']:.3f}, "
              f"overstock {plan['overstock_units']:.0f} units ({plan['overstock_share']:.1%} of planned)")
    for buyer, b in (result.get("buyers") or {}).items():
        oracle = (f", oracle {b['oracle_bias']:+.3f} (sd {b['oracle_sd']:.3f})" if "oracle_bias" in b else "")
        realised = (f" (realised on the scored forecasts {b['realised_bias_of_scored']:+.3f})"
                    if "realised_bias_of_scored" in b else "")
        print(f"  {buyer}: true bias (habit) {b['true_bias']:+.3f}{realised}, learned {b['learned_bias']:+.3f}"
              f"{oracle} ({b['finished_sales']} finished sales)")
    presale = result.get("presale", result)
    if "buyers_within_5_points" in presale:
        counts = "; ".join(f"{name} {presale[key][0]}/{presale[key][1]}" for name, key in (
            ("desk", "buyers_within_5_points"), ("oracle", "buyers_within_5_points_oracle"),
            ("desk vs realised", "buyers_within_5_points_realised"),
            ("oracle vs realised", "buyers_within_5_points_realised_oracle")) if key in presale)
        print(f"  buyers within 5 points of their true bias: {counts}")
    if "oracle_expected_within_5_points" in presale:
        print(f"  an unbiased oracle with the standard errors above: {presale['oracle_expected_within_5_points']:.1f} "
              f"buyers within 5 points expected, every one of them with probability "
              f"{presale['oracle_chance_all_within_5_points']:.3f}")
