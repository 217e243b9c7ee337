"""One ranker, parameterised by named features: a River logistic regression per blend, scored with numpy.

A product ranking has two parts in one list: **again** (items the member touched, ordered by the ``again`` blend:
recency first) and **new for you** (everything else, ordered by the ``new`` blend: co-visitation, session
neighbours, category affinity and category trends, popularity). Sales have one blend. Each blend is a
:class:`Blend` over a tuple of feature NAMES; a feature is a function of a :class:`Context` returning one value
per candidate, and its human reason.

Learning is pairwise (BPR-like): the chosen row against sampled rows of the same part. "New for you" is learnt
twice, by a blend against uniform rows and by a challenger, and a prequential gate picks which one orders the
part. The challenger draws its negatives in proportion to popularity (``popular_negatives``, on by default):
against uniform rows the chosen item beats a random one on popularity too, so popularity crowds out the
member's own signals (Taobao: pop weight 9.3 from a prior of 1, discover hit@20 0.014 against 0.019 for the
``category_trend`` baseline); where popularity is the real reason (Online Retail baskets) the uniform blend keeps
winning and keeps the part. ``hard_negatives`` instead draws some of the challenger's negatives from the top of
its own current list (the items it would have shown instead); off by default, as it never won on the shared
data. The weights start at a prior
and move by River's own learning: each feature enters the regression multiplied by its prior weight and River
starts every weight at 1.0 (:class:`river.optim.initializers.Constant`), so the effective weight is
``prior * learnt`` without touching River's private state.

Recency may only ever help the "again" part: its effective weight is read as ``max(0, w)`` (a monotone feature),
and the "again" part is ordered by recency alone - the ``repeat`` baseline - until the learnt blend has ranked
the chosen items better prequentially (:class:`~salepulse.streams.domain.preferences.gate.PrequentialGate`). Learning
that inverts the re-engagement order (as it did on Taobao: recency weight -0.97 from a prior of +6) therefore
never reaches the member page.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import linear_model, optim

from salepulse.streams.domain.preferences.baskets import Baskets, f_basket
from salepulse.streams.domain.preferences.candidates import ProductCandidates, SaleCandidates
from salepulse.streams.domain.preferences.covisit import CoVisitation, SessionKNN
from salepulse.streams.domain.preferences.freshness import f_fresh
from salepulse.streams.domain.preferences.gate import PrequentialGate, reciprocal_rank
from salepulse.streams.domain.preferences.state import MemberState, hashes, lookup, sorted_table

HARD_POOL = 20
"""Hard negatives are drawn from the top this many rows of the current ranking (a page of results)."""
AGAIN_OFFSET = 1000.0
"""Added to every "again" score, so the member's own items lead the list (as on the member page)."""


@dataclass(frozen=True)
class Ranked:
    """One ranked candidate: its id, score, a short human reason and its part (``again`` or ``new``)."""

    id: str
    score: float
    reason: str
    part: str = "new"


@dataclass
class Context:
    """What features are computed from: the member (None when unknown), the candidates, the time, the globals."""

    state: MemberState | None
    cands: Any
    now: float | None
    covisit: CoVisitation
    sessions: SessionKNN
    cache: dict[str, np.ndarray]
    baskets: Baskets | None = None

    @property
    def warm(self) -> bool:
        return self.state is not None and not self.state.is_cold


def _pop_feature(pop: np.ndarray) -> np.ndarray:
    lp = np.log1p(np.maximum(pop, 0.0))
    top = lp.max() if lp.size else 0.0
    return lp / top if top > 0 else lp


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first (ties: lower position first)."""
    n = scores.size
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    return part[np.lexsort((part, -scores[part]))]


def _table_lookup(weights: Mapping[str, float], query: np.ndarray) -> np.ndarray:
    return lookup(*sorted_table(weights), query)


def _dict_feature(scores: Mapping[str, float], query: np.ndarray) -> np.ndarray:
    """Scores of ``query`` hashes from an item -> score dict, relative to the largest score."""
    if not scores:
        return np.zeros(query.shape)
    return _table_lookup(scores, query)


# --------------------------------------------------------------------------------------------- product features


def _zeros(ctx: Context) -> np.ndarray:
    return np.zeros(len(ctx.cands))


def f_touched(ctx: Context) -> np.ndarray:
    if not ctx.warm:
        return _zeros(ctx)
    return np.isin(ctx.cands.sku_h, hashes(ctx.state.touched())).astype(np.float64)


def f_recency(ctx: Context) -> np.ndarray:
    """1 / (1 + position) in the member's touched list, most recent first (0 when never touched)."""
    if not ctx.warm:
        return _zeros(ctx)
    touched = ctx.state.touched()
    return _dict_feature({s: 1.0 / (1 + i) for i, s in enumerate(touched)}, ctx.cands.sku_h)


def f_seen(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.items.weights, ctx.cands.sku_h) if ctx.warm else _zeros(ctx)


def f_cart(ctx: Context) -> np.ndarray:
    if not ctx.warm:
        return _zeros(ctx)
    cart = ctx.state.cart_items(ctx.now)
    return np.isin(ctx.cands.sku_h, hashes(cart)).astype(np.float64) if cart else _zeros(ctx)


def f_covisit(ctx: Context) -> np.ndarray:
    """Items co-visited with the member's strongest recent items, P(c | item) weighted by the item's weight."""
    if not ctx.warm:
        return _zeros(ctx)
    top = ctx.state.items.top(10)
    vmax = top[0][1] if top else 0.0
    if vmax <= 0:
        return _zeros(ctx)
    acc: dict[str, float] = {}
    norm = 0.0
    cv = ctx.covisit
    for item, v in top:
        if v <= 0:
            continue
        rel = v / vmax
        norm += rel
        row = cv.rows.get(item)
        if not row:
            continue
        f = rel / (cv.totals.get(item, 0.0) + 1.0)
        for other, c in row.items():
            acc[other] = acc.get(other, 0.0) + f * c
    if not acc:
        return _zeros(ctx)
    h = hashes(acc)
    v = np.fromiter(acc.values(), dtype=np.float64, count=len(acc)) / norm
    order = np.argsort(h)
    return lookup(h[order], v[order], ctx.cands.sku_h)


def f_session(ctx: Context) -> np.ndarray:
    """V-SKNN score of the member's last items, relative to the best-scored item."""
    if not ctx.warm:
        return _zeros(ctx)
    return _dict_feature(ctx.sessions.scores(ctx.state.session_items()), ctx.cands.sku_h)


def f_category(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.categories.weights, ctx.cands.category_h) if ctx.warm else _zeros(ctx)


def f_pop(ctx: Context) -> np.ndarray:
    got = ctx.cache.get("pop")
    if got is None:
        got = ctx.cache["pop"] = _pop_feature(ctx.cands.popularity)
    return got


def f_category_recent(ctx: Context) -> np.ndarray:
    """1 / (1 + position) of the candidate's category among the member's last categories (0 when absent)."""
    if not ctx.warm or not ctx.state.recent_categories:
        return _zeros(ctx)
    got = ctx.cache.get("category_recent")
    if got is None:
        cats = {c: 1.0 / (1 + i) for i, c in enumerate(ctx.state.recent_categories)}
        got = ctx.cache["category_recent"] = _dict_feature(cats, ctx.cands.category_h)
    return got


def f_category_trend(ctx: Context) -> np.ndarray:
    """Trending within the member's recent categories: category recency x (1 + live popularity), in [0, 1]."""
    return f_category_recent(ctx) * (1.0 + f_pop(ctx)) / 2.0 if ctx.warm else _zeros(ctx)


def f_brand(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.brands.weights, ctx.cands.brand_h) if ctx.warm else _zeros(ctx)


def f_brand_ordered(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.ordered_brands.weights, ctx.cands.brand_h) if ctx.warm else _zeros(ctx)


def f_band(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.bands.weights, ctx.cands.band_h) if ctx.warm else _zeros(ctx)


# --------------------------------------------------------------------------------------------- sale features


def f_sale_seen(ctx: Context) -> np.ndarray:
    return _table_lookup(ctx.state.sales.weights, ctx.cands.sale_h) if ctx.warm else _zeros(ctx)


def f_sale_cart(ctx: Context) -> np.ndarray:
    if not ctx.warm:
        return _zeros(ctx)
    cart = ctx.state.cart_items(ctx.now)
    if not cart:
        return _zeros(ctx)
    return np.isin(ctx.cands.sale_h, hashes(e[1] for e in cart.values())).astype(np.float64)


def f_sale_category(ctx: Context) -> np.ndarray:
    """The member's affinity to the best-liked category of each sale."""
    out = _zeros(ctx)
    c = ctx.cands
    if not ctx.warm or not c.cat_h.size or not ctx.state.categories.weights:
        return out
    flat = _table_lookup(ctx.state.categories.weights, c.cat_h)
    ptr = c.cat_ptr
    nonempty = ptr[1:] > ptr[:-1]
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(flat, ptr[:-1][nonempty])
    return out


@dataclass(frozen=True)
class Feature:
    """A named feature: how to compute it and the reason shown when it is an item's strongest contribution."""

    name: str
    reason: str
    fn: Callable[[Context], np.ndarray]


TRENDING = "trending now"
PRODUCT_FEATURE_SET: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("recency", "you viewed it recently", f_recency),
        Feature("seen", "you viewed it recently", f_seen),
        Feature("cart", "in your cart", f_cart),
        Feature("covisit", "like items you viewed", f_covisit),
        Feature("basket", "bought together with your items", f_basket),
        Feature("session", "viewed by shoppers like you", f_session),
        Feature("category", "category you browse", f_category),
        Feature("category_recent", "category you browse", f_category_recent),
        Feature("category_trend", "trending in your categories", f_category_trend),
        Feature("brand", "brand you like", f_brand),
        Feature("brand_ordered", "brand you ordered", f_brand_ordered),
        Feature("band", "in your price range", f_band),
        Feature("pop", TRENDING, f_pop),
        Feature("fresh", "new in the shop", f_fresh),
    )
}
SALE_FEATURE_SET: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("sale_seen", "sale you visited", f_sale_seen),
        Feature("cart", "in your cart", f_sale_cart),
        Feature("brand", "brand you like", f_brand),
        Feature("brand_ordered", "brand you ordered", f_brand_ordered),
        Feature("category", "category you browse", f_sale_category),
        Feature("pop", TRENDING, f_pop),
    )
}
AGAIN_PRIOR = {"recency": 6.0, "seen": 1.0, "cart": 1.0, "pop": 0.2}
MONOTONE = ("recency",)
"""Features that can only raise a score: their effective weight is clipped at 0 (more recent is never worse)."""
NEW_PRIOR = {"covisit": 2.0, "basket": 2.0, "session": 2.0, "category": 0.5, "category_recent": 0.5,
             "category_trend": 1.0, "brand": 0.5, "brand_ordered": 0.3, "band": 0.2, "pop": 1.0, "fresh": 0.5}
SALE_PRIOR = {"sale_seen": 2.0, "cart": 2.0, "brand": 2.0, "brand_ordered": 1.0, "category": 1.0, "pop": 1.0}
PRODUCT_FEATURES: tuple[str, ...] = tuple(PRODUCT_FEATURE_SET)
SALE_FEATURES: tuple[str, ...] = tuple(SALE_FEATURE_SET)


class Blend:
    """A weighted sum of named features whose weights a River logistic regression learns pairwise.

    >>> b = Blend({"x": 2.0, "y": 1.0})
    >>> b.weights()
    {'x': 2.0, 'y': 1.0}
    >>> b.learn(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 0.0]), [1], random.Random(0), 4)
    >>> w = b.weights(); w["y"] > 1.0 and w["x"] < 2.0
    True
    """

    def __init__(self, prior: Mapping[str, float], lr: float = 0.05, monotone: Sequence[str] = ()) -> None:
        self.names: tuple[str, ...] = tuple(prior)
        self.prior = np.array([prior[n] for n in self.names], dtype=np.float64)
        self._floor = np.array([0.0 if n in monotone else -np.inf for n in self.names])
        self.lr = lr
        self.model = self._new_model()

    def _new_model(self) -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(self.lr), intercept_lr=0.0, initializer=optim.initializers.Constant(1.0)
        )

    def vector(self) -> np.ndarray:
        """Effective weights in :attr:`names` order."""
        w = self.model.weights
        # The projection is applied where the weights are used, not written back: River's state stays its own.
        return np.maximum(self.prior * np.array([w.get(n, 1.0) for n in self.names]), self._floor)

    def weights(self) -> dict[str, float]:
        """Effective weight of each feature."""
        return dict(zip(self.names, self.vector().tolist(), strict=True))

    def unclipped(self) -> dict[str, float]:
        """Learnt weight of each feature before the monotone projection: what a checkpoint must keep, as a
        weight projected to 0 would restart as a prior of 0, which scales its feature away for good."""
        w = self.model.weights
        return {n: float(p * w.get(n, 1.0)) for n, p in zip(self.names, self.prior, strict=True)}

    def load(self, weights: Mapping[str, float]) -> None:
        """Restart learning from ``weights`` (e.g. a checkpoint of :meth:`weights`)."""
        self.prior = np.array([float(weights.get(n, p)) for n, p in zip(self.names, self.prior, strict=True)])
        self.model = self._new_model()

    def learn(self, x: np.ndarray, scores: np.ndarray, positives: Sequence[int], rng: random.Random,
              n_negatives: int = 8, hard: int = 0, sampling: np.ndarray | None = None) -> None:
        """Rows ``positives`` of ``x`` (columns = :attr:`names`) were chosen; sampled others were not.

        ``hard`` of the ``n_negatives`` are drawn from the rows ``scores`` ranked highest (the list the member
        was shown, where the ranking's real mistakes are), the rest uniformly, or in proportion to ``sampling``
        (one non-negative weight per row) when given. Uniform negatives alone teach
        "popular beats random", which every list already knows: popularity then crowds out the member's own
        signals at the top of the list.
        """
        n = x.shape[0]
        pos = set(positives)
        if not pos or n <= len(pos):
            return
        hard = min(hard, n_negatives) if scores.size == n else 0
        negs = [i for i in _draw(n, n_negatives - hard, rng, sampling) if i not in pos]
        if hard:
            k = min(n, HARD_POOL + len(pos))
            # the k-th best score by partition, not a sorted top-k: which of the page is drawn needs no order
            top = np.flatnonzero(scores >= np.partition(scores, n - k)[n - k]).tolist()
            pool = [i for i in top if i not in pos]
            negs += rng.sample(pool, min(hard, len(pool)))
        names = self.names
        for p in pos:
            for q in negs:
                d = (x[p] - x[q]) * self.prior
                if not d.any():
                    continue
                self.model.learn_one(dict(zip(names, d.tolist(), strict=True)), True)
                self.model.learn_one(dict(zip(names, (-d).tolist(), strict=True)), False)


def _draw(n: int, k: int, rng: random.Random, sampling: np.ndarray | None = None) -> list[int]:
    """``k`` rows of ``n`` drawn with replacement: uniformly, or in proportion to ``sampling`` (uniformly when it
    sums to 0).

    >>> _draw(3, 4, random.Random(0), np.array([0.0, 0.0, 1.0]))
    [2, 2, 2, 2]
    >>> len(_draw(3, 4, random.Random(0)))
    4
    """
    if sampling is None or not sampling.size or not float(sampling.sum()) > 0.0:
        return [rng.randrange(n) for _ in range(k)]
    cum = np.cumsum(sampling)
    # one searchsorted for the k draws: the cumulative sums are built once per choice, not once per draw
    at = np.searchsorted(cum, np.array([rng.random() for _ in range(k)]) * cum[-1], side="right")
    return np.minimum(at, n - 1).tolist()


def _matrix(features: Mapping[str, Feature], names: Sequence[str], ctx: Context) -> dict[str, np.ndarray]:
    return {n: features[n].fn(ctx) for n in names}


def _stack(cols: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    return np.column_stack([cols[n] for n in names]) if names else np.zeros((0, 0))


def _reasons(features: Mapping[str, Feature], x: np.ndarray, w: np.ndarray, names: Sequence[str],
             rows: np.ndarray) -> list[str]:
    if not rows.size:
        return []
    contrib = x[rows] * w
    best = contrib.argmax(axis=1)
    if "cart" in names:  # being in the cart is the reason a member understands first, whatever its weight
        in_cart = x[rows, names.index("cart")] > 0
        best = np.where(in_cart, names.index("cart"), best)
        contrib[in_cart, names.index("cart")] = 1.0
    return [features[names[b]].reason if contrib[i, b] > 0 else TRENDING for i, b in enumerate(best.tolist())]


class Ranker:
    """Scores candidates for a member (see the module docstring).

    >>> r = Ranker()
    >>> s = MemberState("m")
    >>> s.observe(sku="a", brand="nike", category="shoes", price=50.0, kind="browse", t=0.0)
    >>> c = ProductCandidates.build(["a", "b", "c"], ["nike", "x", "y"], ["shoes", "hats", "hats"],
    ...                             [50.0, 20.0, 5.0], [0.0, 10.0, 1.0])
    >>> [(x.id, x.reason, x.part) for x in r.rank_products(s, c, 2)]
    [('a', 'you viewed it recently', 'again'), ('b', 'trending now', 'new')]
    """

    def __init__(self, covisit: CoVisitation | None = None, sessions: SessionKNN | None = None,
                 lr: float = 0.05, n_negatives: int = 8, seed: int = 42, hard_negatives: int = 0,
                 popular_negatives: bool = True) -> None:
        self.covisit = covisit if covisit is not None else CoVisitation()
        self.sessions = sessions if sessions is not None else SessionKNN()
        self.baskets = Baskets()  # same-order co-purchase, taught by multi-line orders only (baskets.py)
        self.n_negatives = n_negatives
        self.hard_negatives = hard_negatives
        self.popular_negatives = popular_negatives
        self._rng = random.Random(seed)
        self._rng_hard = random.Random(seed + 1)  # its own draws: the uniform blend learns as it did alone
        self.again = Blend(AGAIN_PRIOR, lr, MONOTONE)
        self.again_gate = PrequentialGate()
        self._recency_only = np.array([1.0 if n == "recency" else 0.0 for n in self.again.names])
        self.new = Blend(NEW_PRIOR, lr)
        # The challenger (``new_hard``, named before popular negatives existed: checkpoints keep the key) learns the
        # same features against popular or hard negatives and a prequential gate picks which blend orders "new for
        # you". Hard negatives are off by default: on the shared data the hard-negative blend lost
        # prequentially everywhere (Online Retail baskets: the top of the list holds items bought next time, and
        # it learns to push them away; alone it took discover hit@20 from 0.489 to 0.354) and doubled the cost.
        self.new_hard = Blend(NEW_PRIOR, lr)
        self.new_gate = PrequentialGate()
        self.sale = Blend(SALE_PRIOR, lr)

    def _ctx(self, state: MemberState | None, cands: Any, now: float | None) -> Context:
        return Context(state, cands, now, self.covisit, self.sessions, {}, self.baskets)

    # -- products
    def product_columns(self, state: MemberState | None, cands: ProductCandidates,
                        now: float | None = None) -> dict[str, np.ndarray]:
        """Every product feature by name, plus ``touched`` (1.0 for the member's own items)."""
        ctx = self._ctx(state, cands, now)
        names = dict.fromkeys((*self.again.names, *self.new.names))
        cols = _matrix(PRODUCT_FEATURE_SET, list(names), ctx)
        cols["touched"] = f_touched(ctx)
        return cols

    def product_features(self, state: MemberState | None, cands: ProductCandidates,
                         now: float | None = None) -> np.ndarray:
        """Matrix of :data:`PRODUCT_FEATURES` (columns in that order) for all candidates."""
        cols = self.product_columns(state, cands, now)
        return _stack(cols, PRODUCT_FEATURES)

    def new_blend(self) -> Blend:
        """The blend that orders "new for you": the challenger (popular or hard negatives) while it wins
        prequentially, else the one learnt against uniform negatives."""
        return self.new_hard if self.new_gate.use_learnt else self.new

    def again_vector(self) -> np.ndarray:
        """Weights that order the "again" part: the learnt blend while it wins prequentially, else recency alone."""
        return self.again.vector() if self.again_gate.use_learnt else self._recency_only

    def score_columns(self, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """Scores from feature columns: again items ``AGAIN_OFFSET + again order``, the others the new blend."""
        again = _stack(cols, self.again.names) @ self.again_vector()
        new = _stack(cols, self.new.names) @ self.new_blend().vector()
        return np.where(cols["touched"] > 0, AGAIN_OFFSET + again, new)

    def score_products(self, state: MemberState | None, cands: ProductCandidates,
                       now: float | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(scores, feature columns) of all candidates."""
        cols = self.product_columns(state, cands, now)
        return self.score_columns(cols), cols

    def rank_products(self, state: MemberState | None, cands: ProductCandidates, k: int,
                      now_ms: float | None = None) -> list[Ranked]:
        """Top ``k`` in-stock products, best first: the member's own items ("again") then "new for you"."""
        cands = cands.available()
        now = None if now_ms is None else now_ms / 1000.0
        scores, cols = self.score_products(state, cands, now)
        top = _topk(scores, k)
        touched = cols["touched"][top] > 0
        out = []
        for part, blend, w, mask in (("again", self.again, self.again_vector(), touched),
                                     ("new", self.new_blend(), self.new_blend().vector(), ~touched)):
            rows = top[mask]
            reasons = _reasons(PRODUCT_FEATURE_SET, _stack(cols, blend.names), w, blend.names, rows)
            out += [(int(i), r, part) for i, r in zip(rows.tolist(), reasons, strict=True)]
        out.sort(key=lambda e: (-scores[e[0]], e[0]))
        return [Ranked(cands.sku[i], float(scores[i]), r, part) for i, r, part in out]

    def learn_products(self, cols: Mapping[str, np.ndarray], positives: Sequence[int]) -> None:
        """Teach the blends: rows ``positives`` were chosen; each part learns against its own other rows."""
        touched = cols["touched"] > 0
        for part, blend in ((True, self.again), (False, self.new)):
            rows = np.flatnonzero(touched == part)
            chosen = [int(np.searchsorted(rows, p)) for p in positives if touched[p] == part]
            if chosen and rows.size > len(chosen):
                x = _stack(cols, blend.names)[rows]
                if part:  # score both "again" orders on this event before the blend learns it
                    self.again_gate.update(reciprocal_rank(x @ blend.vector(), chosen),
                                           reciprocal_rank(x @ self._recency_only, chosen))
                    blend.learn(x, np.empty(0), chosen, self._rng, self.n_negatives)
                elif not (self.hard_negatives or self.popular_negatives):
                    blend.learn(x, np.empty(0), chosen, self._rng, self.n_negatives)
                else:  # both "new" blends are scored on this event before either learns it
                    uniform, hard = x @ blend.vector(), x @ self.new_hard.vector()
                    self.new_gate.update(reciprocal_rank(hard, chosen), reciprocal_rank(uniform, chosen))
                    blend.learn(x, uniform, chosen, self._rng, self.n_negatives)
                    sampling = cols["pop"][rows] if self.popular_negatives else None
                    self.new_hard.learn(x, hard, chosen, self._rng_hard, self.n_negatives, self.hard_negatives,
                                        sampling=sampling)

    # -- sales
    def sale_features(self, state: MemberState | None, cands: SaleCandidates,
                      now: float | None = None) -> np.ndarray:
        """Matrix of :data:`SALE_FEATURES` (columns in that order)."""
        return _stack(_matrix(SALE_FEATURE_SET, self.sale.names, self._ctx(state, cands, now)), self.sale.names)

    def score_sales(self, state: MemberState | None, cands: SaleCandidates,
                    now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, features) of all candidate sales - one matrix-vector product."""
        x = self.sale_features(state, cands, now)
        return x @ self.sale.vector(), x

    def rank_sales(self, state: MemberState | None, cands: SaleCandidates, k: int,
                   now_ms: float | None = None) -> list[Ranked]:
        """Top ``k`` sales open at ``now_ms`` (epoch ms; no filter when None), best first."""
        cands = cands.open_at(now_ms)
        now = None if now_ms is None else now_ms / 1000.0
        scores, x = self.score_sales(state, cands, now)
        top = _topk(scores, k)
        reasons = _reasons(SALE_FEATURE_SET, x, self.sale.vector(), self.sale.names, top)
        return [Ranked(cands.sale_id[i], float(scores[i]), r) for i, r in zip(top.tolist(), reasons, strict=True)]

    def learn_sales(self, x: np.ndarray, scores: np.ndarray, positives: Sequence[int]) -> None:
        """Teach the sale blend."""
        self.sale.learn(x, scores, positives, self._rng, self.n_negatives)

    # -- weights
    @property
    def product_weights(self) -> dict[str, float]:
        """Weights that score products now, ``again.<name>`` (the gated order) and ``new.<name>``."""
        again = dict(zip(self.again.names, self.again_vector().tolist(), strict=True))
        return {**{f"again.{k}": v for k, v in again.items()},
                **{f"new.{k}": v for k, v in self.new_blend().weights().items()}}

    @property
    def sale_weights(self) -> dict[str, float]:
        """Current blend weights of the sale task."""
        return self.sale.weights()

    def to_dict(self) -> dict:
        """Blend weights and the again gate (to checkpoint the ranker; co-visitation and sessions are kept apart)."""
        return {"again": self.again.weights(), "new": self.new.weights(), "new_hard": self.new_hard.weights(),
                "sale": self.sale.weights(), "again_gate": self.again_gate.to_dict(),
                "new_gate": self.new_gate.to_dict(),
                "unclipped": {name: getattr(self, name).unclipped() for name in ("again", "new", "new_hard", "sale")}}

    def load_weights(self, d: Mapping[str, Mapping[str, float]]) -> None:
        """Restore weights from :meth:`to_dict` (the unclipped ones where the checkpoint has them)."""
        unclipped = d.get("unclipped", {})
        for name in ("again", "new", "new_hard", "sale"):
            if name in unclipped or name in d:
                getattr(self, name).load(unclipped.get(name, d.get(name)))
        if "again_gate" in d:  # checkpoints written before the gate existed start on recency, as a new ranker
            self.again_gate = PrequentialGate.from_dict(d["again_gate"])
        if "new_gate" in d:
            self.new_gate = PrequentialGate.from_dict(d["new_gate"])
