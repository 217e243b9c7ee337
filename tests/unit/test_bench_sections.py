"""The issue #13 bench sections' pure parts: profile parsing, report splicing, ratios against both floors."""

from __future__ import annotations

import json
from pathlib import Path

from salepulse.streams.tools.bench_floor import floor_ratios, render_floor, spread
from salepulse.streams.tools.bench_sections import sections_of, splice, write
from salepulse.streams.tools.profiles import parse_collapsed, summary


def floor_result() -> dict:
    workers = {"default": spread([10_000.0, 12_000.0, 11_000.0]), "cpu_bound": spread([14_000.0, 13_000.0, 15_000.0])}
    return {"events": 1000, "repeats": 3, "fetch": {}, "floor_per_s": {"default": spread([50_000.0] * 3),
                                                                         "cpu_bound": spread([100_000.0] * 3)},
            "velocity_worker_per_s": workers, "velocity_worker_ingest_per_s": workers,
            "better_ingest_fetch": "cpu_bound",
            "worker_all_roles": {"velocity_per_s": 8_000.0, "preferences_per_s": 5_000.0}}


def test_every_worker_rate_is_divided_by_both_floors() -> None:
    text = "\n".join(render_floor(floor_result()))
    # velocity worker at the CPU-bound fetch: median 14,000 over floors 50,000 and 100,000
    assert "| 14,000 | 0.28 | 0.14 |" in text
    assert "| 5,000 | 0.1 | 0.05 |" in text  # every role, preferences
    assert [what for what, _, _ in floor_ratios(floor_result())][-1] == "every role, member preferences"


def test_pipeline_workers_join_the_ratios_when_the_full_bench_ran() -> None:
    pipeline = {"worker": {"events_per_s": 20_000.0},
                "worker_all_roles": {"velocity_per_s": 9_000.0, "preferences_per_s": 4_000.0}}
    sources = [source for _, _, source in floor_ratios(floor_result(), pipeline)]
    assert sources.count("pipeline section") == 3


def test_profile_own_time_is_the_leaf_and_filters_apply() -> None:
    lines = ["t;run (/r/consumers/io/clickhouse_sink.py:9);decode (/r/schemas/codec.py:3) 5",
             "t;run (/r/consumers/io/clickhouse_sink.py:9);load (<frozen importlib._bootstrap>:1) 7",
             "t;other (/r/streams/app.py:1) 11"]
    own, total, samples = parse_collapsed(lines, keep="clickhouse_sink", drop="importlib._bootstrap")
    assert samples == 5
    assert own == {"decode (schemas/codec.py)": 5}
    assert total["run (consumers/io/clickhouse_sink.py)"] == 5
    top = summary(own, total, samples, top=1)
    assert top["own"] == [["decode (schemas/codec.py)", 5, 100.0]]


def test_a_partial_run_replaces_its_section_and_keeps_the_rest(tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\nfull report\n")
    (tmp_path / "BENCHMARKS.json").write_text(json.dumps({"pipeline": {"x": 1}}))
    write(output, {"floor": floor_result()}, "salepulse bench --only floor", "d1")
    write(output, {"floor": {**floor_result(), "events": 2000}}, "salepulse bench --only floor", "d2")
    text = output.read_text()
    assert text.count("## Consume+decode floor") == 1 and "2,000 pre-filled" in text and "full report" in text
    raw = json.loads((tmp_path / "BENCHMARKS.json").read_text())
    assert raw["pipeline"] == {"x": 1} and raw["floor"]["events"] == 2000
    # a fresh full report keeps the sections it did not measure
    write(output, {}, "make bench", "d3", markdown="# Benchmarks\n\nnew full report\n")
    assert "new full report" in output.read_text() and "floor" in sections_of(output.read_text())


def test_splice_appends_once() -> None:
    text = splice(splice("# B\n", "a", ["x"]), "b", ["y"])
    assert list(sections_of(text)) == ["a", "b"]
