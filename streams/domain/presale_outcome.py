"""The facts the pre-sale desk learns from: :class:`Outcome` (a finished (sale, sku)), forecast-size buckets and
the shared defaults of :mod:`salepulse.streams.domain.presale` (pure logic, no Kafka, no Faust).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_PRIOR_STRENGTH = 20.0
"""Pseudo-forecasts of the parent group behind every group's correction: a buyer's own record outweighs the pool
once they have more than 20 finished forecasts in that group (about one sale of 20 products)."""
DEFAULT_LOG_SD = 0.7
"""Spread of ln(demand + 1) around the corrected forecast before any residual is known (a factor 2 either way)."""
_Z90 = 1.2815515655446004


def size_bucket(units: float) -> int:
    """Forecast-size bucket ``floor(log2(units + 1))``, capped at 14.

    >>> size_bucket(0), size_bucket(1), size_bucket(200), size_bucket(1e9)
    (0, 1, 7, 14)
    """
    return min(int(math.log2(max(units, 0.0) + 1.0)), 14)


def size_phrase(bucket: int) -> str:
    """The forecast sizes of a bucket as a buyer reads them.

    >>> size_phrase(0), size_phrase(7)
    ('of under 1 unit', 'of 127-254 units')
    """
    low, high = 2**bucket - 1, 2 ** (bucket + 1) - 2
    if bucket == 0:
        return "of under 1 unit"
    return f"of {low}-{high} units"


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished (sale, sku) teaches: the buyer's number (if any), what sold, and whether it sold out.

    ``censored`` means the sku sold out, so ``actual`` (units sold) is only a lower bound of demand.
    """

    sale_id: str
    sku: str
    expert: float | None
    actual: float
    censored: bool = False
    low: float | None = None
    high: float | None = None
    buyer_id: str | None = None
    category: str | None = None
    price: float | None = None
    brand: str | None = None
    sale_hours: float | None = None
    ended_ms: int = 0
    regions: tuple[tuple[str, float], ...] = ()
    """Units sold per delivery region (orders that carried one), sorted by region."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """From a ``ForecastOutcome`` Avro record (``ended_at`` in ms)."""
        ended = record.get("ended_at") or 0
        if not isinstance(ended, int):
            ended = int(ended.timestamp() * 1000)
        return cls(record["sale_id"], record["sku"], record.get("expert"), float(record["actual"]),
                   bool(record.get("censored")), record.get("low"), record.get("high"), record.get("buyer_id"),
                   record.get("category"), record.get("price"), record.get("brand"), record.get("sale_hours"),
                   ended, tuple(sorted((r["region"], float(r["units"])) for r in record.get("regions") or ())))

    def to_record(self) -> dict[str, Any]:
        """The ``ForecastOutcome`` Avro record."""
        return {"event_id": f"{self.sale_id}:{self.sku}:outcome", "sale_id": self.sale_id, "sku": self.sku,
                "expert": self.expert, "low": self.low, "high": self.high, "actual": float(self.actual),
                "censored": self.censored, "buyer_id": self.buyer_id, "category": self.category,
                "price": self.price, "brand": self.brand, "sale_hours": self.sale_hours, "ended_at": self.ended_ms,
                "regions": [{"region": r, "units": u} for r, u in self.regions]}
