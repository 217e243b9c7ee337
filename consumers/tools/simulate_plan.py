"""The shape of a simulated world, shared by its parts: ids and times, the fixed vocabulary (categories, names,
price bands, regions) and what is decided about one sale before it opens (:class:`_SalePlan`) and while it runs
(:class:`_SaleRun`). Part of :mod:`salepulse.consumers.tools.simulate` (pure, no Kafka, no Faust).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

Record = dict[str, Any]
Event = tuple[str, Record]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
"""A fixed default so that ``SimulatedWorld(seed)`` is the same world on every machine and every day."""
DEFAULT_TIME_SCALE = 60.0
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

# (category path, typical full price in EUR). Prices of a category differ by brand and product around it.
CATEGORIES: tuple[tuple[str, float], ...] = (
    ("apparel.dresses", 59.0), ("apparel.tops", 29.0), ("apparel.jeans", 49.0), ("apparel.outerwear", 99.0),
    ("shoes.sneakers", 69.0), ("shoes.boots", 109.0), ("shoes.sandals", 39.0), ("accessories.bags", 79.0),
    ("accessories.watches", 129.0), ("accessories.jewellery", 45.0), ("beauty.skincare", 25.0),
    ("beauty.fragrance", 55.0), ("home.kitchen", 35.0), ("home.textiles", 30.0), ("home.decor", 40.0),
    ("sports.fitness", 35.0), ("kids.apparel", 22.0), ("electronics.audio", 89.0),
)
ADJECTIVES = ("Classic", "Urban", "Essential", "Soft", "Bold", "Studio", "Coastal", "Alpine", "Vintage", "Nova",
              "Luxe", "Everyday", "Signature", "Pure", "Metro", "Heritage")
SYLLABLES = ("lu", "na", "ro", "ve", "ski", "mo", "ri", "ta", "zen", "ko", "li", "sa", "vi", "or", "el", "da",
             "ne", "ba", "quo", "fi", "ar", "mi", "tes", "ul")

PRICE_BANDS = 5
"""Products and members fall into 5 price bands (budget .. premium) relative to the category's usual price."""
PRICE_AFFINITY = np.array([1.0, 0.45, 0.15, 0.06, 0.03])
"""How much a member likes a product 0, 1, 2, ... bands away from her own band."""
CATEGORY_BOOST = 4.0
"""A favourite category is (1 + boost) times as attractive as another one."""
BRAND_BOOST = 7.0
"""A member with the sale's brand among her favourites visits it (1 + boost) times as often."""
APP_SHARE = 0.55
N_BUYERS = 6
REGIONS = ("north", "south", "east", "west")
REGION_WEIGHTS = (0.35, 0.3, 0.2, 0.15)
"""Members' delivery regions (one warehouse each) and how the membership is spread over them."""
CURRENCY = "EUR"

# heap entry kinds
_VIEW, _CART, _UNCART, _ORDER = 0, 1, 2, 3


def _ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact integer arithmetic, no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _nice(value: float) -> float:
    """Round the way people round forecasts: to 1 below 10, 5 below 100, 10 below 300, then 25, 50, 100."""
    for limit, step in ((10, 1), (100, 5), (300, 10), (1000, 25), (3000, 50)):
        if value < limit:
            return float(max(step, round(value / step) * step)) if value >= step / 2 else float(round(value))
    return float(round(value / 100) * 100)


@dataclass
class _SalePlan:
    """Everything decided about one sale before it opens (numpy arrays are per product)."""

    index: int
    sale_id: str
    brand: int
    start_ms: int
    end_ms: int
    skus: list[str]
    categories: np.ndarray  # category index per product
    bands: np.ndarray  # price band per product
    prices: list[float]
    view_weight: np.ndarray  # relative attention a product gets, before member taste
    extra_units: np.ndarray  # mean units per order line minus 1 (overdispersion differs by product)
    expected: np.ndarray  # mean demand the buyers try to forecast
    demand: np.ndarray  # realised unconstrained demand (units)
    stock: list[int]
    view_to_cart: float
    cart_to_order: float
    decay: float  # k of the exp(-k t) arrival intensity, t in sale fractions
    late_bump: float  # share of arrivals in the last-chance bump
    expected_events: float

    @property
    def n_slices(self) -> int:
        """One slice per simulated minute (at most 720): the unit of lazy generation."""
        return int(min(720, max(1, math.ceil((self.end_ms - self.start_ms) / MINUTE_MS))))

    def arrival_cdf(self, u: np.ndarray) -> np.ndarray:
        """Share of a sale's arrivals before fraction ``u`` of its life: decaying start plus a late bump."""
        k, beta, k2 = self.decay, self.late_bump, 25.0
        early = (1.0 - np.exp(-k * u)) / (1.0 - math.exp(-k))
        late = (np.exp(-k2 * (1.0 - u)) - math.exp(-k2)) / (1.0 - math.exp(-k2))
        return (1.0 - beta) * early + beta * late


@dataclass
class _SaleRun:
    """The state of an open sale while its slices are being generated; dropped after its last slice."""

    plan: _SalePlan
    rng: np.random.Generator
    audience: np.ndarray  # cumulative visit weights over members
    orders: list[tuple[tuple[int, int], ...]]  # planned orders: ((product, units), ...), in arrival order
    next_order: int
    order_counts: np.ndarray  # order journeys per slice
    session_counts: np.ndarray  # browse-only sessions per slice
    p_cart: float  # chance that a browse-session view becomes a cart add
