"""The expert-forecast CSV loader: all or nothing, every bad row named with its line."""

from __future__ import annotations

import io

import pytest

from salepulse.consumers.tools.priors import PriorsFileError, read_priors_csv


def load(text: str, submitted_at_ms: int = 1_764_403_200_000) -> list[dict]:
    return read_priors_csv(io.StringIO(text), submitted_at_ms=submitted_at_ms)


def test_good_file_gives_one_record_per_row_with_optional_fields() -> None:
    rows = load("sale_id,sku,expected_units,low,high,author\ns1,k1,120,80,200,anna\ns1,k2,5,,,\n")
    assert [(r["sku"], r["expected_units"], r["low"], r["high"], r["author"]) for r in rows] == [
        ("k1", 120.0, 80.0, 200.0, "anna"), ("k2", 5.0, None, None, None)]
    assert rows[0]["submitted_at"] == 1_764_403_200_000
    # identity is the content, never the arrival time: loading the same sheet later gives the same ids
    again = load("sale_id,sku,expected_units,low,high,author\ns1,k1,120,80,200,anna\n", 1_764_403_900_000)
    assert rows[0]["event_id"].startswith("s1:k1:") and again[0]["event_id"] == rows[0]["event_id"]


def test_every_bad_row_is_listed_and_nothing_is_returned() -> None:
    text = ("sale_id,sku,expected_units,low,high\n"
            "s1,k1,120,80,200\n"          # fine
            "s1,k2,-3,,\n"                # negative
            "s1,k3,50,60,90\n"            # low above expected
            "s1,k4,50,40,\n"              # only one end of the range
            ",k5,10,,\n"                  # no sale
            "s1,k1,130,,\n")              # duplicate of line 2
    with pytest.raises(PriorsFileError) as caught:
        load(text)
    message = str(caught.value)
    assert message.startswith("5 bad rows, nothing loaded")
    for expected in ("line 3: expected_units: must be 0 .. 100,000,000, got -3.0", "line 4: low/high: need 0 <= low",
                     "line 5: low/high: give both ends", "line 6: sale_id: required",
                     "line 7: sale_id/sku: s1/k1 already given on line 2"):
        assert expected in message
    assert "\n  line 2:" not in message  # the good row is not blamed


def test_missing_column_and_empty_file_are_refused() -> None:
    with pytest.raises(PriorsFileError, match="missing column"):
        load("sale_id,sku\ns1,k1\n")
    with pytest.raises(PriorsFileError, match="no forecast rows"):
        load("sale_id,sku,expected_units\n")


def test_non_numeric_values_are_named() -> None:
    with pytest.raises(PriorsFileError, match=r"line 2: high: 'many' is not a number"):
        load("sale_id,sku,expected_units,low,high\ns1,k1,10,5,many\n")
