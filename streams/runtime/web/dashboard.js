/* salepulse operations dashboard: polls GET /api/dashboard every second and renders it.
 *
 * No library: sparklines and forecast band bars are hand-written SVG. Nothing is loaded from the internet.
 * Stable hooks for tests: #totals-units, #totals-open-alerts, #sales > [data-sale-id] (with .units),
 * #alerts > [data-alert-id], #updated-at (last successful refresh, HH:MM:SS), #stale (badge when a poll fails
 * or when no new event arrived for STALE_MS), #stream-clock (shown only when the stream's clock is not the wall
 * clock), [data-quiet] sales folded behind .quiet-toggle, .chip[data-coverage], <body data-refreshes>.
 */
(function () {
  "use strict";

  var API_URL = "/api/dashboard";
  var POLL_MS = 1000;      // one poll a second, measured start to start
  var TIMEOUT_MS = 1800;   // a hung request is abandoned so the cadence never drops below one per 2 s
  var SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
  var SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, never fetched
  var params = new URLSearchParams(window.location.search);
  // No new event for this long (wall clock) means the data stopped: say so rather than show it as live.
  var STALE_MS = (Number(params.get("stale")) || 15) * 1000;

  var expanded = new Set();   // sale ids whose products are open
  var lastData = null;        // the last payload rendered, and its "now" (stream time)
  var lastNow = Date.now();
  var lastOk = null;          // Date of the last successful refresh
  var lastEvents = null;      // events_processed last seen, and when (wall clock) it last changed
  var lastEventsChange = null;
  var showQuiet = false;      // quiet sales (no unit sold yet) are folded away until asked for

  // ---------------------------------------------------------------- formatting
  var intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var oneFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  var moneyFmt = intFmt;
  function setCurrency(code) {
    if (!code || moneyFmt.__code === code) return;
    try {
      moneyFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: code, maximumFractionDigits: 0 });
    } catch (e) { moneyFmt = intFmt; }
    moneyFmt.__code = code;
  }
  function fmtMoney(v) { return isNum(v) ? moneyFmt.format(v) : "—"; }

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmtInt(v) { return isNum(v) ? intFmt.format(v) : "—"; }
  function fmtVel(v) { return isNum(v) ? (Math.abs(v) < 10 ? oneFmt.format(v) : intFmt.format(v)) : "—"; }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hms(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function hm(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()); }
  function parseTime(s) {
    if (s == null || s === "") return null;
    var t = typeof s === "number" ? s : Date.parse(s);
    return isFinite(t) ? t : null;
  }
  /** "in 2 h 10 min" relative to the stream's own clock (a replay's "now" is not the wall clock). */
  function relTime(ms, nowMs) {
    if (ms == null) return "—";
    var mins = Math.round((ms - nowMs) / 60000);
    if (mins <= 0) return "now";
    if (mins < 1) return "in < 1 min";
    if (mins < 60) return "in " + mins + " min";
    var h = Math.floor(mins / 60), m = mins % 60;
    if (h < 48) return "in " + h + " h" + (m ? " " + m + " min" : "");
    var d = Math.floor(h / 24);
    return "in " + d + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
  }
  function urgencyClass(ms, nowMs) {
    if (ms == null) return "";
    var hours = (ms - nowMs) / 3600000;
    return hours < 1 ? "urgent" : hours < 3 ? "soon" : "later";
  }
  function sevRank(s) { return s in SEVERITY_RANK ? SEVERITY_RANK[s] : 9; }

  // ---------------------------------------------------------------- ordering
  function bySaleUrgency(a, b) {
    var aa = (a.open_alerts || 0) > 0 ? 0 : 1, ba = (b.open_alerts || 0) > 0 ? 0 : 1;
    if (aa !== ba) return aa - ba;
    var as = parseTime(a.projected_stockout_at), bs = parseTime(b.projected_stockout_at);
    as = as == null ? Infinity : as; bs = bs == null ? Infinity : bs;
    if (as !== bs) return as < bs ? -1 : 1;
    var av = isNum(a.velocity_uph) ? a.velocity_uph : -Infinity, bv = isNum(b.velocity_uph) ? b.velocity_uph : -Infinity;
    if (av !== bv) return bv - av;
    return String(a.sale_id) < String(b.sale_id) ? -1 : 1;
  }
  function byAlertUrgency(a, b) {
    var r = sevRank(a.severity) - sevRank(b.severity);
    if (r) return r;
    var as = parseTime(a.projected_stockout_at), bs = parseTime(b.projected_stockout_at);
    as = as == null ? Infinity : as; bs = bs == null ? Infinity : bs;
    if (as !== bs) return as < bs ? -1 : 1;
    return String(a.alert_id) < String(b.alert_id) ? -1 : 1;
  }
  function byProductUrgency(a, b) {
    var aa = a.alert ? 0 : 1, ba = b.alert ? 0 : 1;
    if (aa !== ba) return aa - ba;
    var as = parseTime(a.projected_stockout_at), bs = parseTime(b.projected_stockout_at);
    as = as == null ? Infinity : as; bs = bs == null ? Infinity : bs;
    if (as !== bs) return as < bs ? -1 : 1;
    return (b.velocity_uph || 0) - (a.velocity_uph || 0);
  }

  // ---------------------------------------------------------------- SVG pieces
  function r1(v) { return Math.round(v * 10) / 10; }

  /** "12 min", "2 h 5 min": the span of a sparkline's time axis. */
  function span(ms) {
    var mins = Math.max(1, Math.round(ms / 60000));
    if (mins < 60) return mins + " min";
    var h = Math.floor(mins / 60), m = mins % 60;
    return h + " h" + (m ? " " + m + " min" : "");
  }
  /** Sparkline with its time axis: the first point's age on the left, "now" on the right (stream time). */
  function sparklineWithAxis(series, w, h) {
    var pts = (series || []).filter(function (p) { return p && isNum(p[0]) && isNum(p[1]); });
    var left = pts.length >= 2 ? "−" + span(pts[pts.length - 1][0] - pts[0][0]) : "";
    return '<span class="spark-wrap">' + sparkline(series, w, h) + '<span class="spark-axis" aria-label="time axis">' +
      '<span class="axis-start">' + esc(left) + '</span><span class="axis-end">' + (left ? "now" : "") + "</span></span></span>";
  }

  /** Velocity sparkline from [[epoch_ms, units_per_hour], ...]. */
  function sparkline(series, w, h) {
    var pts = (series || []).filter(function (p) { return p && isNum(p[0]) && isNum(p[1]); });
    var out = '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + " " + h + '" aria-hidden="true">';
    if (pts.length < 2) return out + '<line x1="0" x2="' + w + '" y1="' + (h - 2) + '" y2="' + (h - 2) + '" class="spark-none"/></svg>';
    var t0 = pts[0][0], t1 = pts[pts.length - 1][0], span = Math.max(1, t1 - t0);
    var vmax = 0;
    pts.forEach(function (p) { vmax = Math.max(vmax, p[1]); });
    vmax = vmax > 0 ? vmax * 1.1 : 1;
    var pad = 3, ih = h - pad * 2;
    var xy = pts.map(function (p) {
      return [r1(((p[0] - t0) / span) * (w - 4) + 1), r1(pad + ih - (Math.max(0, p[1]) / vmax) * ih)];
    });
    var line = xy.map(function (p) { return p[0] + "," + p[1]; }).join(" ");
    var area = "M" + xy[0][0] + "," + (h - 1) + " L" + line.replace(/ /g, " L") + " L" + xy[xy.length - 1][0] + "," + (h - 1) + " Z";
    var last = xy[xy.length - 1];
    return out + '<path class="spark-area" d="' + area + '"/><polyline class="spark-line" points="' + line + '"/>' +
      '<circle class="spark-dot" cx="' + last[0] + '" cy="' + last[1] + '" r="2.5"/></svg>';
  }

  /** Forecast band bar: p10-p90 band, p50 tick, expert prior marker, stock line, units sold so far.
   *  The part of the band beyond stock is drawn in the alarm colour: "forecast will outrun stock" at a glance. */
  function bandBar(x, w) {
    var h = 30, top = 6, bh = 16;
    // The band forecasts total demand; "stock" is what is left, so the line sits at sold + left.
    x = Object.assign({}, x, { stock: isNum(x.stock) ? x.stock + (isNum(x.units) ? x.units : 0) : x.stock });
    var vals = [x.p10, x.p50, x.p90, x.expert_prior, x.stock, x.units].filter(isNum);
    var max = Math.max.apply(null, vals.concat([1])) * 1.08;
    function sx(v) { return r1(Math.max(0, Math.min(w, (v / max) * w))); }
    var s = '<svg class="band" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + " " + h + '" role="img" aria-label="' +
      esc(bandLabel(x)) + '"><title>' + esc(bandLabel(x)) + "</title>";
    s += '<rect class="b-track" x="0" y="' + (top + 3) + '" width="' + w + '" height="' + (bh - 6) + '" rx="3"/>';
    if (isNum(x.units)) s += '<rect class="b-sold" x="0" y="' + (top + 3) + '" width="' + sx(x.units) + '" height="' + (bh - 6) + '" rx="3"/>';
    var hasStock = isNum(x.stock) && x.stock > 0;
    if (isNum(x.p10) && isNum(x.p90)) {
      var a = sx(x.p10), b = sx(x.p90), st = hasStock ? sx(x.stock) : Infinity;
      var okEnd = Math.min(b, st);
      if (okEnd > a) s += '<rect class="b-band" x="' + a + '" y="' + top + '" width="' + r1(okEnd - a) + '" height="' + bh + '" rx="2"/>';
      if (b > st) {
        var overStart = Math.max(a, st);
        s += '<rect class="b-over" x="' + overStart + '" y="' + top + '" width="' + r1(b - overStart) + '" height="' + bh + '" rx="2"/>';
      }
    }
    if (isNum(x.p50)) {
      var px = sx(x.p50);
      s += '<line class="b-p50' + (hasStock && x.p50 > x.stock ? " over" : "") + '" x1="' + px + '" x2="' + px + '" y1="' + (top - 3) + '" y2="' + (top + bh + 3) + '"/>';
    }
    if (hasStock) {
      var kx = Math.min(w - 1.5, Math.max(1.5, sx(x.stock)));
      s += '<line class="b-stock" x1="' + kx + '" x2="' + kx + '" y1="0" y2="' + h + '"/>';
    }
    if (isNum(x.expert_prior)) {
      var ex = Math.min(w - 5, Math.max(5, sx(x.expert_prior)));
      s += '<path class="b-prior" d="M' + r1(ex - 5) + "," + (top + bh + 8) + " L" + r1(ex + 5) + "," + (top + bh + 8) + " L" + ex + "," + (top + bh + 1) + ' Z"/>';
    }
    return s + "</svg>";
  }
  function bandLabel(x) {
    return "total demand p10 " + fmtInt(x.p10) + " · p50 " + fmtInt(x.p50) + " · p90 " + fmtInt(x.p90) +
      " · expert prior " + fmtInt(x.expert_prior) + " · sold + stock left " + fmtInt(x.stock) + " · sold " + fmtInt(x.units);
  }
  /** One coverage chip, from the verdict the API computed from the same numbers as the rest of the row, so
   *  that a sale with a product out of stock or an open alert can never read "covered". */
  function coverageChip(x) {
    var c = x.coverage;
    if (c == null) {  // an older worker: derive it the same way (alerts and empty shelves first)
      if (isNum(x.out_of_stock) && x.out_of_stock > 0) c = "out of stock";
      else if ((x.open_alerts || 0) > 0 || x.alert) c = "at risk";
      else if (!isNum(x.p50) || !isNum(x.stock)) c = "unknown";
      else if (x.p50 - (x.units || 0) > x.stock) c = "short";
      else if (isNum(x.p90) && x.p90 - (x.units || 0) > x.stock) c = "tight";
      else c = "covered";
    }
    var text = c, kind = "ok";
    if (c === "out of stock") { kind = "bad"; text = isNum(x.out_of_stock) ? x.out_of_stock + " out of stock" : "out of stock"; }
    else if (c === "at risk") kind = "bad";
    else if (c === "short" || c === "tight") {
      // A sale's verdict comes from its products: its own totals may still fit while one product does not.
      var gap = (c === "short" ? x.p50 : x.p90) - (x.units || 0) - x.stock;
      kind = c === "short" ? "bad" : "warn";
      text = gap > 0 ? (c === "short" ? "short " : "p90 +") + fmtInt(gap) : c === "short" ? "a product short" : "tight";
    }
    else if (c === "unknown") return "";
    return '<span class="chip ' + kind + '" data-coverage="' + esc(c) + '">' + esc(text) + "</span>";
  }
  function bandCaption(x) {
    if (!isNum(x.p50)) return '<div class="cap"><span class="muted">no forecast yet · p50 — · stock ' + fmtInt(x.stock) + "</span>" +
      coverageChip(x) + "</div>";
    return '<div class="cap"><span>p50 <b>' + fmtInt(x.p50) + '</b></span><span>left <b>' + fmtInt(x.stock) + "</b></span>" +
      coverageChip(x) + "</div>";
  }

  // ---------------------------------------------------------------- cells
  function setHTML(el, html) {
    if (el.__html !== html) { el.innerHTML = html; el.__html = html; }
  }
  function stockoutCell(iso, nowMs) {
    var ms = parseTime(iso);
    if (ms == null) return '<div class="rel none">—</div><div class="abs muted">no stockout projected</div>';
    return '<div class="rel ' + urgencyClass(ms, nowMs) + '">' + esc(relTime(ms, nowMs)) + '</div><div class="abs muted">at ' +
      hm(new Date(ms)) + "</div>";
  }
  function brandCell(sale, nowMs) {
    var n = sale.open_alerts || 0;
    var sev = sale.worst_severity;
    var badge = n > 0 ? '<span class="pill sev-' + esc(sev || "unknown") + '">' + n + " alert" + (n > 1 ? "s" : "") +
      (sev ? " · " + esc(sev) : "") + "</span>" : "";
    var frac = isNum(sale.elapsed_fraction) ? Math.max(0, Math.min(1, sale.elapsed_fraction)) : null;
    var ends = parseTime(sale.ends_at);
    var progress = frac == null ? "" :
      '<div class="progress" title="' + Math.round(frac * 100) + '% of the sale elapsed"><i style="width:' + r1(frac * 100) + '%"></i></div>';
    return '<div class="brand-line"><span class="caret" aria-hidden="true"></span><span class="brand">' + esc(sale.brand) + "</span>" + badge + "</div>" +
      '<div class="sub muted"><span class="sale-id">' + esc(sale.sale_id) + "</span>" +
      (ends != null ? " · ends " + esc(relTime(ends, nowMs)) : "") + "</div>" + progress;
  }

  var SALE_COLS = ["c-brand", "c-units", "c-vel", "c-band", "c-stockout"];

  function saleElement(id) {
    var el = document.createElement("div");
    el.className = "sale";
    el.setAttribute("data-sale-id", id);
    var row = document.createElement("div");
    row.className = "sale-row grid-row";
    row.setAttribute("role", "button");
    row.setAttribute("tabindex", "0");
    row.setAttribute("aria-expanded", "false");
    SALE_COLS.forEach(function (c) { var d = document.createElement("div"); d.className = c; row.appendChild(d); });
    var prods = document.createElement("div");
    prods.className = "products";
    prods.hidden = true;
    el.appendChild(row);
    el.appendChild(prods);
    return el;
  }

  function renderSale(el, sale, nowMs) {
    var row = el.firstChild, cells = row.children, open = expanded.has(sale.sale_id);
    el.className = "sale" + (sale.open_alerts > 0 ? " has-alert sev-" + (sale.worst_severity || "unknown") : "") + (open ? " open" : "") +
      (sale.quiet ? " quiet" : "");
    el.setAttribute("data-quiet", sale.quiet ? "true" : "false");
    el.hidden = !!sale.quiet && !showQuiet;
    el.setAttribute("data-units", String(sale.units));
    el.setAttribute("data-open-alerts", String(sale.open_alerts || 0));
    el.setAttribute("data-stockout", sale.projected_stockout_at || "");
    el.setAttribute("data-velocity", String(sale.velocity_uph));
    row.setAttribute("aria-expanded", open ? "true" : "false");
    setHTML(cells[0], brandCell(sale, nowMs));
    setHTML(cells[1], '<span class="units">' + fmtInt(sale.units) + '</span><span class="sub muted">rev ' + fmtMoney(sale.revenue) + "</span>");
    setHTML(cells[2], sparklineWithAxis(sale.velocity_series, 110, 30) + '<span class="vel"><b class="velocity">' + fmtVel(sale.velocity_uph) + "</b><small>u/h</small></span>");
    setHTML(cells[3], bandBar(sale, 300) + bandCaption(sale));
    setHTML(cells[4], stockoutCell(sale.projected_stockout_at, nowMs));
    var prods = el.lastChild;
    prods.hidden = !open;
    setHTML(prods, open ? productsHTML(sale, nowMs) : "");
  }

  function productsHTML(sale, nowMs) {
    var list = (sale.products || []).slice().sort(byProductUrgency);
    if (!list.length) return '<div class="empty">No products reported for this sale.</div>';
    return list.map(function (p) {
      var alert = p.alert ? '<span class="pill st-' + esc(p.alert) + '">' + esc(p.alert) + "</span>" : "";
      return '<div class="product grid-row" data-sku="' + esc(p.sku) + '">' +
        '<div class="c-brand">' + (p.name ? '<span class="p-name">' + esc(p.name) + "</span>" : "") +
        '<span class="sku">' + esc(p.sku) + "</span>" + alert + "</div>" +
        '<div class="c-units"><span class="p-units">' + fmtInt(p.units) + "</span></div>" +
        '<div class="c-vel"><span class="vel"><b>' + fmtVel(p.velocity_uph) + "</b><small>u/h</small></span></div>" +
        '<div class="c-band">' + bandBar(p, 300) + bandCaption(p) + "</div>" +
        '<div class="c-stockout">' + stockoutCell(p.projected_stockout_at, nowMs) + "</div></div>";
    }).join("");
  }

  // ---------------------------------------------------------------- panels
  function quietToggle(box, count) {
    var el = box.querySelector(".quiet-toggle");
    if (!el) {
      el = document.createElement("div");
      el.className = "quiet-toggle";
      el.setAttribute("role", "button");
      el.setAttribute("tabindex", "0");
    }
    el.hidden = count === 0;
    el.setAttribute("aria-expanded", showQuiet ? "true" : "false");
    var text = (showQuiet ? "▾ " : "▸ ") + count + " quiet sale" + (count === 1 ? "" : "s") +
      " (no unit sold yet) · " + (showQuiet ? "hide" : "show");
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  function renderSales(sales, nowMs) {
    var box = document.getElementById("sales");
    var all = (sales || []).slice().sort(bySaleUrgency);
    // Sales with sales first, most urgent first; the quiet ones after a fold, so a wall screen shows what moves.
    var list = all.filter(function (s) { return !s.quiet; }).concat(all.filter(function (s) { return s.quiet; }));
    var quietCount = all.length - all.filter(function (s) { return !s.quiet; }).length;
    var keep = {};
    list.forEach(function (s) { keep[s.sale_id] = true; });
    Array.prototype.slice.call(box.children).forEach(function (child) {
      if (child.classList.contains("quiet-toggle")) return;
      var id = child.getAttribute("data-sale-id");
      if (id == null || !keep[id]) { box.removeChild(child); if (id != null) expanded.delete(id); }
    });
    var existing = {};
    Array.prototype.forEach.call(box.children, function (c) { existing[c.getAttribute("data-sale-id")] = c; });
    var toggleEl = quietToggle(box, quietCount);
    var ordered = [];
    list.forEach(function (sale) {
      if (sale.quiet && ordered.indexOf(toggleEl) < 0) ordered.push(toggleEl);
      var el = existing[sale.sale_id] || saleElement(sale.sale_id);
      renderSale(el, sale, nowMs);
      ordered.push(el);
    });
    if (ordered.indexOf(toggleEl) < 0) ordered.push(toggleEl);
    ordered.forEach(function (el, i) { if (box.children[i] !== el) box.insertBefore(el, box.children[i] || null); });
    if (!list.length) box.innerHTML = '<div class="empty">No open sales right now.</div>';
  }

  function renderAlerts(alerts, salesById, nowMs) {
    var box = document.getElementById("alerts");
    var list = (alerts || []).slice().sort(byAlertUrgency);
    if (!list.length) { setHTML(box, '<li class="empty calm">All clear — no open alerts.</li>'); return; }
    setHTML(box, list.map(function (a) {
      var sale = salesById[a.sale_id];
      var ms = parseTime(a.projected_stockout_at);
      var orderBy = parseTime(a.order_by);
      var product = a.product_name || a.sku;
      var saleName = a.sale_name || (sale ? sale.brand : a.sale_id);
      var deadline = orderBy == null ? "" : orderBy <= nowMs ? '<span class="a-deadline bad">order <b>now</b></span>' :
        '<span class="a-deadline">order by <b>' + hm(new Date(orderBy)) + "</b> (" + esc(relTime(orderBy, nowMs)) + ")</span>";
      return '<li class="alert sev-' + esc(a.severity || "unknown") + '" data-alert-id="' + esc(a.alert_id) +
        '" data-severity="' + esc(a.severity || "") + '" data-stockout="' + esc(a.projected_stockout_at || "") + '">' +
        '<div class="a-top"><span class="pill sev-' + esc(a.severity || "unknown") + '">' + esc(a.severity || "?") + "</span>" +
        '<span class="a-what" title="' + esc(product + " · " + a.sku + " · " + saleName + " (" + a.sale_id + ")") + '"><b>' +
        esc(product) + "</b> · " + esc(saleName) + (a.product_name ? ' <span class="a-sku">' + esc(a.sku) + "</span>" : "") + "</span>" +
        (a.status && a.status !== "open" ? '<span class="pill st-' + esc(a.status) + '">' + esc(a.status) + "</span>" : "") +
        '<span class="a-when ' + urgencyClass(ms, nowMs) + '">' + (ms == null ? "—" : esc(relTime(ms, nowMs))) + "</span></div>" +
        '<div class="a-reason" tabindex="0" title="' + esc(a.reason) + '">' + esc(a.reason || "—") + "</div>" +
        '<div class="a-bottom"><span>reorder <b class="a-qty">' + fmtInt(a.recommended_quantity) + "</b> units</span>" +
        deadline + '<span class="muted">shortfall ' + fmtInt(a.shortfall) + "</span></div></li>";
    }).join(""));
  }

  function setText(id, text) { var el = document.getElementById(id); if (el && el.textContent !== text) el.textContent = text; }

  function render(data) {
    var nowMs = parseTime(data.stream_time);
    if (nowMs == null) nowMs = parseTime(data.generated_at);
    if (nowMs == null) nowMs = Date.now();
    lastData = data;
    lastNow = nowMs;
    var t = data.totals || {};
    setText("totals-open-sales", fmtInt(t.open_sales));
    setText("totals-units", fmtInt(t.units));
    setCurrency(data.currency || "EUR");
    setText("currency", data.currency || "EUR");
    setText("totals-revenue", fmtMoney(t.revenue));
    setText("totals-velocity", fmtVel(t.velocity_uph));
    setText("totals-open-alerts", fmtInt(t.open_alerts));
    setText("totals-events", fmtInt(t.events_processed));
    document.querySelector(".tile-alerts").classList.toggle("hot", (t.open_alerts || 0) > 0);
    var st = parseTime(data.stream_time);
    // One clock unless the stream runs on another one (a replay, a simulation): then that one is shown, labelled.
    var otherClock = st != null && data.stream_is_wall_clock === false;
    document.getElementById("stream-clock").hidden = !otherClock;
    setText("stream-time", st == null ? "—" : (new Date(st)).toISOString().slice(0, 10) + " " + hms(new Date(st)));
    if (t.events_processed !== lastEvents) {
      lastEvents = t.events_processed;
      lastEventsChange = new Date();
      // Live, the stream's clock is the events' time: an old one means the data stopped before this page opened.
      if (data.stream_is_wall_clock && st != null && st < lastEventsChange.getTime()) lastEventsChange = new Date(st);
    }
    var byId = {};
    (data.sales || []).forEach(function (s) { byId[s.sale_id] = s; });
    renderSales(data.sales, nowMs);
    renderAlerts(data.alerts, byId, nowMs);
    document.title = (t.open_alerts ? "(" + t.open_alerts + ") " : "") + "salepulse · live operations";
  }

  // ---------------------------------------------------------------- freshness
  var refreshes = 0;          // successful polls since the page loaded (exposed as <body data-refreshes>)
  function markFresh() {
    lastOk = new Date();
    document.body.setAttribute("data-refreshes", String(++refreshes));
    setText("updated-at", hms(lastOk));
    var badge = document.getElementById("stale");
    document.body.classList.remove("loading");
    if (lastEventsChange && lastOk - lastEventsChange >= STALE_MS) {
      // The API answers, but nothing new arrives: the numbers are not live any more.
      badge.textContent = "no new events since " + hms(lastEventsChange);
      badge.title = "the worker answers but has processed no event for " + Math.round((lastOk - lastEventsChange) / 1000) + " s";
      badge.hidden = false;
      badge.setAttribute("data-reason", "no-events");
      document.body.classList.add("is-stale");
      return;
    }
    badge.hidden = true;
    badge.removeAttribute("data-reason");
    document.body.classList.remove("is-stale");
  }
  function markStale(err) {
    var badge = document.getElementById("stale");
    badge.textContent = lastOk ? "stale since " + hms(lastOk) : "no data yet — retrying";
    badge.setAttribute("data-reason", "api");
    badge.title = String(err && err.message ? err.message : err);
    badge.hidden = false;
    document.body.classList.add("is-stale");
    if (window.console) console.warn("dashboard poll failed:", err);
  }

  function poll() {
    var started = Date.now();
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, TIMEOUT_MS) : null;
    fetch(API_URL, { cache: "no-store", headers: { Accept: "application/json" }, signal: ctl ? ctl.signal : undefined })
      .then(function (res) {
        if (!res.ok) throw new Error("GET " + API_URL + " answered HTTP " + res.status);
        return res.json();
      })
      .then(function (data) { render(data); markFresh(); })
      .catch(markStale)
      .then(function () {
        if (timer) clearTimeout(timer);
        setTimeout(poll, Math.max(50, POLL_MS - (Date.now() - started)));
      });
  }

  // ---------------------------------------------------------------- interaction
  function toggle(row) {
    var el = row.closest("[data-sale-id]");
    if (!el) return;
    var id = el.getAttribute("data-sale-id");
    if (expanded.has(id)) expanded.delete(id); else expanded.add(id);
    var open = expanded.has(id);
    el.classList.toggle("open", open);
    row.setAttribute("aria-expanded", open ? "true" : "false");
    var prods = el.lastChild;
    prods.hidden = !open;
    if (!open) setHTML(prods, "");
    else if (lastData) {
      var sale = (lastData.sales || []).filter(function (s) { return s.sale_id === id; })[0];
      if (sale) setHTML(prods, productsHTML(sale, lastNow));
    }
  }

  function toggleQuiet() {
    showQuiet = !showQuiet;
    if (lastData) renderSales(lastData.sales, lastNow);
  }
  document.getElementById("sales").addEventListener("click", function (ev) {
    if (ev.target.closest(".quiet-toggle")) { toggleQuiet(); return; }
    var row = ev.target.closest(".sale-row");
    if (row) toggle(row);
  });
  document.getElementById("sales").addEventListener("keydown", function (ev) {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    if (ev.target.closest(".quiet-toggle")) { ev.preventDefault(); toggleQuiet(); return; }
    var row = ev.target.closest(".sale-row");
    if (row) { ev.preventDefault(); toggle(row); }
  });

  // ?expand=s-12,s-14 opens sales from the start (handy for screenshots and wall screens)
  var wanted = params.get("expand");
  if (params.get("quiet") === "show") showQuiet = true;
  if (wanted) wanted.split(",").forEach(function (id) { if (id) expanded.add(id.trim()); });

  poll();
})();
