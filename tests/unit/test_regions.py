"""Delivery regions end to end in pure logic: old contracts still decode, facts and outcomes carry regions, the
desk learns shares and every plan line's split adds up; and the censored (Tobit) fit behind sold-out imputation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from salepulse.schemas.check import SAMPLES
from salepulse.schemas.codec import SCHEMA_DIR, Codec
from salepulse.schemas.json_input import InputError, parse_event
from salepulse.streams.domain.buyer_desk import BuyerDesk, sale_outcomes
from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.presale import Outcome, tobit_fit
from salepulse.streams.domain.stocking import RegionShares
from salepulse.streams.domain.velocity import SaleState, extract_facts
from salepulse.streams.io.ingest import facts_of, facts_record

ADDED = {"OrderEvent": ("region", None), "VelocityFacts": ("regions", []), "ForecastOutcome": ("regions", [])}


def _old_codec(tmp_path: Path, name: str, registry_url: str | None = None) -> Codec:
    """A producer still on the first contract of ``name`` (before regions)."""
    (tmp_path / f"{name}.avsc").write_text((SCHEMA_DIR / "history" / f"{name}.v1.avsc").read_text())
    return Codec(registry_url, schema_dir=tmp_path)


@pytest.mark.parametrize("name", sorted(ADDED))
def test_records_written_before_regions_still_decode_single_object(tmp_path: Path, name: str) -> None:
    field, default = ADDED[name]
    old_record = {k: v for k, v in SAMPLES[name].items() if k != field}
    data = _old_codec(tmp_path, name).encode(name, old_record)
    current = Codec()
    assert data[2:10] != current.types[name].fingerprint
    decoded_name, record = current.decode(data)
    assert (decoded_name, record[field]) == (name, default)


@pytest.mark.parametrize("name", sorted(ADDED))
def test_records_written_before_regions_still_decode_through_the_registry(tmp_path: Path, name: str) -> None:
    field, default = ADDED[name]
    url = f"mock://salepulse-old-{name.lower()}"
    old = _old_codec(tmp_path, name, url)
    data = old.encode(name, {k: v for k, v in SAMPLES[name].items() if k != field})
    current = Codec(url)
    current.__dict__["_registry"] = old._registry  # a mock registry lives in its client: share it like a server
    assert current.decode(data)[1][field] == default
    assert current.decode(current.encode(name, SAMPLES[name]))[1][field] == SAMPLES[name][field]


def _order(region: Any = None) -> dict[str, Any]:
    body = {"type": "order", "event_id": "o1", "member_id": "m1",
            "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 3, "unit_price": 5.0},
                      {"sale_id": "s1", "sku": "k2", "quantity": 1, "unit_price": 5.0}]}
    return body if region is None else {**body, "region": region}


def test_the_collector_takes_an_optional_region_and_refuses_a_bad_one() -> None:
    assert parse_event(_order("north"), window=False)[1]["region"] == "north"
    assert parse_event(_order(), window=False)[1]["region"] is None
    for bad in (5, "x" * 201, "no\x00rth"):
        with pytest.raises(InputError, match="region"):
            parse_event(_order(bad), window=False)


def test_region_travels_from_order_to_facts_to_totals() -> None:
    _, order = parse_event(_order("north"), window=False)
    facts = extract_facts("OrderEvent", order)
    items = [(f, "events.order:0", 7) for f in facts]
    back = facts_of(Codec().decode(Codec().encode("VelocityFacts", facts_record("s1", items)), timestamps="ms")[1])
    assert [f.region for f, _, _ in back] == ["north", "north"]
    state = SaleState("s1")
    for f, source, offset in back:
        state.apply(f, source, offset)
    assert state.skus["k1"].regions == {"north": 3}
    # the state of an earlier release (positional, no regions) still reads, and round-trips
    old = state.to_json()
    old["skus"] = {sku: values[:-1] for sku, values in old["skus"].items()}
    assert SaleState.from_json(old).skus["k1"].regions == {}
    assert SaleState.from_json(state.to_json()).skus["k1"].regions == {"north": 3}


def _catalog(n_sales: int) -> Catalog:
    catalog = Catalog()
    for s in range(n_sales + 1):
        catalog.apply("Sale", {"sale_id": f"s{s}", "brand": "acme", "starts_at": s * 10, "ends_at": s * 10 + 5,
                               "products": [{"sku": f"k{k}", "name": "x", "category": "shoes", "price": 50.0,
                                             "stock": 500} for k in range(3)]})
    return catalog


def test_the_desk_learns_region_shares_from_outcomes_and_every_plan_line_adds_up() -> None:
    catalog = _catalog(5)
    for s in range(5):
        for record in sale_outcomes(catalog, catalog.sales[f"s{s}"], lambda _sku: 100.0, lambda _sku: False,
                                    lambda _sku: {"north": 60.0, "south": 30.0, "east": 10.0}):
            catalog.apply("ForecastOutcome", record)
    desk = BuyerDesk(catalog)
    plan = desk.plan_view("s5")
    assert plan is not None
    for p in plan["products"]:
        parts = p["warehouses"]
        assert set(parts) == {"north", "south", "east"} and sum(parts.values()) == p["quantity"]
        assert parts["north"] > parts["south"] > parts["east"]


def test_outcome_regions_round_trip_through_the_contract() -> None:
    o = Outcome("s1", "k1", 10.0, 8.0, regions=(("north", 5.0), ("south", 3.0)))
    record = Codec().decode(Codec().encode("ForecastOutcome", o.to_record()), timestamps="ms")[1]
    assert Outcome.from_record(record) == o


@given(st.dictionaries(st.sampled_from(["n", "s", "e", "w"]), st.floats(1, 1e4), min_size=1),
       st.sampled_from(["acme", "zeta", None]), st.sampled_from(["shoes", "bags", None]))
def test_region_shares_are_a_distribution(units: dict[str, float], brand: str | None, category: str | None) -> None:
    rs = RegionShares()
    rs.observe({"n": 50.0, "s": 50.0}, brand="acme", category="shoes")
    rs.observe(units, brand=brand, category=category)
    shares = rs.shares(brand=brand, category=category)
    assert sum(shares.values()) == pytest.approx(1.0) and all(v >= 0 for v in shares.values())


def test_a_brand_with_a_short_record_is_shrunk_toward_the_shop() -> None:
    rs = RegionShares(prior_strength=100)
    rs.observe({"north": 1000.0, "south": 1000.0}, brand="big", category="shoes")
    rs.observe({"north": 10.0}, brand="tiny", category="shoes")
    tiny = rs.shares(brand="tiny", category="shoes")
    shop = rs.shares()
    assert shop["north"] < tiny["north"] < 0.75


@pytest.mark.parametrize("seed", range(4))
def test_tobit_recovers_a_normal_law_under_heavy_censoring(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mu, sd = rng.uniform(-1, 1), rng.uniform(0.2, 1.5)
    draws = rng.normal(mu, sd, 3000)
    cuts = mu + rng.normal(0.0, 0.5 * sd, draws.size)  # about half censored, at varying points
    censored = draws >= cuts
    fit = tobit_fit(np.minimum(draws, cuts), censored)
    assert fit is not None
    assert fit[0] == pytest.approx(mu, abs=0.1 * sd) and fit[1] == pytest.approx(sd, rel=0.1)
    # dropping the censored draws, or taking them at face value, is clearly biased
    assert abs(np.minimum(draws, cuts).mean() - mu) > 0.2 * sd


def test_tobit_needs_two_distinct_exact_values() -> None:
    assert tobit_fit([1.0, 2.0], [True, True]) is None
    assert tobit_fit([1.0, 1.0, 3.0], [False, False, True]) is None
