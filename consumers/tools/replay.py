"""Replay real public shop logs into salepulse's Kafka topics, mapped onto the Avro contracts.

Why: the simulator proves the pipeline runs on data we shaped; replaying real logs (REES46, Taobao, UCI Online
Retail) proves it copes with data nobody shaped for it - empty brands, duplicate rows, cancellations, postage
lines.

Two layers, so the mapping is tested without a broker:

1. **Pure mapping** - :func:`read_rees46`, :func:`read_taobao`, :func:`read_online_retail` return a
   :class:`ReplayPlan`: the catalogue (``Sale`` and ``StockLevel`` records derived from the data) and
   :meth:`ReplayPlan.events`, a generator of ``(kind, record)`` in the file's order (kind = browse / cart /
   order). The file is read twice: a first pass builds the catalogue and the few look-ups that need to see
   ahead (which purchase rows form one order, which row closes an invoice); the second pass streams the
   events, so the 431k-row retail file never sits in memory as records.
2. **Kafka** - :func:`run_replay` sends the catalogue, then the events, paced by event time.

The plan and catalogue live in :mod:`salepulse.consumers.tools.replay_plan`, the three readers in
:mod:`salepulse.consumers.tools.replay_readers` (both re-exported here); which file a dataset is comes from the one
registry, :data:`salepulse.consumers.data.datasets.DATASETS`.

Every id is derived from the data (no random, no clock), so replaying a file twice yields identical event ids
and the consumers' ``event_id`` de-duplication makes a second replay a no-op. The mapping rules are spelled
out in the docstrings of the three readers (and in the README section "Replaying real data").

>>> plan = read_taobao(Path("no/such/file.csv.gz"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
salepulse.consumers.data.csvio.DataFileMissing: replay data file no/such/file.csv.gz does not exist; ...
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from salepulse.consumers.data.csvio import (
    CANCELLATION,
    MALFORMED,
    MISSING_ID,
    NEGATIVE_PRICE,
    NON_POSITIVE_QUANTITY,
    NON_PRODUCT,
    SECOND_MS,
    UNKNOWN_TYPE,
    ZERO_PRICE,
)
from salepulse.consumers.data.datasets import DATASETS as PUBLIC_DATASETS
from salepulse.consumers.data.datasets import PublicDataset
from salepulse.consumers.tools.replay_plan import (
    CHANNEL,
    DAY_MS,
    DUPLICATE_PURCHASE,
    FAV_SKIPPED,
    INVALID_RECORD,
    UNKNOWN_STOCK,
    Event,
    Record,
    ReplayPlan,
)
from salepulse.consumers.tools.replay_readers import (
    REES46_TYPES,
    REES46_UNBRANDED,
    RETAIL_BRAND,
    RETAIL_CATEGORY,
    read_online_retail,
    read_rees46,
    read_taobao,
)
from salepulse.streams.platform.config import Settings

if TYPE_CHECKING:
    from salepulse.consumers.io.publish import Publisher

__all__ = [
    "CANCELLATION", "CHANNEL", "DAY_MS", "DUPLICATE_PURCHASE", "FAV_SKIPPED", "INVALID_RECORD", "MALFORMED",
    "MISSING_ID", "NEGATIVE_PRICE", "NON_POSITIVE_QUANTITY", "NON_PRODUCT", "READERS", "REES46_TYPES",
    "REES46_UNBRANDED", "RETAIL_BRAND", "RETAIL_CATEGORY", "SECOND_MS", "UNKNOWN_STOCK", "UNKNOWN_TYPE", "ZERO_PRICE",
    "Dataset", "Event", "Record", "ReplayPlan", "ReplayReport", "get_dataset", "parse_speed", "read_online_retail",
    "read_rees46", "read_taobao", "run_replay",
]


# ------------------------------------------------------------------------------------------------------------
# Registry and Kafka


READERS: dict[str, Callable[[Path], ReplayPlan]] = {
    "rees46": read_rees46,
    "taobao": read_taobao,
    "online-retail": read_online_retail,
}
"""How each replayable dataset is mapped; which file it is, where it comes from and its licence are in the one
registry, :data:`salepulse.consumers.data.datasets.DATASETS`."""


@dataclass(frozen=True)
class Dataset:
    """A replayable dataset: its entry in the public registry and its reader.

    >>> spec = get_dataset("online_retail")
    >>> spec.name, spec.relative_path == PUBLIC_DATASETS["online-retail"].relative_path
    ('online-retail', True)
    """

    public: PublicDataset
    reader: Callable[[Path], ReplayPlan]

    @property
    def name(self) -> str:
        return self.public.name

    @property
    def relative_path(self) -> str:
        """Where its file sits under ``settings.data_dir``."""
        return self.public.relative_path


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by name (``online_retail`` and ``retail`` are accepted for ``online-retail``)."""
    key = name.strip().lower().replace("_", "-")
    key = "online-retail" if key == "retail" else key
    try:
        return Dataset(PUBLIC_DATASETS[key], READERS[key])
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(READERS)}") from None


@dataclass
class ReplayReport:
    """What a replay produced; ``units`` and ``events_produced['order']`` can be checked against ClickHouse.

    ``seconds`` is the wall time of the whole run (catalogue pass, catalogue, events, both flushes), so
    ``events_per_second`` is what an operator waits for, not the producer's peak rate.
    """

    dataset: str
    path: Path
    sales: int
    stock_levels: int
    events_produced: dict[str, int]
    orders: int
    units: int
    skipped: dict[str, int]
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.events_produced.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.events_produced.items()))
        skips = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())) or "none"
        return (
            f"{self.dataset}: {self.sales} sales, {self.stock_levels} stock levels, "
            f"{self.events} events ({kinds}), "
            f"{self.orders} orders / {self.units} units, skipped: {skips}; "
            f"{self.seconds:.1f} s ({self.events_per_second:,.0f} events/s)"
        )


def run_replay(
    settings: Settings,
    dataset: str,
    path: Path | None = None,
    *,
    speed: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    publisher: Publisher | None = None,
) -> ReplayReport:
    """Replay one dataset into Kafka: catalogue and stock first (flushed, so they are stored before any
    event), then the events in file order, then flush.

    ``speed`` scales the original gaps between events (60 = an hour of data per minute); ``None`` sends as
    fast as possible (``--speed max``). ``limit`` keeps the first N events (test slices); the catalogue is
    always whole. ``publisher`` lets tests inject a fake; by default a
    :class:`~salepulse.consumers.io.publish.Publisher`
    on ``settings``.
    """
    from tqdm import tqdm

    from salepulse.consumers.io.publish import Pacer, Publisher

    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    spec = get_dataset(dataset)
    path = path if path is not None else settings.data_dir / spec.relative_path
    started = time.monotonic()
    plan = spec.reader(path)
    out = publisher if publisher is not None else Publisher(settings)
    for kind, record in plan.catalogue():
        out.send(kind, record)
    out.flush()

    skipped: Counter[str] = Counter()
    produced: Counter[str] = Counter()
    units = 0
    pacer = Pacer(speed=speed)
    events: Iterator[Event] = plan.events(skipped)
    total = plan.event_count
    if limit is not None:
        events = itertools.islice(events, limit)
        total = min(total, limit)
    with tqdm(total=total, unit="ev", desc=f"replay {spec.name}", disable=not progress) as bar:
        for kind, record in events:
            pacer.wait(record["ts"])
            out.send(kind, record)
            produced[kind] += 1
            if kind == "order":
                units += sum(line["quantity"] for line in record["lines"])
            bar.update(1)
    out.flush()
    return ReplayReport(
        dataset=spec.name,
        path=path,
        sales=len(plan.sales),
        stock_levels=len(plan.stock),
        events_produced=dict(produced),
        orders=produced["order"],
        units=units,
        skipped=dict(skipped),
        seconds=time.monotonic() - started,
    )


def parse_speed(text: str) -> float | None:
    """``max`` -> None (no pacing), else a positive float speed-up of event time."""
    if text.strip().lower() == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0 or 'max', got {text}")
    return value
