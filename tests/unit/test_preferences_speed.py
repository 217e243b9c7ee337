"""The faster preferences learning (issue #13) learns exactly what the code before it learnt.

``tests.unit.reference.prefs_v1`` is a frozen copy of the learning path before the speed work; both are fed one
seeded signal stream (members that saturate every cap, co-visitation rows that get pruned, carts that are added to,
emptied and ordered, late events) and must end with the same member states, co-visitation, session neighbours and
rankings, bit for bit. Old changelog records (zlib JSON) must still load.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salepulse.streams.domain.preferences import (
    MemberState,
    PreferenceModel,
    ProductCandidates,
    Ranker,
    SaleCandidates,
    SessionKNN,
)
from salepulse.streams.domain.preferences.state import PACKED
from tests.unit.reference import prefs_v1 as v1
from tests.unit.reference.prefs_digests import stream as _stream


def _learn_both(events: list[dict[str, Any]], neighbours: int = 30,
                max_items: int = 500_000) -> tuple[PreferenceModel, dict, Any, dict]:
    new = PreferenceModel(ranker=Ranker(covisit=None, sessions=None))
    new.ranker.covisit.neighbours, new.ranker.covisit.max_items = neighbours, max_items
    old_covisit, old_sessions = v1.CoVisitation(neighbours, max_items), SessionKNN()
    new_states: dict[str, MemberState] = {}
    old_states: dict[str, v1.MemberState] = {}
    for event in events:
        m = event["member_id"]
        new_states[m] = new.update(new_states.get(m), event)
        old_states[m] = v1.update(None, old_covisit, old_sessions, old_states.get(m), event)
    return new, new_states, (old_covisit, old_sessions), old_states


def _close(a: float, b: float) -> bool:
    """Bit for bit: the faster code does the same float operations in the same order (lazy decay would not, and
    1-ulp differences flip which near-tied neighbours a pruned co-visitation row keeps)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_weights(new: dict[str, float], old: dict[str, float]) -> bool:
    return list(new) == list(old) and all(_close(new[k], old[k]) for k in old)


def _assert_same_member(new: MemberState, old: v1.MemberState) -> None:
    for name in ("items", "brands", "categories", "bands", "sales", "ordered_brands"):
        n, o = getattr(new, name), getattr(old, name)
        assert n.t == o.t, name
        assert _same_weights(n.weights, o.weights), (name, n.weights, o.weights)
    assert (new.n_events, new.last_t, new.session_start) == (old.n_events, old.last_t, old.session_start)
    assert new.cart == old.cart
    assert new.recent == old.recent
    assert new.recent_categories == old.recent_categories
    assert new.touched() == old.touched()


def _assert_same_covisit(new: Any, old: v1.CoVisitation) -> None:
    assert list(new.rows) == list(old.rows)  # the same rows, in the same least-recently-touched order
    for item, row in old.rows.items():
        assert _same_weights(new.rows[item], row), item
        assert _close(new.totals[item], old.totals[item]), item


@pytest.mark.parametrize("seed", [1, 2])
def test_learns_bit_for_bit_like_before(seed: int) -> None:
    events = _stream(seed, n_events=6000, n_members=60, n_skus=400)
    new, new_states, (old_covisit, old_sessions), old_states = _learn_both(events)
    assert max(len(s.items.weights) for s in old_states.values()) == 40  # the caps were reached
    assert max(len(r) for r in old_covisit.rows.values()) > 30  # rows were pruned
    assert sorted(new_states) == sorted(old_states)
    for m, old in old_states.items():
        _assert_same_member(new_states[m], old)
    _assert_same_covisit(new.ranker.covisit, old_covisit)
    assert new.ranker.sessions.sessions == old_sessions.sessions

    # and so the same rankings, scores included
    rng = random.Random(seed)
    products = ProductCandidates.build(
        [f"sku{i}" for i in range(400)], [f"brand{i % 30}" for i in range(400)],
        [f"cat{i % 7}.{i % 3}" for i in range(400)], [rng.uniform(1, 500) for _ in range(400)],
        [rng.random() for _ in range(400)])
    sales = SaleCandidates.build([f"sale{i}" for i in range(30)], [f"brand{i}" for i in range(30)],
                                 [[f"cat{i % 7}.{j}" for j in range(3)] for i in range(30)],
                                 [rng.random() for _ in range(30)])
    old_ranker = Ranker(covisit=old_covisit, sessions=old_sessions)
    # same-order co-purchase came after the frozen copy (which never learns it): both rank with the one learnt here
    old_ranker.baskets = new.ranker.baskets
    now = events[-1]["ts"]
    for m in sorted(old_states)[:25]:
        for rank, k in (("rank_products", 50), ("rank_sales", 10)):
            cands = products if rank == "rank_products" else sales
            got = getattr(new.ranker, rank)(new_states[m], cands, k, now)
            want = getattr(old_ranker, rank)(old_states[m], cands, k, now)
            assert [r.id for r in got] == [r.id for r in want], (m, rank)
            assert all(_close(g.score, w.score) for g, w in zip(got, want, strict=True)), (m, rank)
            assert [r.reason for r in got] == [r.reason for r in want]


def test_evicting_covisitation_rows_like_before() -> None:
    """A full co-visitation (``max_items``) evicts the least recently touched rows, as before."""
    events = _stream(3, n_events=3000, n_members=40, n_skus=300)
    new, _, (old_covisit, _), _ = _learn_both(events, neighbours=4, max_items=50)
    _assert_same_covisit(new.ranker.covisit, old_covisit)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_members=st.integers(1, 8), n_skus=st.integers(1, 60))
def test_small_streams_learn_like_before(seed: int, n_members: int, n_skus: int) -> None:
    events = _stream(seed, n_events=300, n_members=n_members, n_skus=n_skus)
    new, new_states, (old_covisit, old_sessions), old_states = _learn_both(events, neighbours=3, max_items=20)
    for m, old in old_states.items():
        _assert_same_member(new_states[m], old)
    _assert_same_covisit(new.ranker.covisit, old_covisit)
    assert new.ranker.sessions.sessions == old_sessions.sessions


def test_old_format_records_still_load() -> None:
    """A member written by the code before (zlib-compressed JSON) loads into the same state."""
    events = _stream(4, n_events=2000, n_members=20, n_skus=200)
    _, new_states, _, old_states = _learn_both(events)
    for m, old in old_states.items():
        loaded = MemberState.from_bytes(old.to_bytes())
        reread = v1.MemberState.from_bytes(old.to_bytes())
        _assert_same_member(loaded, reread)
        # and what the new code writes reads back the same as what the old code wrote
        again = MemberState.from_bytes(new_states[m].to_bytes())
        _assert_same_member(again, reread)


def test_packed_records_read_back_like_json_ones() -> None:
    """Every member is written packed, and reads back exactly as its zlib JSON record would."""
    events = _stream(6, n_events=3000, n_members=30, n_skus=300)
    _, new_states, _, _ = _learn_both(events)
    for state in new_states.values():
        data = state.to_bytes()
        assert data[:1] == PACKED
        _assert_same_member(MemberState.from_bytes(data), MemberState.from_bytes(state.to_json_bytes()))


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=1, max_size=12), quantity=st.integers(1, 2**70))
def test_strings_or_numbers_packing_cannot_hold_fall_back_to_json(text: str, quantity: int) -> None:
    state = MemberState(text)
    state.observe(sku=text, brand=text, category=text, sale_id=text, kind="cart", quantity=quantity, t=5.0)
    state.observe(sku="x", kind="browse", t=9.0)
    data = state.to_bytes()
    packable = "\x00" not in text and quantity < 2**63 and text == text.encode("utf-8", "replace").decode()
    assert (data[:1] == PACKED) == packable
    _assert_same_member(MemberState.from_bytes(data), MemberState.from_bytes(state.to_json_bytes()))
