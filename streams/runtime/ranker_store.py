"""The ranking blends' weights across restarts: a JSON snapshot in the state directory, restored at start.

The blends (and the "again" gate) are learnt in process memory from every cart add and order
(:meth:`PreferenceModel.learn <salepulse.streams.domain.preferences.model.PreferenceModel.learn>`). Member state is
in a changelog-backed table; the blends are one small shared object per worker, so a file is enough: written
every ``MEMBER_FLUSH_SECONDS`` and at shutdown (atomically: a crash mid-write leaves the previous snapshot), read
when the worker starts. A crash loses at most the learning of the seconds since the last snapshot. Co-visitation
and session neighbours are not in it (they are rebuilt from the signals that follow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from salepulse.streams.domain.preferences import Ranker
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)


def store_path(settings: Settings) -> Path:
    """One snapshot per worker group and HTTP port: two workers on one machine never share a file."""
    return settings.state_dir / "ranker" / f"{settings.worker_group}-{settings.http_port}.json"


class RankerStore:
    """Saves and restores :meth:`Ranker.to_dict`.

    >>> import tempfile
    >>> store = RankerStore(Path(tempfile.mkdtemp()) / "r.json")
    >>> store.restore(Ranker())   # nothing saved yet: the ranker keeps its priors
    False
    >>> r = Ranker(); r.sale.load({"pop": 3.0}); store.save(r)
    >>> fresh = Ranker(); store.restore(fresh), fresh.sale_weights["pop"]
    (True, 3.0)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved: dict[str, Any] | None = None

    def save(self, ranker: Ranker) -> None:
        """Write the weights when they changed since the last save."""
        body = ranker.to_dict()
        if body == self.saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)
        self.saved = body

    def restore(self, ranker: Ranker) -> bool:
        """Load the last snapshot into ``ranker``; False (and the priors kept) when there is none or it is
        unreadable."""
        try:
            body = json.loads(self.path.read_text())
            ranker.load_weights(body)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ranker snapshot unreadable; starting from the priors", path=str(self.path),
                        error=repr(exc)[:300])
            return False
        self.saved = body
        return True
