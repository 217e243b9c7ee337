"""Typed request and response bodies of the HTTP API (pydantic v2): ``/openapi.json`` is generated from these, and
every JSON answer is checked against its model. The request bodies are the models that validate the requests
(:mod:`salepulse.schemas.requests`, re-exported here): the collector refuses what they refuse, with their words.

Response models allow extra fields: a field added to a payload is documented when it is added here, and never
breaks an answer meanwhile. The items of long lists (products, sales, ranked items) are TypedDicts: checking them
needs no model instances, which made checking a 5,000-product sale about 4 times cheaper than with models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

# The request bodies are the models that validate them (re-exported here for the routers and /openapi.json)
from salepulse.schemas.requests import BrowseIn as BrowseIn
from salepulse.schemas.requests import CartIn as CartIn
from salepulse.schemas.requests import Event as Event
from salepulse.schemas.requests import EventsIn as EventsIn
from salepulse.schemas.requests import ForecastIn as ForecastIn
from salepulse.schemas.requests import ForecastsIn as ForecastsIn
from salepulse.schemas.requests import OrderIn as OrderIn
from salepulse.schemas.requests import OrderLine as OrderLine


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
    ranker_updates: dict[str, int] = Field(
        description="Cart adds and orders the ranking blends learnt from since the worker started, by task "
                    "(products, sales); over_budget: those skipped to keep teaching under a tenth of the "
                    "learner's time.")
    ranker_weights: dict[str, dict[str, float]] = Field(
        description="Learnt weight of each feature of the ranking blends (again, new, sale).")


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
# The request bodies are the models that validate them (salepulse.schemas.requests): what /openapi.json
# publishes is what POST /events and POST /forecasts check, field by field, with the same words in the 422.

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
