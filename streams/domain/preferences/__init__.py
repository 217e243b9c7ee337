"""Member preferences and personalised ranking of open sales and products (pure logic, no Kafka/Faust).

One concept per module:

* :mod:`~salepulse.streams.domain.preferences.state` - :class:`DecayedCounter`, :class:`PreferenceConfig` and
  :class:`MemberState` (decayed affinities, cart, recently touched items; compact bytes for the changelog table).
* :mod:`~salepulse.streams.domain.preferences.covisit` - global models: :class:`CoVisitation` (item co-occurrence),
  :class:`PopularityTracker` (decayed counts), :class:`SessionKNN` (session neighbours, V-SKNN).
* :mod:`~salepulse.streams.domain.preferences.candidates` - :class:`ProductCandidates` / :class:`SaleCandidates` arrays.
* :mod:`~salepulse.streams.domain.preferences.ranker` - ONE :class:`Ranker` of :class:`Blend` s over named features
  ("again" and "new for you" for products, one blend for sales), learnt online by River.
* :mod:`~salepulse.streams.domain.preferences.model` - :class:`PreferenceModel`, the glue the live agent and the
  offline evaluation call: ``update`` a member from an event dict, ``rank_sales`` / ``rank_products``.
"""

from salepulse.streams.domain.preferences.candidates import (
    ProductCandidates,
    SaleCandidates,
    in_stock_mask,
    open_sales_mask,
)
from salepulse.streams.domain.preferences.covisit import CoVisitation, PopularityTracker, SessionKNN
from salepulse.streams.domain.preferences.model import PreferenceModel, rank_products, rank_sales
from salepulse.streams.domain.preferences.ranker import (
    AGAIN_OFFSET,
    PRODUCT_FEATURES,
    SALE_FEATURES,
    Blend,
    Ranked,
    Ranker,
)
from salepulse.streams.domain.preferences.state import (
    KIND_WEIGHTS,
    DecayedCounter,
    MemberState,
    PreferenceConfig,
    event_weight,
    key_hash,
    price_band,
    state_size_bytes,
    to_seconds,
)

__all__ = [
    "AGAIN_OFFSET",
    "KIND_WEIGHTS",
    "PRODUCT_FEATURES",
    "SALE_FEATURES",
    "Blend",
    "CoVisitation",
    "DecayedCounter",
    "MemberState",
    "PopularityTracker",
    "PreferenceConfig",
    "PreferenceModel",
    "ProductCandidates",
    "Ranked",
    "Ranker",
    "SaleCandidates",
    "SessionKNN",
    "event_weight",
    "in_stock_mask",
    "key_hash",
    "open_sales_mask",
    "price_band",
    "rank_products",
    "rank_sales",
    "state_size_bytes",
    "to_seconds",
]
