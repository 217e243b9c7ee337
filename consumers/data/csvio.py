"""CSV plumbing shared by the dataset readers: open (gzip sniffed), header look-up, time and price parsing.

Skip reasons are named here once, so replay's report and the evaluations count rows the same way.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

SECOND_MS = 1_000

# Skip reasons; a row is counted once, under the first reason that applies.
MALFORMED = "malformed_row"  # wrong column count, unparsable number or time
MISSING_ID = "missing_id"  # an id the contract requires (member, sku, invoice) is empty
UNKNOWN_TYPE = "unknown_event_type"  # event_type / behavior_type outside the documented set
NEGATIVE_PRICE = "negative_price"
CANCELLATION = "cancellation"  # retail: InvoiceNo C...
NON_PRODUCT = "non_product"  # retail: postage, fees, manual adjustments, vouchers ...
NON_POSITIVE_QUANTITY = "non_positive_quantity"  # retail: Quantity <= 0 on a non-cancellation invoice
ZERO_PRICE = "zero_price"  # retail: UnitPrice 0 (stock adjustments and free samples, not sales)


class DataFileMissing(FileNotFoundError):
    """The dataset file is not where it was looked for."""


def require_file(path: Path, expected: str = "") -> None:
    """Fail with the path and the setting to change when ``path`` is not a file."""
    if not path.is_file():
        raise DataFileMissing(
            f"replay data file {path} does not exist; put the dataset there, pass its path, or point "
            f"SALEPULSE_DATA_DIR at the folder holding {expected}"
        )


def open_csv(path: Path, expected: str = "") -> Iterator[list[str]]:
    """Rows of a CSV file, gzip-compressed or not; the file stays open only while iterated."""
    require_file(path, expected)
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"  # sniffed, not trusted to the file name
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8", newline="") as stream:
        yield from csv.reader(stream)


def columns(header: Sequence[str], wanted: Sequence[str], path: Path) -> Callable[[list[str]], tuple[str, ...]]:
    """Positions of ``wanted`` in the header, so a re-ordered export still maps; a missing column is an error.

    >>> columns(["b", "a"], ["a", "b"], Path("x"))(["2", "1"])
    ('1', '2')
    """
    names = [name.strip() for name in header]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(f"{path}: header lacks column(s) {', '.join(missing)}; got {', '.join(names)}")
    return itemgetter(*(names.index(name) for name in wanted))


@lru_cache(maxsize=65_536)
def utc_ms(text: str) -> int:
    """``YYYY-MM-DD HH:MM:SS`` with an optional `` UTC`` suffix -> epoch ms. Cached: rows share seconds.

    >>> utc_ms("1970-01-01 00:00:01 UTC")
    1000
    """
    if text.endswith(" UTC"):
        text = text[:-4]
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * SECOND_MS


def price(text: str) -> float:
    """A finite float, else ``ValueError``.

    >>> price("2.50")
    2.5
    """
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"price {text!r} is not a finite number")
    return value
