"""Offline evaluation of the live demand forecast (salepulse.streams.forecast), replayed in time order, no look-ahead.

Datasets
--------
``online-retail`` (UCI Online Retail, 2010-12-01 .. 2011-10-31):

* Each ISO week is a sale, clock Monday 00:00 -> Sunday 24:00.  Only weeks fully inside the data are sales
  (2010-12-06 .. 2011-10-24); the first 8 of them only warm up (train curve / error model / dispersion).
* Sales lines: Quantity > 0, InvoiceNo not starting with ``C``, UnitPrice > 0 (price-0 rows are stock
  adjustments such as "?", "found", "wrongly coded"), and a product StockCode (no POST, DOT, M, C2, D, S, B,
  PADS, BANK CHARGES, AMAZONFEE, CRUK, gift vouchers ``gift_0001_*``, ``DCGS*`` "ebay"/blank adjustments...).
* A week's products = the stock codes sold in any of the 4 previous calendar weeks; expert prior = mean weekly
  units over those 4 weeks (zeros included); truth = units sold in the week.
* The forecast of each series goes through ``DemandModel.start`` / ``DemandForecaster.update`` /
  ``DemandForecaster.forecast`` / ``DemandModel.finish``, exactly what the live agent calls.  The dataset has
  no category: ONE global sales curve is learned (category=None); dispersion is learned per stock code.
* Scored at elapsed fractions 0.1, 0.25, 0.5 against ``prior`` (the prior alone) and ``velocity``
  (units so far / elapsed fraction).  ``blended`` = the posterior predictive MEDIAN (p50) - it has a lower
  WAPE than the posterior mean (both are reported in the JSON extras).

``simulated``: ``salepulse.consumers.simulate.SimulatedWorld(seed)`` (expert forecasts with 80 % ranges, categories).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from salepulse.consumers.data import online_retail
from salepulse.consumers.data.online_retail import is_product  # noqa: F401  (one rule; re-exported)
from salepulse.streams.forecast import DemandModel, ExpertPrior, Forecast, elapsed_fraction

CHECKPOINTS: tuple[float, ...] = (0.1, 0.25, 0.5)
WARMUP_SALES = 8
HISTORY_WEEKS = 4

# ----------------------------------------------------------------------------------------------------
# Online Retail loading
# ----------------------------------------------------------------------------------------------------

WEEK_SECONDS = 7 * 86400.0


def load_online_retail(path: Path) -> tuple[dict[date, list[tuple[float, str, int]]], datetime, datetime]:
    """Sales lines grouped by ISO week (Monday) as (elapsed fraction of the week, stock code, units)."""
    weeks: dict[date, list[tuple[float, str, int]]] = defaultdict(list)
    day_cache: dict[str, tuple[date, float]] = {}
    span: list[str] = []  # first and last InvoiceDate of all rows, kept or not
    for row in online_retail.rows(Path(path), span=span):  # the shared rule of what a sold product line is
        ts = row.when
        day = ts[:10]
        dc = day_cache.get(day)
        if dc is None:
            d = date.fromisoformat(day)
            dc = day_cache[day] = (d - timedelta(days=d.weekday()), d.weekday() * 86400.0)
        secs = dc[1] + int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + int(ts[17:19])
        weeks[dc[0]].append((secs / WEEK_SECONDS, row.sku, row.quantity))
    if not span:
        raise ValueError(f"no rows in {path}")
    return weeks, datetime.fromisoformat(span[0]), datetime.fromisoformat(span[1])


# ----------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------


class _Scores:
    """Collects per-(series, checkpoint) forecasts as arrays for the metrics."""

    def __init__(self, checkpoints: Iterable[float]) -> None:
        self.cps = tuple(checkpoints)
        self.cols: dict[float, dict[str, list[float]]] = {c: defaultdict(list) for c in self.cps}
        self.truth: list[float] = []

    def add(self, cp: float, **values: float) -> None:
        col = self.cols[cp]
        for k, v in values.items():
            col[k].append(v)

    def add_forecast(self, cp: float, f: Forecast) -> None:
        """One series' forecast at checkpoint ``cp``, with the two baselines it is scored against."""
        self.add(cp, prior=f.prior_mean, velocity=f.units_so_far / cp, p10=f.p10, p50=f.p50, p90=f.p90,
                 mean=f.mean)

    def result(self) -> dict[str, Any]:
        truth = np.asarray(self.truth, dtype=float)
        tot = float(truth.sum())
        out: dict[str, Any] = {
            "series": int(truth.size),
            "checkpoints": list(self.cps),
            "wape": {"prior": {}, "velocity": {}, "blended": {}},
            "bias": {"blended": {}},
            "coverage_p10_p90": {},
            "extras": {
                "blended_point": "p50",
                "truth_units": tot,
                "wape_posterior_mean": {},
                "bias_prior": {},
                "bias_velocity": {},
                "bias_posterior_mean": {},
                "coverage_below_p10": {},
                "coverage_above_p90": {},
                "mean_band_width_rel": {},
            },
        }
        if truth.size == 0 or tot <= 0:
            return out
        for c in self.cps:
            col = {k: np.asarray(v, dtype=float) for k, v in self.cols[c].items()}
            key = str(c)

            def wape(f: np.ndarray) -> float:
                return float(np.abs(f - truth).sum() / tot)

            def bias(f: np.ndarray) -> float:
                return float((f - truth).sum() / tot)

            out["wape"]["prior"][key] = wape(col["prior"])
            out["wape"]["velocity"][key] = wape(col["velocity"])
            out["wape"]["blended"][key] = wape(col["p50"])
            out["bias"]["blended"][key] = bias(col["p50"])
            inside = (truth >= col["p10"] - 1e-9) & (truth <= col["p90"] + 1e-9)
            out["coverage_p10_p90"][key] = float(inside.mean())
            ex = out["extras"]
            ex["wape_posterior_mean"][key] = wape(col["mean"])
            ex["bias_prior"][key] = bias(col["prior"])
            ex["bias_velocity"][key] = bias(col["velocity"])
            ex["bias_posterior_mean"][key] = bias(col["mean"])
            ex["coverage_below_p10"][key] = float((truth < col["p10"] - 1e-9).mean())
            ex["coverage_above_p90"][key] = float((truth > col["p90"] + 1e-9).mean())
            ex["mean_band_width_rel"][key] = float((col["p90"] - col["p10"]).sum() / tot)
        return out


# ----------------------------------------------------------------------------------------------------
# Replays
# ----------------------------------------------------------------------------------------------------


def _run_online_retail(
    path: Path, score_from: date | None, progress: bool, model: DemandModel | None = None
) -> dict[str, Any]:
    weeks, first_ts, last_ts = load_online_retail(path)
    model = model if model is not None else DemandModel()
    scores = _Scores(CHECKPOINTS)
    totals: dict[date, dict[str, int]] = {}
    for monday, lines in weeks.items():
        t: dict[str, int] = defaultdict(int)
        for _, code, q in lines:
            t[code] += q
        totals[monday] = t
    # complete weeks only: Monday 00:00 .. Sunday 24:00 inside the data
    mondays: list[date] = []
    m = first_ts.date() - timedelta(days=first_ts.weekday())
    if datetime.combine(m, datetime.min.time()) < first_ts:
        m += timedelta(days=7)
    while datetime.combine(m + timedelta(days=7), datetime.min.time()) <= last_ts:
        mondays.append(m)
        m += timedelta(days=7)
    scored_weeks = 0
    for idx, monday in enumerate(tqdm(mondays, desc="online-retail weeks", disable=not progress)):
        history = [totals.get(monday - timedelta(days=7 * k), {}) for k in range(1, HISTORY_WEEKS + 1)]
        codes = set().union(*history)
        scored = idx >= WARMUP_SALES and (score_from is None or monday >= score_from)
        sale_id = monday.isoformat()
        fcs = {}
        for code in codes:
            prior = sum(h.get(code, 0) for h in history) / HISTORY_WEEKS
            fcs[code] = model.start(sale_id, code, category=None, expert=ExpertPrior(prior))
        lines = sorted(weeks.get(monday, ()))
        pos = 0
        for cp in CHECKPOINTS:
            while pos < len(lines) and lines[pos][0] <= cp:
                frac, code, q = lines[pos]
                fc = fcs.get(code)
                if fc is not None:
                    fc.update(q, frac)
                pos += 1
            if scored:
                for fc in fcs.values():
                    f = fc.forecast(cp)
                    scores.add_forecast(cp, f)
        for frac, code, q in lines[pos:]:
            fc = fcs.get(code)
            if fc is not None:
                fc.update(q, frac)
        if scored:
            scored_weeks += 1
            scores.truth.extend(fc.units for fc in fcs.values())
        # the sale is over: learn (curve, expert errors, dispersion) - only now, no look-ahead
        for fc in fcs.values():
            model.finish(fc)
        for _, code, q in lines:
            if code not in fcs:
                model.dispersion.observe(code, None, q)
    out = scores.result()
    out["extras"]["scored_sales"] = scored_weeks
    grid = model.curves.global_curve.grid
    out["extras"]["curve"] = f"global (no category in this dataset), grid of {grid}"
    out["extras"]["curve_at_checkpoints"] = {str(c): model.curves.global_curve(c) for c in CHECKPOINTS}
    return out


def _run_simulated(seed: int, score_from: date | None, progress: bool) -> dict[str, Any]:
    try:
        from salepulse.consumers.simulate import SimulatedWorld  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on another engineer's file
        raise NotImplementedError(
            "dataset 'simulated' needs consumers/simulate.py with SimulatedWorld(seed) (.sales, .priors, "
            ".true_demand, .events()); it is not importable here"
        ) from exc
    world = SimulatedWorld(seed=seed)
    model = DemandModel()
    scores = _Scores(CHECKPOINTS)
    sales = sorted(world.sales, key=lambda s: s["starts_at"])
    priors = {(p["sale_id"], p["sku"]): p for p in world.priors}
    sale_by_id = {s["sale_id"]: s for s in sales}
    truth = world.true_demand
    fcs: dict[tuple[str, str], Any] = {}
    pending_cp: list[tuple[datetime, float, str]] = []  # (time, checkpoint, sale_id)
    started: set[str] = set()
    finished: set[str] = set()
    ends: list[tuple[datetime, str]] = sorted((s["ends_at"], s["sale_id"]) for s in sales)
    scored_sales = 0

    def start_sale(sale: dict[str, Any]) -> None:
        sid = sale["sale_id"]
        started.add(sid)
        for p in sale["products"]:
            ef = priors.get((sid, p["sku"]))
            expert = None
            if ef is not None:
                expert = ExpertPrior(float(ef["expected_units"]), ef.get("low"), ef.get("high"))
            fcs[(sid, p["sku"])] = model.start(sid, p["sku"], p.get("category"), expert, price=p.get("price"))
        for cp in CHECKPOINTS:
            at = sale["starts_at"] + (sale["ends_at"] - sale["starts_at"]) * cp
            pending_cp.append((at, cp, sid))
        pending_cp.sort()

    def scored(sid: str) -> bool:
        s = sale_by_id[sid]
        return score_from is None or s["starts_at"].date() >= score_from

    def flush(until: datetime | None) -> None:
        nonlocal scored_sales
        while pending_cp and (until is None or pending_cp[0][0] <= until):
            _, cp, sid = pending_cp.pop(0)
            if not scored(sid):
                continue
            for p in sale_by_id[sid]["products"]:
                f = fcs[(sid, p["sku"])].forecast(cp)
                scores.add_forecast(cp, f)
        while ends and (until is None or ends[0][0] <= until):
            _, sid = ends.pop(0)
            if sid not in started:
                start_sale(sale_by_id[sid])
            finished.add(sid)
            if scored(sid):
                scored_sales += 1
                for p in sale_by_id[sid]["products"]:
                    scores.truth.append(float(truth.get((sid, p["sku"]), fcs[(sid, p["sku"])].units)))
            for p in sale_by_id[sid]["products"]:
                model.finish(fcs[(sid, p["sku"])], price=p.get("price"))

    sale_iter = iter(sales)
    next_sale = next(sale_iter, None)
    for kind, rec in tqdm(world.events(), desc="simulated events", disable=not progress):
        if kind != "order":
            continue
        ts = rec["ts"]
        while next_sale is not None and next_sale["starts_at"] <= ts:
            start_sale(next_sale)
            next_sale = next(sale_iter, None)
        flush(ts)
        for line in rec["lines"]:
            key = (line["sale_id"], line["sku"])
            fc = fcs.get(key)
            if fc is None or line["sale_id"] in finished:
                continue
            s = sale_by_id[line["sale_id"]]
            fc.update(float(line["quantity"]), elapsed_fraction(ts, s["starts_at"], s["ends_at"]))
    while next_sale is not None:
        start_sale(next_sale)
        next_sale = next(sale_iter, None)
    # checkpoints and ends interleaved in time order
    flush(None)
    out = scores.result()
    out["extras"]["scored_sales"] = scored_sales
    return out


def run(
    dataset: str,
    path: Path,
    json_out: Path | None,
    score_from: date | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay ``dataset`` through the live forecast code and score it; optionally write the JSON.

    ``path`` is the data file for ``online-retail``; for ``simulated`` it is ignored unless it is an integer
    (the seed; default 0).
    """
    if dataset == "online-retail":
        body = _run_online_retail(Path(path), score_from, progress)
    elif dataset == "simulated":
        seed = 0
        if path is not None and str(path).isdigit():
            seed = int(str(path))
        body = _run_simulated(seed, score_from, progress)
    else:
        raise ValueError(f"unknown dataset {dataset!r} (online-retail | simulated)")
    result: dict[str, Any] = {"dataset": dataset, **body}
    # pre-sale (checkpoint "0"), plan and buyers: issue 15
    from salepulse.consumers.evaluate_presale import merge_presale, presale_block

    merge_presale(result, presale_block(dataset, path, progress=progress, score_from=score_from))
    if score_from is not None:
        result["score_from"] = score_from.isoformat()
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2, sort_keys=False))
    return result


def print_table(result: dict[str, Any]) -> None:
    """Short table: WAPE per method, bias and p10-p90 coverage per checkpoint."""
    cps = [str(c) for c in result["checkpoints"]]
    print(f"dataset={result['dataset']}  series={result['series']}")
    print(f"{'metric':<22}" + "".join(f"{'t=' + c:>10}" for c in cps))
    for name in ("prior", "velocity", "blended"):
        row = result["wape"][name]
        print(f"{'WAPE ' + name:<22}" + "".join(f"{row.get(c, math.nan):>10.3f}" for c in cps))
    row = result["bias"]["blended"]
    print(f"{'bias blended':<22}" + "".join(f"{row.get(c, math.nan):>+10.3f}" for c in cps))
    row = result["coverage_p10_p90"]
    print(f"{'coverage p10-p90':<22}" + "".join(f"{row.get(c, math.nan):>10.3f}" for c in cps))
    from salepulse.consumers.evaluate_presale import print_presale  # issue 15

    print_presale(result)
