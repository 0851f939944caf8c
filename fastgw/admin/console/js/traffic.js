// Live traffic: what the gateway counts (GET /console/api/stats, the counters /metrics reports), fetched every
// second and drawn as small inline SVG charts of the last minute. Rates and percentiles are of each second's
// difference between two readings, as Prometheus' rate() and histogram_quantile() would compute them.
import { get } from "./api.js";
import { h, page } from "./ui.js";
import { onLeave } from "./app.js";

const POINTS = 60;
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0972d3", "#d91515", "#037f0c", "#8d6605", "#7d3cbd", "#00838f"];

/** The q-quantile (seconds) of per-bucket counts over `bounds` (+Inf last), interpolated within its bucket. */
export function quantile(q, counts, bounds) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const target = q * total;
  let cum = 0;
  for (let i = 0; i < counts.length; i++) {
    if (cum + counts[i] >= target && counts[i] > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i === 0 ? 0 : bounds[i - 1];
      return lo + (bounds[i] - lo) * ((target - cum) / counts[i]);
    }
    cum += counts[i];
  }
  return bounds[bounds.length - 1];
}

const sub = (a, b) => a.map((v, i) => v - (b ? b[i] || 0 : 0));
const fmtMs = (s) => (s === null || s === undefined ? "—" : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);

function chart(id, title, unit) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${POINTS - 1} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const now = h("span", { class: "now" }, "—");
  const legend = h("div", { class: "muted legend" });
  const box = h("figure", { class: "card chart", id: `chart-${id}` }, h("figcaption", {}, h("strong", {}, title), " ", now), svg, legend);
  box.update = (lines) => {
    // lines: [{name, values: [...POINTS], format}]
    const max = Math.max(1e-9, ...lines.flatMap((l) => l.values.filter((v) => v !== null)));
    svg.replaceChildren();
    lines.forEach((l, k) => {
      const pts = l.values.map((v, i) => (v === null ? null : `${i},${100 - (v / max) * 95}`)).filter(Boolean);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[k % COLORS.length]);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
    });
    const last = lines.map((l) => `${l.name ? l.name + " " : ""}${l.format(l.values[l.values.length - 1])}`);
    now.textContent = last.length === 1 ? last[0] : "";
    legend.replaceChildren(...lines.map((l, k) => h("span", { class: `swatch s${k % COLORS.length}` },
      `${l.name || title}: ${l.format(l.values[l.values.length - 1])} `)));
    svg.setAttribute("aria-label", `${title}, the last minute; now ${last.join(", ") || "no data"} ${unit}`);
  };
  return box;
}

export async function show() {
  const history = [];  // one entry a second: {time, rps, p50, p99, statuses: {class: rps}, upstreams: {name: p50}, hit, limited, routes}
  let previous = null;
  const charts = {
    rps: chart("rps", "Requests per second", "requests per second"),
    latency: chart("latency", "Latency (p50, p99)", ""),
    statuses: chart("statuses", "Status codes per second", ""),
    upstream: chart("upstream", "Upstream latency (p50)", ""),
    cache: chart("cache", "Cache hit ratio", ""),
    limited: chart("limited", "Rate-limited requests per second", ""),
  };
  const routeBody = h("tbody", {});
  const routeTable = h("table", { id: "route-traffic" }, h("caption", {}, "Per route, the last second"),
    h("thead", {}, h("tr", {}, ["Route", "Requests/s", "p50", "p99", "Status codes (per second)"].map((t) => h("th", { scope: "col" }, t)))),
    routeBody);
  const status = h("p", { class: "muted", "aria-live": "off" }, "Reading the counters every second…");
  page("Live traffic", status, h("div", { class: "charts" }, Object.values(charts)), h("section", { class: "card" }, routeTable));

  const tick = async () => {
    let s;
    try {
      s = await get("/console/api/stats");
    } catch (err) {
      status.textContent = `Cannot read the counters: ${err.message}`;
      return;
    }
    if (previous) record(previous, s);
    previous = s;
  };

  function record(a, b) {
    const dt = Math.max(0.001, b.time - a.time);
    const key = (r, n) => r.slice(0, n).join("\u0000");
    const before = new Map(a.series.map((r) => [key(r, 3), r]));
    const routes = new Map();
    let total = 0;
    let allBuckets = null;
    const classes = {};
    for (const r of b.series) {
      const old = before.get(key(r, 3));
      const count = r[3] - (old ? old[3] : 0);
      if (count <= 0) continue;
      const buckets = sub(r.slice(7), old && old.slice(7));
      const name = r[0] || "(no route)";
      const e = routes.get(name) || { count: 0, buckets: buckets.map(() => 0), statuses: {} };
      e.count += count;
      e.buckets = e.buckets.map((v, i) => v + buckets[i]);
      e.statuses[r[2]] = (e.statuses[r[2]] || 0) + count;
      routes.set(name, e);
      total += count;
      allBuckets = allBuckets ? allBuckets.map((v, i) => v + buckets[i]) : buckets;
      const cls = `${String(r[2])[0]}xx`;
      classes[cls] = (classes[cls] || 0) + count / dt;
    }
    const upBefore = new Map(a.upstreams.map((r) => [key(r, 2), r]));
    const ups = {};
    for (const r of b.upstreams) {
      const old = upBefore.get(key(r, 2));
      const buckets = sub(r.slice(4), old && old.slice(4));
      const u = r[0];
      ups[u] = ups[u] ? ups[u].map((v, i) => v + buckets[i]) : buckets;
    }
    const sumBy = (rows, pred) => rows.filter(pred).reduce((x, r) => x + r[2], 0);
    const hits = sumBy(b.cache, (r) => r[1] === "HIT") - sumBy(a.cache, (r) => r[1] === "HIT");
    const looked = sumBy(b.cache, () => true) - sumBy(a.cache, () => true);
    const refused = sumBy(b.limits, (r) => r[1] === "refused") - sumBy(a.limits, (r) => r[1] === "refused");
    history.push({
      rps: total / dt,
      p50: allBuckets ? quantile(0.5, allBuckets, b.buckets) : null,
      p99: allBuckets ? quantile(0.99, allBuckets, b.buckets) : null,
      classes,
      ups: Object.fromEntries(Object.entries(ups).map(([u, c]) => [u, quantile(0.5, c, b.buckets)])),
      hit: looked > 0 ? hits / looked : null,
      limited: refused / dt,
    });
    while (history.length > POINTS) history.shift();
    draw(routes, dt, b);
  }

  function series(fn) {
    const values = history.map(fn);
    return [...Array(POINTS - values.length).fill(null), ...values];
  }

  function draw(routes, dt, b) {
    const rate = (v) => (v === null ? "—" : `${v.toFixed(1)}/s`);
    const pct = (v) => (v === null ? "—" : `${(v * 100).toFixed(0)} %`);
    charts.rps.update([{ name: "", values: series((p) => p.rps), format: rate }]);
    charts.latency.update([{ name: "p50", values: series((p) => p.p50), format: fmtMs },
                           { name: "p99", values: series((p) => p.p99), format: fmtMs }]);
    const classes = [...new Set(history.flatMap((p) => Object.keys(p.classes)))].sort();
    charts.statuses.update(classes.map((c) => ({ name: c, values: series((p) => p.classes[c] || 0), format: rate })));
    const ups = [...new Set(history.flatMap((p) => Object.keys(p.ups)))].sort();
    charts.upstream.update(ups.map((u) => ({ name: u, values: series((p) => p.ups[u] ?? null), format: fmtMs })));
    charts.cache.update([{ name: "", values: series((p) => p.hit), format: pct }]);
    charts.limited.update([{ name: "", values: series((p) => p.limited), format: rate }]);
    routeBody.replaceChildren(...[...routes.entries()].sort().map(([name, e]) => h("tr", {},
      h("td", {}, name), h("td", { class: "rps" }, (e.count / dt).toFixed(1)),
      h("td", {}, fmtMs(quantile(0.5, e.buckets, b.buckets))), h("td", {}, fmtMs(quantile(0.99, e.buckets, b.buckets))),
      h("td", { class: "statuses" }, Object.entries(e.statuses).map(([st, n]) => `${st}: ${(n / dt).toFixed(1)}`).join(" · ")))));
    if (!routes.size) routeBody.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No requests in the last second.")));
    status.textContent = `${b.connections} open connection(s) · updated ${new Date(b.time * 1000).toLocaleTimeString()}`;
  }

  await tick();
  const timer = setInterval(tick, 1000);
  onLeave(() => clearInterval(timer));
}
