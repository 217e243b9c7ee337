"""``salepulse priors load FILE.csv``: the buyers' expert forecasts into ``forecast.priors``, all or nothing.

Columns: ``sale_id, sku, expected_units`` and optionally ``low, high`` (the buyer's 80% range), ``author`` and
``buyer_id`` (who forecast it: the pre-sale desk learns each buyer's habits from it).
A file with any bad row is rejected whole, and every bad row is listed with its line number and what is wrong,
so a buyer fixes the sheet once instead of discovering errors one re-upload at a time.

>>> import io
>>> rows = read_priors_csv(io.StringIO("sale_id,sku,expected_units,low,high,buyer_id\\ns1,k1,120,80,200,alice\\n"))
>>> rows[0]["expected_units"], rows[0]["low"], rows[0]["author"], rows[0]["buyer_id"]
(120.0, 80.0, None, 'alice')
>>> try:
...     read_priors_csv(io.StringIO("sale_id,sku,expected_units\\ns1,k1,lots\\ns1,,5\\n"))
... except PriorsFileError as error:
...     print(error)
2 bad rows, nothing loaded:
  line 2: expected_units: 'lots' is not a number
  line 3: sku: required
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, TextIO

from salepulse.schemas.json_input import InputError, parse_forecast

REQUIRED = ("sale_id", "sku", "expected_units")
OPTIONAL = ("low", "high", "author", "buyer_id")


class PriorsFileError(ValueError):
    """The file cannot be loaded; the message lists every problem with its line number."""


def _number(raw: str, name: str, problems: list[str]) -> float | None:
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a number")
        return None


def read_priors_csv(handle: TextIO, submitted_at_ms: int | None = None) -> list[dict[str, Any]]:
    """ExpertForecast records of every row, or :class:`PriorsFileError` naming each bad row."""
    reader = csv.DictReader(handle)
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise PriorsFileError(f"line 1: missing column(s) {', '.join(missing)}; "
                              f"expected {', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}")
    submitted = submitted_at_ms if submitted_at_ms is not None else int(time.time() * 1000)
    records, errors, seen = [], [], {}
    for line_number, raw_row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items()}
        problems: list[str] = []
        payload: dict[str, Any] = {"sale_id": row.get("sale_id") or None, "sku": row.get("sku") or None,
                                   "author": row.get("author") or None, "buyer_id": row.get("buyer_id") or None}
        for name in ("expected_units", "low", "high"):
            payload[name] = _number(row.get(name, ""), name, problems)
        if payload["expected_units"] is None and not any(p.startswith("expected_units") for p in problems):
            problems.append("expected_units: required")
        if not problems:
            try:
                records.append(parse_forecast(payload, submitted_at_ms=submitted))
            except InputError as error:
                problems = error.problems
        key = (payload["sale_id"], payload["sku"])
        if key in seen and payload["sale_id"] and payload["sku"]:
            problems.append(f"sale_id/sku: {key[0]}/{key[1]} already given on line {seen[key]}")
        seen.setdefault(key, line_number)
        errors.extend(f"line {line_number}: {problem}" for problem in problems)
    if errors:
        bad_lines = len({e.split(":")[0] for e in errors})
        raise PriorsFileError(f"{bad_lines} bad row{'s' if bad_lines > 1 else ''}, nothing loaded:\n  "
                              + "\n  ".join(errors))
    if not records:
        raise PriorsFileError("the file has no forecast rows")
    return records


def load_priors(settings: Any, path: Path) -> int:
    """Validate the whole file, then produce every forecast; returns how many were loaded."""
    from salepulse.consumers.io.publish import Publisher

    with path.open(newline="", encoding="utf-8-sig") as handle:
        records = read_priors_csv(handle)
    with Publisher(settings) as publisher:
        for record in records:
            publisher.send("prior", record)
    return len(records)

