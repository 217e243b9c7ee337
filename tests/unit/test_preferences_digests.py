"""The faster learning and member flush (issue #13, ``wip/prefs2``) write, learn and serve exactly what ``main``
did at b86809d: digests recomputed now against the ones recorded then by ``tests/unit/reference/prefs_digests.py``
(see its docstring for what each covers and when to regenerate)."""

from __future__ import annotations

import json

import pytest

from tests.unit.reference import prefs_digests

RECORDED = json.loads(prefs_digests.PATH.read_text())


@pytest.mark.parametrize("seed", prefs_digests.SEEDS)
def test_same_records_learning_and_rankings_as_recorded(seed: int) -> None:
    assert prefs_digests.digests(seed) == RECORDED[str(seed)]


def test_the_stream_teaches_the_blends_and_fills_the_caps() -> None:
    """The digests cover the paths that matter: blends taught, item caps reached, rows pruned, carts kept."""
    from salepulse.streams.domain.preferences import PreferenceModel

    events = prefs_digests.stream(1, 6000, 60)
    products, sales = prefs_digests.candidates(1)
    model, states = PreferenceModel(), {}
    for event in events:
        choice = event["kind"] == "order" or (event["kind"] == "cart" and event["action"] != "remove")
        m = event["member_id"]
        states[m] = model.update(states.get(m), event, *((products, sales) if choice else (None, None)))
    assert model.ranker_updates["products"] > 100 and model.ranker_updates["sales"] > 100
    assert max(len(s.items.weights) for s in states.values()) == model.config.item_cap
    assert max(len(r) for r in model.ranker.covisit.rows.values()) > model.ranker.covisit.neighbours
    assert any(s.cart for s in states.values())
    assert model.ranker.baskets.pairs.rows
