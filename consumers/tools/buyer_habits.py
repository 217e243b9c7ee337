"""How a simulated buyer turns a product's mean demand into a forecast, and what that forecast is worth on average.

The simulator (:class:`salepulse.consumers.tools.simulate_world.SimulatedWorld`) draws each forecast as::

    log f = ANCHORING * (ln(mu + 0.5) + bias + dept_bias + size_slope * (ln(mu + 0.5) - ln typical) + e)
            + TYPICAL_PULL * ln typical
    e ~ N(0, FORECAST_NOISE_SD^2), plus N(0, BIG_MISS_SD^2) with probability BIG_MISS_RATE
    forecast = max(1, e^(log f)), rounded like a buyer (share BUYER_ROUNDING_SHARE) or to the unit

``mu`` is the product's mean demand and ``typical`` the geometric mean of ``mu + 0.5`` over the sale. The buyer's
*habit* is everything but ``e``: what a colleague who knew the buyer exactly would expect them to say.
:func:`expected_forecast` integrates ``e`` (and the rounding) out, so ``sum E[f] / sum mu - 1`` over a set of
products is the buyer's true bias on that mix, free of the noise of the particular forecasts drawn.

Pure (numpy only): the world draws with these constants; the pre-sale evaluation reads the truth with them.
"""

from __future__ import annotations

import math

import numpy as np

from salepulse.consumers.tools.simulate_plan import round_like_a_buyer

FORECAST_NOISE_SD = 0.35
"""Per-forecast log noise of every buyer (before anchoring)."""
BIG_MISS_RATE = 0.06
"""Share of forecasts with an extra big miss: a product nobody saw coming (or going)."""
BIG_MISS_SD = 1.1
"""Log spread of a big miss (added to the ordinary noise)."""
ANCHORING = 0.8
"""Weight of the buyer's own view ..."""
TYPICAL_PULL = 0.2
"""... and of the sale's typical product (``1 - ANCHORING``, written out so the world's draws stay bit-identical)."""
BUYER_ROUNDING_SHARE = 0.75
"""Share of forecasts rounded like a buyer (:func:`round_like_a_buyer`); the others to the unit."""

_STEPS = ((10, 1), (100, 5), (300, 10), (1000, 25), (3000, 50))


def habit_log_forecast(mu: np.ndarray, typical: float, bias: float, dept_bias: np.ndarray | float,
                       size_slope: float) -> np.ndarray:
    """The log forecast a buyer's habit gives a product of mean demand ``mu`` (the noise ``e`` at 0).

    >>> float(habit_log_forecast(np.array([9.5]), 10.0, 0.0, 0.0, 0.0)[0]) == math.log(10.0)
    True
    """
    lm = np.log(np.asarray(mu, dtype=float) + 0.5)
    own = lm + bias + np.asarray(dept_bias, dtype=float) + size_slope * (lm - math.log(typical))
    return ANCHORING * own + TYPICAL_PULL * math.log(typical)


def round_like_a_buyer_array(values: np.ndarray) -> np.ndarray:
    """:func:`round_like_a_buyer` over an array (same rule, numpy's round-half-to-even like Python's).

    >>> xs = [0.3, 1.4, 7.5, 12.4, 97.6, 123.0, 349.0, 1234.0, 4321.0]
    >>> round_like_a_buyer_array(np.array(xs)).tolist() == [round_like_a_buyer(x) for x in xs]
    True
    """
    v = np.asarray(values, dtype=float)
    out = np.round(v / 100.0) * 100.0
    for limit, step in reversed(_STEPS):
        stepped = np.where(v >= step / 2.0, np.maximum(step, np.round(v / step) * step), np.round(v))
        out = np.where(v < limit, stepped, out)
    return out


def _noise_grid(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``e`` and their probabilities (the two-normal mixture on a fine grid)."""
    wide = math.sqrt(FORECAST_NOISE_SD**2 + BIG_MISS_SD**2)
    e = np.linspace(-8.0 * wide, 8.0 * wide, points)
    pdf = ((1.0 - BIG_MISS_RATE) * np.exp(-0.5 * (e / FORECAST_NOISE_SD) ** 2) / FORECAST_NOISE_SD
           + BIG_MISS_RATE * np.exp(-0.5 * (e / wide) ** 2) / wide)
    return e, pdf / pdf.sum()


def expected_forecast(log_habit: np.ndarray, rounding: bool = True, points: int = 6001) -> np.ndarray:
    """``E[forecast]`` for habit log forecasts ``log_habit``, the per-forecast noise (and rounding) integrated out.

    Without the floor at 1 and the rounding it is ``e^(log_habit) E[e^(ANCHORING e)]``, with
    ``E[e^(c e)] = (1 - p) e^(c^2 s^2 / 2) + p e^(c^2 (s^2 + S^2) / 2)`` for the mixture:

    >>> a = np.log(np.array([50.0, 400.0]))
    >>> c = ANCHORING ** 2 / 2
    >>> closed = np.exp(a) * ((1 - BIG_MISS_RATE) * np.exp(c * FORECAST_NOISE_SD ** 2)
    ...                       + BIG_MISS_RATE * np.exp(c * (FORECAST_NOISE_SD ** 2 + BIG_MISS_SD ** 2)))
    >>> bool(np.allclose(expected_forecast(a, rounding=False), closed, rtol=1e-3))
    True
    """
    a = np.atleast_1d(np.asarray(log_habit, dtype=float))
    e, w = _noise_grid(points)
    out = np.empty_like(a)
    for lo in range(0, a.size, 256):  # bounded memory: 256 forecasts x the grid at a time
        f = np.maximum(1.0, np.exp(a[lo:lo + 256, None] + ANCHORING * e[None, :]))
        if rounding:
            f = BUYER_ROUNDING_SHARE * round_like_a_buyer_array(f) + (1.0 - BUYER_ROUNDING_SHARE) * np.round(f)
        out[lo:lo + 256] = f @ w
    return out


__all__ = ["ANCHORING", "BIG_MISS_RATE", "BIG_MISS_SD", "BUYER_ROUNDING_SHARE", "FORECAST_NOISE_SD", "TYPICAL_PULL",
           "expected_forecast", "habit_log_forecast", "round_like_a_buyer", "round_like_a_buyer_array"]
