"""The data layer: ONE reader per public dataset, shared by ``replay`` and the offline evaluations.

Each module parses its file's rows with the rules written in its docstring (and in the dataset's ``SOURCE.md``):

* :mod:`salepulse.consumers.data.rees46` - REES46 multi-category store (view / cart / remove_from_cart / purchase);
* :mod:`salepulse.consumers.data.taobao` - Taobao UserBehavior (pv / fav / cart / buy, no header);
* :mod:`salepulse.consumers.data.online_retail` - UCI Online Retail invoices, with THE rule of what a product
  line is (:func:`salepulse.consumers.data.online_retail.skip_reason`).

:func:`interactions` gives every dataset as one time-ordered list of :class:`Interaction` (what the evaluations
replay); ``replay`` maps the same parsed rows onto the Avro contracts.
"""

from __future__ import annotations

from pathlib import Path

from salepulse.consumers.data.common import Interaction, Line
from salepulse.consumers.data.datasets import DATASETS, REPLAYABLE

__all__ = ["Interaction", "Line", "dataset_path", "interactions"]


def dataset_path(name: str, data_dir: Path) -> Path:
    """The file of dataset ``name`` under ``data_dir`` (``SALEPULSE_DATA_DIR``), as the one registry
    :data:`salepulse.consumers.data.datasets.DATASETS` names it.

    >>> dataset_path("taobao", Path("/data")).as_posix()
    '/data/taobao-user-behavior-sample/UserBehavior.csv.gz'
    """
    if name not in REPLAYABLE:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(REPLAYABLE)}")
    return DATASETS[name].path(Path(data_dir))


def interactions(name: str, path: Path) -> list[Interaction]:
    """Every interaction of dataset ``name`` read from ``path``, sorted by time (stable)."""
    from salepulse.consumers.data import online_retail, rees46, taobao

    readers = {"rees46": rees46.interactions, "taobao": taobao.interactions,
               "online-retail": online_retail.interactions}
    if name not in readers:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(readers)}")
    out = list(readers[name](Path(path)))
    out.sort(key=lambda e: e.t)
    return out
