"""The bench sections of issues #13 (floor, per-stage costs, profiles) and #12 (scale: several workers), run alone
or inside ``make bench``.

``salepulse bench --only floor,stages`` or ``salepulse bench --profile`` run just those sections and splice
their markdown into an existing BENCHMARKS.md between ``<!-- bench:NAME -->`` markers (their raw figures into
BENCHMARKS.json under the same names), so a section can be re-measured without the whole bench. The full bench
calls :func:`run_sections` too and appends the sections to its report the same way.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from salepulse.streams.platform.config import Settings

SECTIONS = ("floor", "stages", "e2e", "profile", "scale", "gc", "serving")


def run_sections(settings: Settings, bootstrap: str, dsn: str, state_dir: Path, sections: set[str],
                 quick: bool = False) -> dict[str, Any]:
    """Measure ``sections``; returns their raw figures by name."""
    results: dict[str, Any] = {}
    if "stages" in sections:
        from salepulse.streams.tools.bench_stages import bench_stages

        # The bench's own ClickHouse: one process can open only one chdb path (an embedded server per process).
        results["stages"] = bench_stages(5_000 if quick else 20_000, rounds=3 if quick else 5, settings=settings,
                                         dsn=dsn)
    if "floor" in sections:
        from salepulse.streams.tools.bench_floor import bench_floor

        results["floor"] = bench_floor(bootstrap, dsn, state_dir, 30_000 if quick else 100_000,
                                       repeats=1 if quick else 3, backoff_events=0 if quick else 150_000)
    if "e2e" in sections:
        from salepulse.streams.tools.bench_e2e import bench_end_to_end

        # a seed of its own per run: ClickHouse keeps one row per event identity, so the same events twice would
        # be counted once
        results["e2e"] = [bench_end_to_end(bootstrap, dsn, state_dir, 30_000 if quick else 200_000, layout, seed)
                          for layout, seed in (("all", 21), ("split", 22))]
    if "gc" in sections:
        from salepulse.streams.tools.bench_speed import bench_gc

        results["gc"] = bench_gc(bootstrap, dsn, state_dir, 30_000 if quick else 100_000, repeats=1 if quick else 2)
    if "serving" in sections:
        from salepulse.streams.tools.bench_speed import bench_serving

        # 1,000 events/s: the rate one worker with every role keeps up with on this box (README, Benchmarks), so
        # event -> ranking measures serving, not a learner's backlog
        results["serving"] = bench_serving(bootstrap, dsn, state_dir, 1000.0, 8.0 if quick else 20.0,
                                           turns=1 if quick else 2, snapshot_s=settings.serving_snapshot_s)
    if "profile" in sections:
        from salepulse.streams.tools.profiles import profile_roles, write_summaries

        results["profile"] = profile_roles(bootstrap, dsn, state_dir, 50_000 if quick else 200_000,
                                           seconds=5.0 if quick else 15.0,
                                           sink_rows=200_000 if quick else 1_000_000)
        write_summaries(results["profile"])
    if "scale" in sections:
        from salepulse.streams.tools.bench_scale import bench_scale

        results["scale"] = bench_scale(settings, bootstrap, dsn, state_dir, quick)
    return results


def render_sections(results: dict[str, Any]) -> dict[str, list[str]]:
    """Markdown lines per section present in ``results`` (``pipeline``, when there, adds its workers' ratios)."""
    from salepulse.streams.tools.bench_e2e import render_end_to_end
    from salepulse.streams.tools.bench_floor import render_floor
    from salepulse.streams.tools.bench_scale import render_scale
    from salepulse.streams.tools.bench_speed import render_speed
    from salepulse.streams.tools.bench_stages import render_stages
    from salepulse.streams.tools.profiles import render_profiles

    rendered: dict[str, list[str]] = {}
    if "floor" in results:
        rendered["floor"] = render_floor(results["floor"], results.get("pipeline"))
    if "stages" in results:
        rendered["stages"] = render_stages(results["stages"])
    if "e2e" in results:
        rendered["e2e"] = ["## Every role together, end to end (issue #13)", "",
                           *render_end_to_end(results["e2e"])]
    if "profile" in results:
        rendered["profile"] = render_profiles(results["profile"])
    if "scale" in results:
        rendered["scale"] = render_scale(results["scale"])
    if "gc" in results:
        rendered["gc"] = render_speed(results["gc"], None)
    if "serving" in results:
        rendered["serving"] = render_speed(None, results["serving"])
    return rendered


def splice(markdown: str, name: str, lines: list[str], note: str = "") -> str:
    """``markdown`` with section ``name`` replaced by ``lines`` (appended when it is not there yet).

    >>> text = splice("# B\\n", "x", ["## X", "one"])
    >>> text = splice(text, "x", ["## X", "two"])
    >>> text.count("## X"), "two" in text, "one" in text
    (1, True, False)
    """
    body = "\n".join([f"<!-- bench:{name} -->", *([note, ""] if note else []), *lines, f"<!-- /bench:{name} -->"])
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(markdown):
        return pattern.sub(lambda _: body, markdown)
    return markdown.rstrip("\n") + "\n\n" + body + "\n"


def sections_of(markdown: str) -> dict[str, str]:
    """The spliced sections of an existing report, by name (the full bench keeps those it did not re-run).

    >>> sections_of(splice("# B", "x", ["## X"]))
    {'x': '<!-- bench:x -->\\n## X\\n<!-- /bench:x -->'}
    """
    return {m.group(1): m.group(0) for m in re.finditer(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", markdown, re.S)}


def write(output: Path, results: dict[str, Any], command: str, date: str, markdown: str | None = None) -> None:
    """Splice the sections of ``results`` into ``output`` (or into ``markdown``, a fresh full report, keeping the
    sections of the old file that this run did not measure), and merge their figures into the JSON beside it."""
    old = output.read_text() if output.exists() else "# Benchmarks\n"
    text = markdown if markdown is not None else old
    if markdown is not None:
        for name, block in sections_of(old).items():
            if name not in results:
                text = text.rstrip("\n") + "\n\n" + block + "\n"
    for name, lines in render_sections(results).items():
        if name in SECTIONS:
            text = splice(text, name, lines, note=f"_Measured {date} with `{command}`._")
    output.write_text(text)
    raw_path = output.with_suffix(".json")
    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    raw.update({name: results[name] for name in SECTIONS if name in results})
    raw_path.write_text(json.dumps(raw, indent=2))


def run_alone(settings: Settings, output: Path, sections: set[str], quick: bool) -> int:
    """``salepulse bench --only ...`` / ``--profile``: the sections alone, spliced into ``output``."""
    from datetime import UTC, datetime

    from salepulse.streams.tools.demo import ensure_broker

    bootstrap = ensure_broker(settings)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-bench-"))
    dsn = settings.clickhouse_url or f"chdb://{state_dir / 'chdb'}"
    results = run_sections(settings, bootstrap, dsn, state_dir, sections, quick)
    command = ("salepulse bench --profile" if sections == {"profile"} else
               f"salepulse bench --only {','.join(s for s in SECTIONS if s in sections)}") + (" --quick" * quick)
    write(output, results, command, datetime.now(UTC).isoformat(timespec="seconds"))
    print(f"wrote {', '.join(sorted(sections))} into {output}")
    return 0
