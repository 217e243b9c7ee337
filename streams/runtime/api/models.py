"""Typed request and response bodies of the HTTP API (pydantic v2): ``/openapi.json`` is generated from these,
every JSON answer is checked against its model, and ``tests/unit/test_api_models.py`` checks that the request
models accept exactly what :mod:`salepulse.schemas.json_input` (the one validation boundary for HTTP, Kafka and
CSV input, whose field-by-field messages callers see) accepts.

Response models allow extra fields: a field added to a payload is documented when it is added here, and never
breaks an answer meanwhile. The items of long lists (products, sales, ranked items) are TypedDicts: checking them
needs no model instances, which made checking a 5,000-product sale about 4 times cheaper than with models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(Model):
    """Every error answer, whatever the status."""

    error: str = Field(description="What went wrong and what to do about it.")
    problems: list[Any] | None = Field(None, description="Itemised problems, e.g. each refused event and why.")


# --- ops ---------------------------------------------------------------------------------------------------
class Health(Model):
    status: Literal["ok"]
    ready: bool = Field(description="Partitions assigned and catalogue loaded: table-backed answers are complete.")
    detail: str
    time: str


class Stats(Model):
    """Counters as JSON: what the demo and the tests read to know the worker has caught up."""

    events_processed: int
    events_processed_by_kind: dict[str, int]
    deadletters: int
    facts_sent: int
    facts_counted: int
    facts_duplicate: int
    signals_sent: int
    signals_learned: int
    alerts: dict[str, int]
    processed_offsets: dict[str, int] = Field(description="Highest offset handled per 'topic:partition'.")
    open_sales: int
    stream_time: str | None
    clock_ignored: int = Field(description="Event times too far ahead of the wall clock to move stream time.")
    catalog_rejected: int = Field(description="Catalogue records the live state could not use (skipped).")
    sales_cached: int = Field(description="Sale states kept decoded in memory (bounded).")


# --- sales -------------------------------------------------------------------------------------------------
Number = float | None


class SaleSummary(TypedDict):
    sale_id: str
    brand: str
    starts_at: str
    ends_at: str
    elapsed_fraction: float
    units: int
    revenue: float
    velocity_uph: float
    expert_prior: Number
    p10: Number
    p50: Number
    p90: Number
    stock: float
    projected_stockout_at: str | None
    open_alerts: int


class ProductView(TypedDict):
    sku: str
    name: str
    category: str | None
    price: float | None
    views: int
    carts: int
    orders: int
    units: int
    revenue: float
    velocity_uph: float
    expert_prior: Number
    prior_source: str | None
    p10: Number
    p50: Number
    p90: Number
    stock: float | None
    projected_stockout_at: str | None
    alert: str | None
    alert_severity: str | None


class SaleDetail(SaleSummary):
    is_open: bool
    products: list[ProductView]


class SalesList(Model):
    stream_time: str | None
    sales: list[SaleSummary]


# --- members -----------------------------------------------------------------------------------------------
class RankedSale(TypedDict):
    sale_id: str
    brand: str
    score: float
    reason: Annotated[str, Field(description='Why it ranks here, e.g. "brand you ordered", "trending now".')]


class MemberSales(Model):
    """The same shape for every id, known or not: no answer tells whether someone is a member."""

    member_id: str
    items: list[RankedSale]


class RankedProduct(TypedDict):
    sku: str
    score: float
    reason: str
    part: Annotated[str, Field(description='"again" (the member\'s own items) or "new" (new for them).')]


class MemberProducts(Model):
    member_id: str
    sale_id: str
    items: list[RankedProduct]


# --- writes ------------------------------------------------------------------------------------------------
Timestamp = Annotated[int | str | None, Field(
    description="Epoch milliseconds or an ISO 8601 time (e.g. 2026-11-29T10:00:00Z); absent means now.")]
Channel = Literal["web", "app"]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str
    member_id: str
    channel: Channel = "web"
    ts: Timestamp = None


class BrowseIn(EventIn):
    """A product page view."""

    type: Literal["browse"]
    sale_id: str
    sku: str
    session_id: str | None = None


class CartIn(EventIn):
    """A product added to or removed from the cart."""

    type: Literal["cart"]
    sale_id: str
    sku: str
    action: Literal["add", "remove"]
    quantity: int
    unit_price: float
    session_id: str | None = None


class OrderLine(BaseModel):
    sale_id: str
    sku: str
    quantity: int
    unit_price: float


class OrderIn(EventIn):
    """A placed order; ``order_id`` defaults to ``event_id``."""

    type: Literal["order"]
    order_id: str | None = None
    currency: str | None = None
    lines: list[OrderLine] = Field(min_length=1)
    region: str | None = Field(None, description="The member's delivery region (warehouse), when known: stocking "
                               "plans are split by region from it.")


Event = Annotated[BrowseIn | CartIn | OrderIn, Field(discriminator="type")]
EventsIn = Event | list[Event]


class Refused(TypedDict):
    index: Annotated[int, Field(description="Position in the posted list (0 for a single object).")]
    event_id: NotRequired[str | None]
    problems: list[str]


class EventsAccepted(Model):
    accepted: int = Field(description="Events acknowledged by Kafka before this answer was sent.")
    refused: list[Refused]


class EventsRefused(Problem):
    """422: some events were refused; the others were stored (resending the whole request is safe)."""

    accepted: int
    refused: list[Refused]


class ForecastIn(BaseModel):
    """A buyer's expert forecast of a product's total demand in a sale, with an optional 80% range."""

    sale_id: str
    sku: str
    expected_units: float
    low: float | None = None
    high: float | None = None
    author: str | None = None


ForecastsIn = ForecastIn | list[ForecastIn]


class ForecastsAccepted(Model):
    accepted: int


# --- buyer desk --------------------------------------------------------------------------------------------
class SalePlan(Model):
    """The stocking plan the buyer desk would send now: units to position per sku (and warehouse), with reasons."""

    sale_id: str
    brand: str
    service_level: float
    quantity: int
    products: list[dict[str, Any]]


class Buyers(Model):
    buyers: list[dict[str, Any]]


class Scorecard(Model):
    """A buyer's record: past bias, 80% range coverage, the learned correction and why, recent sales."""

    buyer_id: str
    forecasts: int
    sales: int
    bias: float | None
    range_coverage: float | None
    learned_bias: float | None


# --- dashboard ---------------------------------------------------------------------------------------------
class Dashboard(Model):
    """Everything the dashboard page shows, in one poll."""

    generated_at: str
    stream_time: str | None
    totals: dict[str, Any]
    sales: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
