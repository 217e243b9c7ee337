"""The worker's collector pauses (streams/platform/gc_tuning.PauseWatch): each collection counted once, under its
own generation, and the window starting over at each take."""

from __future__ import annotations

import gc

from salepulse.streams.platform.gc_tuning import PauseWatch


def test_pause_watch_counts_each_generation_once_and_starts_over():
    watch = PauseWatch()
    watch.install()
    gc.disable()  # only the collections asked for below
    try:
        gc.collect(0)
        gc.collect(1)
        took = watch.take()
        assert took[0]["count"] == 1 and took[1]["count"] == 1 and took[2]["count"] == 0
        assert took[1]["max_ms"] == took[1]["total_ms"] >= 0
        assert watch.take()[0]["count"] == 0
    finally:
        watch.uninstall()
        gc.enable()
    gc.collect(0)
    assert watch.take()[0]["count"] == 0  # uninstalled: no longer called
