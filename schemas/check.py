"""``salepulse schemas check``: every contract parses, documents its fields, and round-trips a sample.

The samples double as living examples of each record for producers writing their first event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from salepulse.schemas.codec import Codec
from salepulse.schemas.validation import problems

T0 = 1_764_403_200_000  # 2025-11-29T08:00:00Z

SAMPLES: dict[str, dict[str, Any]] = {
    "BrowseEvent": {"event_id": "b-1", "member_id": "m-42", "sale_id": "s-nike-1", "sku": "nike-air-1",
                    "ts": T0, "channel": "app", "session_id": "sess-9"},
    "CartEvent": {"event_id": "c-1", "member_id": "m-42", "sale_id": "s-nike-1", "sku": "nike-air-1",
                  "action": "add", "quantity": 1, "unit_price": 59.9, "ts": T0 + 1000},
    "OrderEvent": {"event_id": "o-1", "order_id": "o-1", "member_id": "m-42", "ts": T0 + 2000,
                   "lines": [{"sale_id": "s-nike-1", "sku": "nike-air-1", "quantity": 2, "unit_price": 59.9}],
                   "region": "north"},
    "Sale": {"event_id": "sale-v1", "sale_id": "s-nike-1", "brand": "nike", "starts_at": T0,
             "ends_at": T0 + 3 * 86_400_000, "updated_at": T0,
             "products": [{"sku": "nike-air-1", "name": "Air 1", "category": "shoes.sneakers", "price": 59.9,
                           "stock": 300}]},
    "ExpertForecast": {"event_id": "f-1", "sale_id": "s-nike-1", "sku": "nike-air-1", "expected_units": 250.0,
                       "low": 150.0, "high": 400.0, "author": "buyer-anna", "submitted_at": T0 - 86_400_000,
                       "buyer_id": "buyer-anna"},
    "StockPlan": {"event_id": "s-nike-1:nike-air-1:plan:2", "sale_id": "s-nike-1", "sku": "nike-air-1",
                  "quantity": 340, "service_level": 0.9, "p10": 150.0, "p50": 210.0, "p90": 330.0,
                  "expert": 250.0, "correction": 0.85, "source": "expert-corrected",
                  "reason": "buyer-anna's forecasts on shoes.sneakers ran 18% high over 23 sales",
                  "buyer_id": "buyer-anna", "warehouses": [{"region": "north", "quantity": 200},
                                                           {"region": "south", "quantity": 140}],
                  "version": 2, "planned_at": T0 - 3_600_000},
    "ForecastOutcome": {"event_id": "s-nike-1:nike-air-1:outcome", "sale_id": "s-nike-1", "sku": "nike-air-1",
                        "expert": 250.0, "low": 150.0, "high": 400.0, "actual": 212.0, "censored": False,
                        "buyer_id": "buyer-anna", "category": "shoes.sneakers", "price": 59.9, "brand": "nike",
                        "sale_hours": 72.0, "ended_at": T0 + 3 * 86_400_000,
                        "regions": [{"region": "north", "units": 140.0}, {"region": "south", "units": 72.0}],
                        "exposure": None},
    "StockLevel": {"event_id": "st-1", "sku": "nike-air-1", "on_hand": 300, "inbound": 100,
                   "inbound_eta": T0 + 86_400_000, "lead_time_hours": 24.0, "updated_at": T0},
    "VelocityFacts": {"event_id": "events.order:0:17:s-nike-1", "sale_id": "s-nike-1", "event_ids": ["o-1"],
                      "skus": ["nike-air-1"], "kinds": ["order"], "units": [2], "revenues": [119.8],
                      "ts": [T0 + 2000], "sources": ["events.order:0"], "offsets": [17],
                      "regions": ["north"]},
    "MemberSignals": {"event_id": "events.order:0:17:p2", "signals": [
        {"member_id": "m-42", "sale_id": "s-nike-1", "sku": "nike-air-1", "kind": "order", "quantity": 2,
         "action": None, "unit_price": 59.9, "ts": T0 + 2000}]},
    "VelocitySnapshot": {"event_id": "s-nike-1:nike-air-1:3", "sale_id": "s-nike-1", "sku": "nike-air-1",
                         "as_of": T0 + 2000, "version": 3, "views": 10, "carts": 2, "orders": 1, "units": 2,
                         "revenue": 119.8, "velocity_uph": 5.5, "expert_prior": 250.0, "prior_source": "expert",
                         "p10": 180.0, "p50": 240.0, "p90": 330.0, "stock_available": 400,
                         "projected_stockout_at": None},
    "ReplenishmentAlert": {"event_id": "s-nike-1:nike-air-1:1", "alert_id": "s-nike-1:nike-air-1:1",
                           "sale_id": "s-nike-1", "sku": "nike-air-1", "status": "open", "severity": "high",
                           "probability": 0.93, "shortfall": 80.0, "available": 300, "p90": 420.0,
                           "recommended_quantity": 120, "projected_stockout_at": T0 + 86_400_000,
                           "reason": "p50 demand 380 > 300 available; stockout in ~20 h, lead time 24 h",
                           "raised_at": T0 + 3000, "product_name": "Air Max 90", "sale_name": "nike",
                           "units_sold": 120, "order_by": T0 + 0, "lead_time_hours": 24.0,
                           "wall_clock_at": T0 + 3000},
    "DeadLetter": {"event_id": "events.order:0:18", "source_topic": "events.order", "partition": 0,
                   "offset": 18, "key": b"m-42", "value": b"\x00garbage", "reason": "decode: unknown framing",
                   "failed_at": T0 + 4000, "stage": "decode", "value_sha256": "7f" * 32, "value_size": 8},
}


@dataclass
class CheckReport:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append(f"FAIL {line}")


def _undocumented(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for fld in schema.get("fields", []):
        where = f"{path}{fld['name']}"
        if not fld.get("doc"):
            missing.append(where)
        inner = fld["type"]
        if isinstance(inner, dict) and inner.get("type") == "array" and isinstance(inner["items"], dict):
            inner = inner["items"]
        if isinstance(inner, dict) and inner.get("type") == "record":
            missing += _undocumented(inner, f"{where}.")
    return missing


def check_all(registry_url: str | None = None) -> CheckReport:
    codec = Codec(registry_url)
    report = CheckReport()
    for name, rtype in sorted(codec.types.items()):
        if name not in SAMPLES:
            report.fail(f"{name}: no sample to round-trip")
            continue
        if "event_id" not in {f["name"] for f in rtype.raw["fields"]}:
            report.fail(f"{name}: has no event_id field")
        if undocumented := _undocumented(rtype.raw):
            report.fail(f"{name}: fields without doc: {', '.join(undocumented)}")
        sample = SAMPLES[name]
        if found := problems(name, sample):
            report.fail(f"{name}: sample breaks its rules: {found}")
        decoded_name, decoded = codec.decode(codec.encode(name, sample))
        again = codec.encode(decoded_name, decoded)
        if decoded_name != name or again != codec.encode(name, sample):
            report.fail(f"{name}: round trip changed the record")
            continue
        report.lines.append(f"ok   {name:<20} fingerprint {rtype.fingerprint.hex()}  {len(again)} bytes")
    return report
