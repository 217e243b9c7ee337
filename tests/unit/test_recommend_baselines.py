"""Each baseline of ``evaluate recommend`` on a tiny hand-made log whose answer is known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from salepulse.consumers.tools.evaluate_recommend import Evaluation, Scores, run
from salepulse.consumers.tools.recommend_baselines import (
    History,
    ItemKNN,
    Items,
    SessionKNNBaseline,
    category_trend,
    rank_of,
    repeat,
)

GAP = 1800.0
# (t, member, item, category): three shoppers; "b" and "c" go together, "z" is hot in the last minutes
LOG = [
    (0, "u1", "a", "shoes"), (10, "u1", "b", "shoes"), (20, "u1", "c", "hats"),
    (30, "u2", "b", "shoes"), (40, "u2", "c", "hats"),
    (50, "u3", "a", "shoes"),
    (5000, "u4", "z", "hats"), (5001, "u5", "z", "hats"), (5002, "u6", "z", "hats"), (5003, "u6", "d", "shoes"),
]


@pytest.fixture
def world() -> tuple[Items, dict[str, History], ItemKNN, SessionKNNBaseline]:
    items, hist, knn, sknn = Items(window=3600.0), {}, ItemKNN(), SessionKNNBaseline()
    for t, member, key, cat in LOG:
        i = items.index(key, cat)
        items.seen(i, float(t))
        h = hist.setdefault(member, History())
        knn.observe(h, i)
        h.touch(i, int(items.cat[i]), float(t), GAP)
        sknn.observe(member, h, i)
    items.expire(5003.0)
    return items, hist, knn, sknn


def _best(scores: np.ndarray, items: Items) -> str:
    cands = np.arange(len(items))
    tiebreak = items.count[cands]
    order = sorted(cands.tolist(), key=lambda p: rank_of(scores, tiebreak, [p])[0])
    return items.keys[order[0]]


def test_repeat_puts_the_last_touched_first(world) -> None:
    items, hist, _, _ = world
    scores = repeat(hist["u1"], np.arange(len(items)))
    assert [items.keys[i] for i in np.argsort(-scores)[:3]] == ["c", "b", "a"]
    assert repeat(None, np.arange(len(items))).tolist() == [0.0] * len(items)


def test_popular_and_trending(world) -> None:
    items, _, _, _ = world
    assert _best(items.count[: len(items)].copy(), items) == "z"  # 3 events, the most of all
    # the window is one hour: only the events at t >= 5003 - 3600 still trend
    assert {items.keys[i]: items.trend[i] for i in range(len(items))} == {
        "a": 0.0, "b": 0.0, "c": 0.0, "z": 3.0, "d": 1.0}


def test_item_knn_recommends_what_co_occurs(world) -> None:
    items, hist, knn, _ = world
    # u3 touched "a"; "a" co-occurred with "b" and "c" (u1), never with "z" or "d"
    scores = knn.scores(hist["u3"], np.arange(len(items)))
    got = {items.keys[i]: s for i, s in enumerate(scores)}
    assert got["b"] > 0 and got["c"] > 0 and got["z"] == got["d"] == 0
    assert got["b"] == pytest.approx(1 / np.sqrt(2) / np.sqrt(2))  # n(a) = 2, n(b) = 2, one shared member


def test_session_knn_follows_neighbour_sessions(world) -> None:
    items, hist, _, sknn = world
    h = History()
    h.touch(items.ids["b"], 0, 6000.0, GAP)  # a new shopper who looked at "b"
    scores = sknn.scores(h, np.arange(len(items)))
    got = {items.keys[i]: s for i, s in enumerate(scores)}
    # the sessions holding "b" are u1's (a, b, c) and u2's (b, c): "c" is in both, "a" in one
    assert got["c"] == 2.0 and got["a"] == 1.0 and got["z"] == 0.0


def test_category_trend_ranks_trending_items_of_the_members_categories(world) -> None:
    items, hist, _, _ = world
    # u2's last category is "hats": "z" (3 recent events, hats) leads; "d" (shoes, 1 event) is the 2nd category
    scores = category_trend(hist["u2"], items, np.arange(len(items)))
    assert _best(scores, items) == "z"
    got = {items.keys[i]: s for i, s in enumerate(scores)}
    assert got["z"] == pytest.approx(1 + np.log1p(3)) and got["d"] == pytest.approx(0.5 * (1 + np.log1p(1)))


def test_rank_of_breaks_ties_by_popularity_then_position() -> None:
    assert rank_of(np.zeros(3), np.array([1.0, 2.0, 1.0]), [0, 1, 2]) == [2, 1, 3]


def test_scores_metrics() -> None:
    s = Scores(("x",))
    s.add({"x": [2]}, 1)
    s.add({"x": [1, 3]}, 2)
    r = s.result()
    assert r["n"] == 2 and r["x"]["hit@1"] == 0.5 and r["x"]["hit@5"] == 1.0
    assert r["x"]["mrr@20"] == pytest.approx((0.5 + 1.0) / 2)


REES = """event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 00:00:00 UTC,view,1,10,,acme,9.50,100,s1
2019-10-01 00:00:10 UTC,view,2,10,,acme,9.50,100,s1
2019-10-01 00:00:20 UTC,view,3,20,,other,9.50,200,s2
2019-10-01 00:00:30 UTC,cart,2,10,,acme,9.50,100,s1
2019-10-01 00:00:40 UTC,remove_from_cart,2,10,,acme,9.50,100,s1
2019-10-01 00:00:50 UTC,purchase,2,10,,acme,9.50,100,s1
2019-10-01 00:01:00 UTC,view,1,10,,acme,9.50,200,s2
"""


def test_evaluation_on_a_tiny_log(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(REES)
    res = run("rees46", path, tmp_path / "out.json", progress=False)
    tasks = res["tasks"]
    # two positives (the cart add and the purchase of "2"; the removal is not one), both re-engagements of the
    # member's last item: repeat and the model rank it first
    assert tasks["product"]["n"] == tasks["reengage"]["n"] == 2
    assert tasks["reengage"]["repeat"]["hit@1"] == tasks["reengage"]["model"]["hit@1"] == 1.0
    # novel views of known members: 100 views "2" after "1", 200 views "1" after "3"
    assert tasks["discover"]["n"] == 2
    assert set(tasks["discover"]) == {"n", "model", "repeat", "popular", "trending", "item_knn", "session_knn",
                                      "category_trend"}
    assert (tmp_path / "out.json").is_file()
    assert Evaluation("online-retail").horizon == 30 * 86400.0
