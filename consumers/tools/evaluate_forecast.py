"""Offline evaluation of the live demand forecast (salepulse.streams.domain.forecast), replayed in time order,
no look-ahead.

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

``simulated``: ``salepulse.consumers.tools.simulate.SimulatedWorld(seed)`` (expert forecasts with 80 % ranges,
categories).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from salepulse.consumers.data.online_retail import (  # noqa: F401  (is_product: one rule; re-exported)
    complete_weeks,
    is_product,
    load_online_retail,
    weekly_totals,
)
from salepulse.consumers.tools.forecast_baselines import BaselineBook
from salepulse.streams.domain.forecast import DemandModel, ExpertPrior, Forecast
from salepulse.streams.platform.clock import elapsed_fraction

CHECKPOINTS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5)
WARMUP_SALES = 8
HISTORY_WEEKS = 4

# ----------------------------------------------------------------------------------------------------
# Online Retail loading
# ----------------------------------------------------------------------------------------------------



# ----------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------

POINT_METHODS: tuple[str, ...] = ("prior", "velocity", "so_far_plus_prior", "tuned_blend", "blended", "mean")
QUANTILES: tuple[tuple[str, float], ...] = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))


def checkpoint_key(cp: float) -> str:
    """JSON key of a checkpoint: ``"0"`` before the sale opens, else ``str(cp)``.

    >>> [checkpoint_key(c) for c in CHECKPOINTS]
    ['0', '0.1', '0.25', '0.5']
    """
    return "0" if cp == 0 else str(cp)


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


class _Scores:
    """Per-(series, checkpoint) forecasts keyed by series, so that overlapping sales cannot misalign them."""

    def __init__(self, checkpoints: Iterable[float]) -> None:
        self.cps = tuple(checkpoints)
        self.rows: dict[float, dict[Hashable, dict[str, float]]] = {c: {} for c in self.cps}
        self.truth: dict[Hashable, float] = {}

    def add(self, cp: float, key: Hashable, f: Forecast, baselines: dict[str, float]) -> None:
        """One series' forecast at checkpoint ``cp`` with the baselines it is scored against."""
        self.rows[cp][key] = {**baselines, "p10": f.p10, "p50": f.p50, "p90": f.p90, "mean": f.mean}

    def result(self) -> dict[str, Any]:
        keys = list(self.truth)
        truth = np.asarray([self.truth[k] for k in keys], dtype=float)
        tot = float(truth.sum())
        sold = truth > 0
        cov = {"inside": {}, "below_p10": {}, "above_p90": {}}
        out: dict[str, Any] = {
            "series": int(truth.size),
            "series_sold": int(sold.sum()),
            "checkpoints": list(self.cps),
            "wape": {m: {} for m in POINT_METHODS},
            "bias": {m: {} for m in POINT_METHODS},
            "pinball": {q: {} for q, _ in QUANTILES},
            "coverage": {k: {} for k in cov},
            "coverage_sold": {k: {} for k in cov},
            "coverage_p10_p90": {},
            "extras": {"blended_point": "p50", "truth_units": tot, "mean_band_width_rel": {}},
        }
        if truth.size == 0 or tot <= 0:
            return out
        for c in self.cps:
            rows = self.rows[c]
            col = {
                name: np.asarray([rows[k][name] for k in keys], dtype=float)
                for name in ("prior", "velocity", "so_far_plus_prior", "tuned_blend", "p10", "p50", "p90", "mean")
            }
            col["blended"] = col["p50"]
            key = checkpoint_key(c)
            for m in POINT_METHODS:
                err = col[m] - truth
                out["wape"][m][key] = _nan_to_none(float(np.abs(err).sum() / tot))
                out["bias"][m][key] = _nan_to_none(float(err.sum() / tot))
            for name, q in QUANTILES:
                diff = truth - col[name]
                out["pinball"][name][key] = float(np.maximum(q * diff, (q - 1.0) * diff).sum() / tot)
            below = truth < col["p10"] - 1e-9
            above = truth > col["p90"] + 1e-9
            for block, mask in (("coverage", np.ones_like(sold)), ("coverage_sold", sold)):
                n = max(int(mask.sum()), 1)
                out[block]["below_p10"][key] = float((below & mask).sum() / n)
                out[block]["above_p90"][key] = float((above & mask).sum() / n)
                out[block]["inside"][key] = float((~below & ~above & mask).sum() / n)
            out["coverage_p10_p90"][key] = out["coverage"]["inside"][key]
            out["extras"]["mean_band_width_rel"][key] = float((col["p90"] - col["p10"]).sum() / tot)
        return out


# ----------------------------------------------------------------------------------------------------
# Replays
# ----------------------------------------------------------------------------------------------------


def _run_online_retail(
    path: Path, score_from: date | None, progress: bool, model: DemandModel | None = None
) -> dict[str, Any]:
    weeks, first_ts, last_ts = load_online_retail(path)
    model = model if model is not None else DemandModel()
    book = BaselineBook()
    scores = _Scores(CHECKPOINTS)
    totals = weekly_totals(weeks)
    mondays = complete_weeks(first_ts, last_ts)
    scored_weeks = 0
    blend_params: dict[str, dict[str, dict[str, float]]] = {}
    for idx, monday in enumerate(tqdm(mondays, desc="online-retail weeks", disable=not progress)):
        history = [totals.get(monday - timedelta(days=7 * k), {}) for k in range(1, HISTORY_WEEKS + 1)]
        codes = sorted(set().union(*history))
        scored = idx >= WARMUP_SALES and (score_from is None or monday >= score_from)
        sale_id = monday.isoformat()
        fcs = {}
        for code in codes:
            prior = sum(h.get(code, 0) for h in history) / HISTORY_WEEKS
            fcs[code] = model.start(sale_id, code, category=None, expert=ExpertPrior(prior))
        lines = sorted(weeks.get(monday, ()))
        pos = 0
        seen: dict[float, tuple[list[float], list[float]]] = {}
        for cp in CHECKPOINTS:
            while pos < len(lines) and lines[pos][0] <= cp:
                frac, code, q = lines[pos]
                fc = fcs.get(code)
                if fc is not None:
                    fc.update(q, frac)
                pos += 1
            priors = [fc.prior.mean for fc in fcs.values()]
            so_far = [fc.units for fc in fcs.values()]
            seen[cp] = (priors, so_far)
            if scored:
                for (code, fc), p, n in zip(fcs.items(), priors, so_far, strict=True):
                    scores.add(cp, (sale_id, code), fc.forecast(cp), book.points(cp, p, n))
        if scored:
            blend_params[sale_id] = {checkpoint_key(c): book.params(c) for c in CHECKPOINTS}
        for frac, code, q in lines[pos:]:
            fc = fcs.get(code)
            if fc is not None:
                fc.update(q, frac)
        truth = [fc.units for fc in fcs.values()]
        if scored:
            scored_weeks += 1
            for code, u in zip(fcs, truth, strict=True):
                scores.truth[(sale_id, code)] = u
        # the sale is over: learn (curve, expert errors, dispersion, baselines) - only now, no look-ahead
        book.finish({c: (*seen[c], truth) for c in CHECKPOINTS}, (x for fc in fcs.values() for x in fc.sold))
        for fc in fcs.values():
            model.finish(fc)
        for _, code, q in lines:
            if code not in fcs:
                model.dispersion.observe(code, None, q)
    out = scores.result()
    out["extras"]["scored_sales"] = scored_weeks
    out["extras"]["tuned_blend_params_last_sale"] = blend_params[max(blend_params)] if blend_params else {}
    grid = model.curves.global_curve.grid
    out["extras"]["curve"] = f"global (no category in this dataset), grid of {grid}"
    out["extras"]["curve_at_checkpoints"] = {checkpoint_key(c): model.curves.global_curve(c) for c in CHECKPOINTS}
    return out


def _run_simulated(seed: int, score_from: date | None, progress: bool) -> dict[str, Any]:
    from salepulse.consumers.tools.simulate import SimulatedWorld

    world = SimulatedWorld(seed=seed)
    model = DemandModel()
    book = BaselineBook()
    scores = _Scores(CHECKPOINTS)
    sales = sorted(world.sales, key=lambda s: s["starts_at"])
    priors = {(p["sale_id"], p["sku"]): p for p in world.priors}
    sale_by_id = {s["sale_id"]: s for s in sales}
    truth = world.true_demand
    on_hand_by_sku = {r["sku"]: r["on_hand"] for r in world.stock}
    fcs: dict[tuple[str, str], Any] = {}
    seen: dict[str, dict[float, tuple[list[float], list[float]]]] = defaultdict(dict)
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
            series = [fcs[(sid, p["sku"])] for p in sale_by_id[sid]["products"]]
            seen[sid][cp] = ([fc.prior.mean for fc in series], [fc.units for fc in series])
            if not scored(sid):
                continue
            for fc in series:
                scores.add(cp, (sid, fc.sku), fc.forecast(cp), book.points(cp, fc.prior.mean, fc.units))
        while ends and (until is None or ends[0][0] <= until):
            _, sid = ends.pop(0)
            if sid not in started:
                start_sale(sale_by_id[sid])
            finished.add(sid)
            series = [fcs[(sid, p["sku"])] for p in sale_by_id[sid]["products"]]
            final = [float(truth.get((sid, fc.sku), fc.units)) for fc in series]
            if scored(sid):
                scored_sales += 1
                for fc, u in zip(series, final, strict=True):
                    scores.truth[(sid, fc.sku)] = u
            book.finish(
                {c: (*seen[sid][c], final) for c in CHECKPOINTS if c in seen[sid]},
                (x for fc in series for x in fc.sold),
            )
            for p, fc in zip(sale_by_id[sid]["products"], series, strict=True):
                model.finish(fc, price=p.get("price"))

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
            at = elapsed_fraction(ts, s["starts_at"], s["ends_at"])
            fc.update(float(line["quantity"]), at)
            # the live agent's rule (streams/domain/live.py): sold out once units reach the stock on hand; the truth is
            # demand, so the forecast must know the sales were censored
            on_hand = on_hand_by_sku.get(line["sku"])
            if on_hand is not None and fc.units >= on_hand:
                fc.mark_stockout(at)
    while next_sale is not None:
        start_sale(next_sale)
        next_sale = next(sale_iter, None)
    # checkpoints and ends interleaved in time order
    flush(None)
    out = scores.result()
    out["extras"]["scored_sales"] = scored_sales
    # scored series whose sale never reached a checkpoint before the data ended have no row: none expected
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
    from salepulse.consumers.tools.evaluate_presale import merge_presale, presale_block

    merge_presale(result, presale_block(dataset, path, progress=progress, score_from=score_from))
    if score_from is not None:
        result["score_from"] = score_from.isoformat()
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2, sort_keys=False))
    return result


def print_table(result: dict[str, Any]) -> None:
    """WAPE of every method, bias, pinball loss and p10-p90 coverage (all series, sold series) per checkpoint."""
    keys = [checkpoint_key(c) for c in result["checkpoints"]]

    def line(label: str, row: dict[str, float | None], fmt: str = ">10.3f") -> None:
        cells = "".join(f"{'-':>10}" if row.get(k) is None else f"{row[k]:{fmt}}" for k in keys)
        print(f"{label:<26}" + cells)

    print(f"dataset={result['dataset']}  series={result['series']}  sold={result.get('series_sold')}")
    print(f"{'metric':<26}" + "".join(f"{'t=' + k:>10}" for k in keys))
    for name in POINT_METHODS:
        line(f"WAPE {name}", result["wape"][name])
    for name in ("blended", "mean"):
        line(f"bias {name}", result["bias"][name], ">+10.3f")
    for name in result["pinball"]:
        line(f"pinball {name}", result["pinball"][name])
    for block in ("coverage", "coverage_sold"):
        for part in ("inside", "below_p10", "above_p90"):
            line(f"{block} {part}", result[block][part])
    from salepulse.consumers.tools.evaluate_presale import print_presale  # issue 15

    print_presale(result)
