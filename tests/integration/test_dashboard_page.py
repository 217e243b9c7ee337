"""The operations dashboard page, rendered by a REAL browser (Debian's headless Chromium) against a live API.

The assertions live in :func:`check_dashboard_page`, which takes only a base URL: here it runs against the
stdlib fake in ``tests/web/fake_dashboard_server.py``; pointed at the worker (``http://host:port``) it checks
the real ``GET /dashboard`` + ``GET /api/dashboard`` the same way::

    from tests.integration.test_dashboard_page import check_dashboard_page
    check_dashboard_page("http://127.0.0.1:6066", tmp_path)

Chromium is required, never skipped: without it these tests FAIL and say ``apt-get install -y chromium``.
The exact command line is :func:`chromium_command` (``--dump-dom`` after ``--virtual-time-budget`` ms of
page time, so the page's 1 s poll loop runs a few times before the DOM is printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.web.fake_dashboard_server import WEB_DIR, serve

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)
BROWSER_TIMEOUT_S = 120


# ---------------------------------------------------------------------------------------------- browser


def chromium_binary() -> str:
    """``$CHROMIUM`` or the first Chromium on PATH; FAILS (never skips) when there is none."""
    configured = os.environ.get("CHROMIUM", "").strip()
    if configured:
        if not (shutil.which(configured) or Path(configured).is_file()):
            pytest.fail(f"CHROMIUM={configured!r} is set but is not an executable")
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "No Chromium found (looked for $CHROMIUM and " + ", ".join(CHROMIUM_NAMES) + "). The dashboard page is "
        "tested in a real headless browser: install Debian's with `apt-get install -y chromium` "
        "(playwright's own browser downloads are not available here)."
    )


def chromium_command(url: str, profile: Path, *, budget_ms: int = 3000, window: str = "1366,900",
                     screenshot: Path | None = None) -> list[str]:
    """The exact Chromium invocation: DOM dump (default) or PNG screenshot after ``budget_ms`` of page time."""
    output = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    return [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
            f"--virtual-time-budget={budget_ms}", *output, url]


def dump_dom(url: str, workdir: Path, *, budget_ms: int = 3000) -> str:
    """The page's DOM as serialized by headless Chromium after ``budget_ms`` of (virtual) page time."""
    profile = workdir / f"chromium-profile-{len(list(workdir.glob('chromium-profile-*')))}"
    command = chromium_command(url, profile, budget_ms=budget_ms)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"headless Chromium did not finish within {BROWSER_TIMEOUT_S}s: {' '.join(command)}\n{exc}")
    if done.returncode != 0 or "<html" not in done.stdout:
        pytest.fail(f"headless Chromium failed (exit {done.returncode}): {' '.join(command)}\n"
                    f"stderr tail:\n{done.stderr[-3000:]}")
    return done.stdout


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - local test servers only
        return json.load(response)


# ---------------------------------------------------------------------------------------------- DOM


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        parts: list[str] = []

        def walk(node: Node) -> None:
            parts.extend(node.texts)
            for child in node.children:
                walk(child)

        walk(self)
        return " ".join(" ".join(parts).split())

    def iter(self):  # noqa: ANN201 - a generator of Node, depth first in document order
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, predicate) -> list[Node]:  # noqa: ANN001
        return [node for node in self.iter() if node is not self and predicate(node)]

    def by_id(self, element_id: str) -> Node:
        found = self.find_all(lambda n: n.attrs.get("id") == element_id)
        assert found, f"no element #{element_id} in the rendered page"
        return found[0]

    def by_class(self, name: str) -> list[Node]:
        return self.find_all(lambda n: name in n.classes)


class _TreeBuilder(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def number(text: str) -> float:
    cleaned = text.replace(",", "").strip()
    assert re.fullmatch(r"-?\d+(\.\d+)?", cleaned), f"not a formatted number: {text!r}"
    return float(cleaned)


# ---------------------------------------------------------------------------------------------- the checks


@dataclass
class Rendered:
    """What one page load showed."""

    units: float
    open_alerts: int
    updated_at: str
    sale_units: dict[str, float]
    sale_ids: list[str]
    alert_ids: list[str]
    stale: Node


def read_page(dom: Node) -> Rendered:
    sales = dom.by_id("sales").find_all(lambda n: "data-sale-id" in n.attrs)
    sale_units = {}
    for row in sales:
        units = row.by_class("units")
        assert units, f"sale row {row.attrs['data-sale-id']} has no .units"
        sale_units[row.attrs["data-sale-id"]] = number(units[0].text())
    alerts = dom.by_id("alerts").find_all(lambda n: "data-alert-id" in n.attrs)
    return Rendered(
        units=number(dom.by_id("totals-units").text()),
        open_alerts=int(number(dom.by_id("totals-open-alerts").text())),
        updated_at=dom.by_id("updated-at").text(),
        sale_units=sale_units,
        sale_ids=[row.attrs["data-sale-id"] for row in sales],
        alert_ids=[a.attrs["data-alert-id"] for a in alerts],
        stale=dom.by_id("stale"),
    )


def _stockout_key(value: str | None) -> str:
    return value or "\uffff"  # ISO-8601 UTC strings sort by time; missing ones go last


def _assert_alerts_most_urgent_first(dom: Node) -> None:
    alerts = dom.by_id("alerts").find_all(lambda n: "data-alert-id" in n.attrs)
    keys = [(SEVERITY_RANK.get(a.attrs.get("data-severity", ""), 9), _stockout_key(a.attrs.get("data-stockout")))
            for a in alerts]
    assert keys == sorted(keys), f"alerts are not most urgent first (severity, then stockout): {keys}"


def _assert_sales_most_urgent_first(dom: Node) -> None:
    rows = dom.by_id("sales").find_all(lambda n: "data-sale-id" in n.attrs)
    keys = [(r.attrs.get("data-quiet") == "true", 0 if int(r.attrs.get("data-open-alerts", "0")) > 0 else 1,
             _stockout_key(r.attrs.get("data-stockout")), -float(r.attrs.get("data-velocity") or 0)) for r in rows]
    assert keys == sorted(keys), f"sales are not most urgent first (quiet last; alerts, stockout, velocity): {keys}"


def _wait_for_api_units_above(base_url: str, units: float, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (now := get_json(f"{base_url}/api/dashboard")["totals"]["units"]) <= units:
        assert time.monotonic() < deadline, f"the API's units stayed at {now} (page showed {units}) for {timeout_s} s"
        time.sleep(0.2)


def check_dashboard_page(base_url: str, workdir: Path, *, expect_growth: bool = True, budget_ms: int = 3000,
                         raised_alerts: Callable[[], set[str]] | None = None) -> None:
    """Load ``{base_url}/dashboard`` twice in headless Chromium and check it against ``{base_url}/api/dashboard``.

    Works against anything serving the contract (the fake, the worker): numbers are checked to lie between an
    API snapshot taken just before and one taken just after the page load, since live numbers move meanwhile.
    ``expect_growth``: units must grow between the two loads (true for the fake and for a worker fed events).
    ``raised_alerts``: every alert id the source ever raised, read after the page load; the page's alerts must be
    among them (an alert can open and resolve between two API snapshots, so those cannot bound it).
    """
    base_url = base_url.rstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    before = get_json(f"{base_url}/api/dashboard")
    dom = parse(dump_dom(f"{base_url}/dashboard", workdir, budget_ms=budget_ms))
    after = get_json(f"{base_url}/api/dashboard")
    first = read_page(dom)

    assert re.fullmatch(r"\d\d:\d\d:\d\d", first.updated_at), f"#updated-at is not HH:MM:SS: {first.updated_at!r}"
    assert "hidden" in first.stale.attrs, f"the stale badge shows although the API answers: {first.stale.text()!r}"
    body = dom.find_all(lambda n: n.tag == "body")[0]
    refreshes = int(body.attrs.get("data-refreshes", "0"))
    assert refreshes >= max(2, budget_ms // 1000 - 1), (
        f"the page refreshed {refreshes} times in {budget_ms} ms of page time; it must poll /api/dashboard each second"
    )

    # one row per open sale, carrying the API's numbers
    ids_before = {s["sale_id"] for s in before["sales"]}
    ids_after = {s["sale_id"] for s in after["sales"]}
    assert len(first.sale_ids) == len(set(first.sale_ids)), f"a sale has several rows: {first.sale_ids}"
    assert ids_before & ids_after <= set(first.sale_ids) <= ids_before | ids_after, (
        f"rows {sorted(first.sale_ids)} vs API sales {sorted(ids_before)} -> {sorted(ids_after)}")
    units_before = {s["sale_id"]: s["units"] for s in before["sales"]}
    units_after = {s["sale_id"]: s["units"] for s in after["sales"]}
    for sale_id, shown in first.sale_units.items():
        if sale_id in units_before and sale_id in units_after:
            assert units_before[sale_id] <= shown <= units_after[sale_id], (
                f"sale {sale_id} shows {shown} units; the API said {units_before[sale_id]} then {units_after[sale_id]}")
    if ids_before == ids_after:  # a sale closing meanwhile takes its units out of the total: no bound then
        lo, hi = sorted((before["totals"]["units"], after["totals"]["units"]))
        assert lo <= first.units <= hi, f"#totals-units {first.units} is outside the API's {lo}..{hi}"
    brands = {s["sale_id"]: s["brand"] for s in after["sales"]}
    for row in dom.by_id("sales").find_all(lambda n: "data-sale-id" in n.attrs):
        sale_id = row.attrs["data-sale-id"]
        assert row.find_all(lambda n: n.tag == "svg" and "spark" in n.classes), f"sale {sale_id} has no sparkline"
        assert row.find_all(lambda n: n.tag == "svg" and "band" in n.classes), f"sale {sale_id} has no forecast bar"
        if sale_id in brands:
            assert brands[sale_id].lower() in row.text().lower(), f"sale {sale_id} does not show its brand"
    _assert_sales_most_urgent_first(dom)

    # alerts: the API's, most urgent first, and the header count agrees with the panel
    # An alert may be escalated (a new id for the same product) between the snapshots: compare products.
    def product_of(alert_id: str) -> str:
        return alert_id.rsplit(":", 1)[0]

    if raised_alerts is not None:
        known = raised_alerts()
        assert set(first.alert_ids) <= known, f"alerts {sorted(set(first.alert_ids) - known)} were never raised"
    else:
        api_alerts = {product_of(a["alert_id"]) for a in before["alerts"] + after["alerts"]}
        shown_alerts = {product_of(alert_id) for alert_id in first.alert_ids}
        assert shown_alerts <= api_alerts, f"alerts {first.alert_ids} not in the API's {sorted(api_alerts)}"
    assert first.open_alerts == len(first.alert_ids), (
        f"#totals-open-alerts says {first.open_alerts} but #alerts lists {len(first.alert_ids)}")
    _assert_alerts_most_urgent_first(dom)

    # the numbers move: once the API has counted more units than the first load showed, a second load shows them.
    # Waiting for that state, not for a lucky second: orders come in bursts, and a quiet second is not a page bug.
    if expect_growth:
        _wait_for_api_units_above(base_url, first.units)
    second = read_page(parse(dump_dom(f"{base_url}/dashboard", workdir, budget_ms=budget_ms)))
    if expect_growth:
        assert second.units > first.units, f"#totals-units did not grow between loads: {first.units} -> {second.units}"
        for sale_id, shown in second.sale_units.items():
            if sale_id in first.sale_units:
                assert shown >= first.sale_units[sale_id], f"sale {sale_id} units went down: {first} -> {second}"


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.integration
def test_dashboard_page_against_fake_api(tmp_path: Path) -> None:
    with serve() as (base_url, _state):
        check_dashboard_page(base_url, tmp_path)


@pytest.mark.integration
def test_dashboard_page_renders_exact_payload_and_keeps_polling(tmp_path: Path) -> None:
    """With the fake we know the exact payload the page last rendered, and how often it polled."""
    from tests.web.fake_dashboard_server import payload

    with serve() as (base_url, state):
        dom = parse(dump_dom(f"{base_url}/dashboard", tmp_path, budget_ms=4000))
        polls = state.calls
    assert polls >= 4, f"the page polled /api/dashboard {polls} times in 4 s of page time; it must poll every second"
    page = read_page(dom)
    # the page shows the last payload it received, or (if the dump raced a poll) the one before it
    candidates = [payload(polls - 1), payload(polls - 2)]
    shown = next((p for p in candidates if p["totals"]["units"] == page.units), None)
    assert shown is not None, f"#totals-units {page.units} matches none of the last payloads"
    assert page.sale_units == {s["sale_id"]: s["units"] for s in shown["sales"]}
    assert page.open_alerts == shown["totals"]["open_alerts"]
    expected_alerts = sorted(shown["alerts"], key=lambda a: (SEVERITY_RANK[a["severity"]],
                                                             _stockout_key(a["projected_stockout_at"])))
    assert page.alert_ids == [a["alert_id"] for a in expected_alerts]
    assert dom.by_id("totals-units").text() == f"{shown['totals']['units']:,}"  # thousands separators
    # a sale without a forecast yet renders dashes, not "null"/"NaN"
    assert "null" not in dom.by_id("sales").text() and "NaN" not in dom.by_id("sales").text()


@pytest.mark.integration
def test_dashboard_page_shows_stale_badge_and_keeps_polling_when_api_fails(tmp_path: Path) -> None:
    with serve() as (base_url, state):
        state.fail_after = 2  # two good payloads, then 503s
        dom = parse(dump_dom(f"{base_url}/dashboard", tmp_path, budget_ms=5000))
        attempts = state.attempts
    page = read_page(dom)
    assert attempts >= 4, f"the page stopped polling after a failure ({attempts} requests in 5 s)"
    assert "hidden" not in page.stale.attrs, "no stale badge although /api/dashboard answers 503"
    assert page.stale.text() == f"stale since {page.updated_at}", page.stale.text()
    assert len(page.sale_ids) > 0, "the last good data must stay on screen while the API fails"


def test_dashboard_assets_load_nothing_from_the_internet() -> None:
    """The page must work offline: only /dashboard/static/ assets and the relative API URL."""
    html = (WEB_DIR / "dashboard.html").read_text()
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html):
        assert ref.startswith("/dashboard/static/"), f"dashboard.html references {ref!r}"
    for path in [WEB_DIR / "dashboard.html", *WEB_DIR.glob("*.js"), *WEB_DIR.glob("*.css"),
                 *WEB_DIR.glob("vendor/*.js"), *WEB_DIR.glob("vendor/*.css")]:
        text = path.read_text()
        for pattern in (r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", r"""url\(\s*["']?(?:https?:)?//""",
                        r"""fetch\(\s*["'](?:https?:)?//""", r"""@import\s+(?:url\()?["']?(?:https?:)?//"""):
            assert not re.search(pattern, text), f"{path.name} loads something from the network ({pattern})"


def _chips(row: Node) -> list[str]:
    return [n.attrs["data-coverage"] for n in row.find_all(lambda n: "data-coverage" in n.attrs)]


@pytest.mark.integration
def test_dashboard_page_can_be_trusted_at_a_glance(tmp_path: Path) -> None:
    """One labelled clock, badges that agree, names on alerts with the full reason on hover, a time axis on the
    sparklines, a currency on revenue, quiet sales folded away."""
    from tests.web.fake_dashboard_server import payload

    with serve() as (base_url, state):
        state.currency = "USD"
        dom = parse(dump_dom(f"{base_url}/dashboard", tmp_path, budget_ms=3000))
        polls = state.calls
    shown = next(p for p in (payload(polls - 1, "USD"), payload(polls - 2, "USD"))
                 if p["totals"]["units"] == number(dom.by_id("totals-units").text()))

    # one clock for the page, and the stream's own clock only because it differs here, labelled as such
    clock = dom.by_class("clock")[0].text()
    assert clock.count(":") >= 2 and "updated" in clock
    stream = dom.by_id("stream-clock")
    assert "hidden" not in stream.attrs and "stream time" in stream.text() and "2026-11-29" in stream.text()

    # revenue carries its currency
    assert dom.by_id("currency").text() == "USD" and dom.by_id("totals-revenue").text().startswith("$")

    rows = {r.attrs["data-sale-id"]: r for r in dom.by_id("sales").find_all(lambda n: "data-sale-id" in n.attrs)}
    api = {s["sale_id"]: s for s in shown["sales"]}
    for sale_id, row in rows.items():
        sale_chips = _chips(row.by_class("sale-row")[0])
        if int(row.attrs["data-open-alerts"]) or api[sale_id]["out_of_stock"]:
            assert "covered" not in sale_chips, f"{sale_id} is badged covered next to alerts or an empty shelf"
        assert sale_chips == ([api[sale_id]["coverage"]] if api[sale_id]["coverage"] != "unknown" else [])
    assert rows["s-23"].by_class("sale-row")[0].text().count("1 out of stock") == 1

    # sparklines have a time axis ending "now"
    for sale_id, row in rows.items():
        if not api[sale_id]["quiet"] and len(api[sale_id]["velocity_series"]) >= 2:
            axis = row.by_class("spark-axis")
            assert axis and axis[0].text().endswith("now") and "min" in axis[0].text(), sale_id

    # alert cards name the product and the sale; the full reason is on hover (title), never cut
    cards = {a.attrs["data-alert-id"]: a for a in dom.by_id("alerts").find_all(lambda n: "data-alert-id" in n.attrs)}
    for alert in shown["alerts"]:
        card = cards[alert["alert_id"]]
        if alert["product_name"]:
            assert alert["product_name"] in card.text()
        assert alert["sale_name"].lower() in card.text().lower()
        assert card.by_class("a-reason")[0].attrs["title"] == alert["reason"]
        if alert["order_by"]:
            assert "order by" in card.text() or "order now" in card.text()

    # quiet sales are folded away behind one toggle
    quiet = [sale_id for sale_id, row in rows.items() if row.attrs.get("data-quiet") == "true"]
    assert sorted(quiet) == ["s-24", "s-25"]
    assert all("hidden" in rows[sale_id].attrs for sale_id in quiet)
    toggle = dom.by_class("quiet-toggle")[0]
    assert "2 quiet sales" in toggle.text() and "hidden" not in toggle.attrs


@pytest.mark.integration
def test_dashboard_page_says_when_the_data_stops(tmp_path: Path) -> None:
    with serve() as (base_url, state):
        state.freeze_after = 1  # the API keeps answering, with nothing new
        dom = parse(dump_dom(f"{base_url}/dashboard?stale=2", tmp_path, budget_ms=5000))
    badge = dom.by_id("stale")
    assert "hidden" not in badge.attrs and badge.attrs.get("data-reason") == "no-events"
    assert re.fullmatch(r"no new events since \d\d:\d\d:\d\d", badge.text()), badge.text()


def test_dashboard_screenshot(tmp_path: Path) -> None:
    """A real browser paints the page against the fake API (``SALEPULSE_SCREENSHOT=path`` keeps the PNG)."""
    with serve() as (base_url, _state):
        target = Path(os.environ.get("SALEPULSE_SCREENSHOT") or tmp_path / "dashboard.png")
        command = chromium_command(f"{base_url}/dashboard?expand=s-12", tmp_path / "profile", budget_ms=3000,
                                   screenshot=target)
        done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, "the screenshot is not a painted page"
