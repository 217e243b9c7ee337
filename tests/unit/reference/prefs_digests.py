"""Digests of what the preferences learn and serve on one seeded stream: the reference of the member-flush and
learning speed work (issue #13, ``wip/prefs2``).

``python -m tests.unit.reference.prefs_digests`` writes ``prefs_digests.json`` beside this file. It was run on the
code of ``main`` at b86809d, before that work; ``tests/unit/test_preferences_digests.py`` recomputes the digests with
the code of today and wants them equal: the same serialized member records (the bytes the flush writes to the
changelog), the same co-visitation, session neighbours and same-order co-purchase, the same learnt blends and the
same rankings, scores bit for bit. Unlike :mod:`.prefs_v1` the stream here also teaches the ranking blends (cart
adds and orders come with the candidates the member saw), so what is served is covered, not only what is counted.

Regenerate only when the learning changes on purpose (not for speed), and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from salepulse.streams.domain.preferences import PreferenceModel, ProductCandidates, SaleCandidates

PATH = Path(__file__).with_name("prefs_digests.json")
T0_MS = 1_700_000_000_000
N_SKUS, N_SALES = 400, 30


def stream(seed: int, n_events: int, n_members: int, n_skus: int = N_SKUS) -> list[dict[str, Any]]:
    """Seeded events of every shape the worker feeds the model (late events, pauses, carts, orders with lines);
    ``tests/unit/test_preferences_speed.py`` feeds the same streams to the frozen copy of the old learning path."""
    rng = random.Random(seed)
    t = T0_MS
    events = []
    for _ in range(n_events):
        t += rng.choice([rng.randrange(0, 120_000), rng.randrange(0, 10_000_000), -rng.randrange(0, 600_000)])
        b = rng.randrange(N_SALES)
        kind = rng.choices(["browse", "fav", "cart", "order"], [0.8, 0.05, 0.1, 0.05])[0]
        event: dict[str, Any] = {
            "member_id": f"m{int(rng.paretovariate(1.2)) % n_members}", "sku": f"sku{rng.randrange(n_skus)}",
            "kind": kind, "ts": t,
            "sale_id": f"sale{b}" if rng.random() > 0.05 else None,
            "brand": f"brand{b}" if rng.random() > 0.1 else None,
            "category": f"cat{b % 7}.{rng.randrange(3)}" if rng.random() > 0.1 else None,
            "price": rng.choice([None, 0.0, rng.uniform(1, 500)]),
            "quantity": None, "action": None,
        }
        if kind == "cart":
            event["action"] = rng.choice(["add", "add", "remove"])
            event["quantity"] = rng.choice([None, 1, 2, 5])
        if kind == "order" and rng.random() < 0.5:
            event["lines"] = [{"sku": f"sku{rng.randrange(n_skus)}", "sale_id": f"sale{b}", "quantity": q,
                               "unit_price": rng.uniform(1, 99), "brand": event["brand"]}
                              for q in rng.choices([1, 2, 3], k=rng.randrange(1, 4))]
        events.append(event)
    return events


def candidates(seed: int) -> tuple[ProductCandidates, SaleCandidates]:
    """The products and sales every member is shown (and chooses among)."""
    rng = random.Random(seed)
    products = ProductCandidates.build(
        [f"sku{i}" for i in range(N_SKUS)], [f"brand{i % N_SALES}" for i in range(N_SKUS)],
        [f"cat{i % 7}.{i % 3}" for i in range(N_SKUS)], [rng.uniform(1, 500) for _ in range(N_SKUS)],
        [rng.random() for _ in range(N_SKUS)], sale_id=[f"sale{i % N_SALES}" for i in range(N_SKUS)])
    sales = SaleCandidates.build([f"sale{i}" for i in range(N_SALES)], [f"brand{i}" for i in range(N_SALES)],
                                 [[f"cat{i % 7}.{j}" for j in range(3)] for i in range(N_SALES)],
                                 [rng.random() for _ in range(N_SALES)])
    return products, sales


def _sha(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _weights(row: dict[str, float]) -> bytes:
    """A mapping's keys in order with each float's exact bits."""
    return repr([(k, float(v).hex()) for k, v in row.items()]).encode()


def digests(seed: int, n_events: int = 6000, n_members: int = 60) -> dict[str, str]:
    """Learn the stream (flushing every member's record every 500 events, as the worker's timer would) and digest
    what was written and what is served."""
    events = stream(seed, n_events, n_members)
    products, sales = candidates(seed)
    model = PreferenceModel()
    states: dict[str, Any] = {}
    flushed: list[bytes] = []
    dirty: dict[str, None] = {}
    for i, event in enumerate(events, start=1):
        m = event["member_id"]
        # the worker's ChoiceCandidates: the shop's products and sales for a choice, nothing otherwise
        choice = event["kind"] == "order" or (event["kind"] == "cart" and event["action"] != "remove")
        states[m] = model.update(states.get(m), event, *((products, sales) if choice else (None, None)))
        dirty[m] = None
        if i % 500 == 0:
            flushed += [m.encode() + b"=" + states[m].to_bytes() for m in dirty]
            dirty.clear()
    ranker = model.ranker
    now = events[-1]["ts"]
    served = []
    for m in sorted(states):
        for rank, cands, k in (("rank_products", products, 50), ("rank_sales", sales, 10)):
            for r in getattr(ranker, rank)(states[m], cands, k, now):
                served.append(f"{m}|{rank}|{r.id}|{float(r.score).hex()}|{r.reason}|{r.part}".encode())
    covisit = ranker.covisit
    return {
        "flushed_records": _sha(flushed),
        "final_records": _sha([m.encode() + b"=" + states[m].to_bytes() for m in sorted(states)]),
        "json_records": _sha([states[m].to_json_bytes() for m in sorted(states)]),
        "covisitation": _sha([k.encode() + _weights(r) + float(covisit.totals[k]).hex().encode()
                              for k, r in covisit.rows.items()]),
        "sessions": _sha([repr(ranker.sessions.sessions).encode()]),
        "baskets": _sha([k.encode() + _weights(r) for k, r in ranker.baskets.pairs.rows.items()]),
        "learnt": _sha([repr(sorted(model.ranker_updates.items())).encode(), repr(_blends(ranker)).encode()]),
        "served": _sha(served),
    }


def _blends(ranker: Any) -> list[str]:
    """Every learnt blend's weights, exactly."""
    out = []
    for name, blend in sorted(vars(ranker).items()):
        if callable(getattr(blend, "unclipped", None)):
            out.append(name + repr([(k, float(v).hex()) for k, v in blend.unclipped().items()]))
    return out


SEEDS = (1, 2)


def main() -> None:
    PATH.write_text(json.dumps({str(seed): digests(seed) for seed in SEEDS}, indent=1) + "\n")
    print(PATH)


if __name__ == "__main__":
    main()
