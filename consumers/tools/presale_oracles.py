"""Oracles of the pre-sale evaluation that read a buyer's habit from the true mean demand of their forecasts.

:func:`salepulse.consumers.tools.evaluate_presale.run_simulated` reports, beside the desk's ``learned_bias``, what
readers that know every finished forecast's mean demand ``mu`` get: the ratio of sums ``sum f / sum mu`` (the
desk's former estimator without demand noise or sell-outs), and the efficient readers of :func:`habit_ratio`,
which weigh every forecast alike instead of by its units: a buyer's habit is in each of their forecasts, and a hero
product's own noise is not a habit.

Pure (numpy only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def habit_ratio(mu: Sequence[float] | np.ndarray, forecast: Sequence[float] | np.ndarray,
                size: bool = True) -> float:
    """A buyer's habit ``sum E[f | mu] / sum mu`` read from finished forecasts ``forecast`` of mean demand ``mu``.

    ``size=False``: ``exp(mean(ln(f / mu)) + s^2 / 2)``, the lognormal mean of the per-forecast ratio, ``s`` the
    log ratios' standard deviation (estimated, not the simulator's). ``size=True``: the same per size class of
    ``mu`` (octaves of ``mu + 1/2``; ``s`` per class with 5 forecasts or more, else pooled over the classes), summed
    with the classes' units, because a buyer's ratio moves with the product's size (anchored on the sale's typical
    product, big numbers run low and small ones high; a forecast is at least 1) and the habit scored is
    unit-weighted, so mostly the big numbers'.

    >>> rng = np.random.default_rng(0)
    >>> mu = rng.lognormal(2.0, 1.5, 4000)
    >>> f = 1.2 * mu * np.exp(rng.normal(0.0, 0.35, mu.size) - 0.35**2 / 2)  # 20% high on average
    >>> abs(habit_ratio(mu, f, size=False) - 1.2) < 0.015, abs(habit_ratio(mu, f) - 1.2) < 0.015
    (True, True)
    >>> f = mu ** 0.8 * 3.0 * np.exp(rng.normal(0.0, 0.35, mu.size))  # anchored: big ones run low
    >>> truth = float((mu ** 0.8 * 3.0 * np.exp(0.35**2 / 2)).sum() / mu.sum())
    >>> abs(habit_ratio(mu, f) - truth) < 0.02 < abs(habit_ratio(mu, f, size=False) - truth)
    True
    """
    m = np.maximum(np.asarray(mu, dtype=float), 1e-6)
    y = np.log(np.maximum(np.asarray(forecast, dtype=float), 1e-6)) - np.log(m)
    if y.size == 0:
        return float("nan")
    if not size:
        s2 = float(y.var(ddof=1)) if y.size > 1 else 0.0
        return float(np.exp(y.mean() + s2 / 2.0))
    classes = np.floor(np.log2(m + 0.5)).astype(int)
    means = {c: float(y[classes == c].mean()) for c in np.unique(classes)}
    resid = y - np.array([means[c] for c in classes])
    pooled = float((resid**2).sum() / max(y.size - len(means), 1))
    total = 0.0
    for c, mean in means.items():
        inside = classes == c
        k = int(inside.sum())
        s2 = float((resid[inside] ** 2).sum() / (k - 1)) if k >= 5 else pooled
        total += float(m[inside].sum()) * float(np.exp(mean + s2 / 2.0))
    return total / float(m.sum())


__all__ = ["habit_ratio"]
