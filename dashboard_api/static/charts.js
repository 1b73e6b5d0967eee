"use strict";
// Hand-written SVG charts: real time and value axes with ticks and labels, the patient's
// alert thresholds as bands, gaps left open. Colours come from app.css classes.

const NS = "http://www.w3.org/2000/svg";
const W = 720;
const H = 230;
const M = { left: 46, right: 16, top: 20, bottom: 30 };
const MINUTE = 60000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
  6 * HOUR, 12 * HOUR, DAY, 2 * DAY];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(span, target) {
  const raw = span / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function valueTicks(lo, hi) {
  const step = niceStep(hi - lo, 5);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
  return ticks;
}

function timeTicks(start, end) {
  const step = TIME_STEPS.find((s) => (end - start) / s <= 8) ?? 2 * DAY;
  // Align to local time: midnight for day steps, whole hours or minutes otherwise.
  const first = new Date(start);
  if (step >= DAY) first.setHours(0, 0, 0, 0);
  else if (step >= HOUR) first.setHours(Math.floor(first.getHours() / (step / HOUR)) * (step / HOUR), 0, 0, 0);
  else first.setMinutes(Math.floor(first.getMinutes() / (step / MINUTE)) * (step / MINUTE), 0, 0);
  const ticks = [];
  for (let t = first.getTime(); t <= end; t += step) if (t >= start) ticks.push(t);
  return { ticks, step };
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayLabel = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short" });

function timeLabel(t, step) {
  const d = new Date(t);
  if (step >= DAY || (d.getHours() === 0 && d.getMinutes() === 0)) return dayLabel.format(d);
  return clock.format(d);
}

function frame(svg, { x0, x1, y0, y1, xTicks, yTicks, xLabel, unit }) {
  const sx = (v) => M.left + ((v - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const axes = el("g", { class: "axes" });
  for (const v of yTicks) {
    axes.append(el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v) }));
    axes.append(el("text", { class: "tick y", x: M.left - 6, y: sy(v) + 4 }, String(v)));
  }
  for (const t of xTicks) {
    axes.append(el("line", { class: "grid", x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom }));
    axes.append(el("text", { class: "tick x", x: sx(t), y: H - M.bottom + 16 }, xLabel(t)));
  }
  axes.append(el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  axes.append(el("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  axes.append(el("text", { class: "unit", x: 4, y: 12 }, unit));
  return { sx, sy, axes };
}

function drawBands(group, bands, y0, y1, sx, sy, x0, x1) {
  for (const band of bands) {
    const lo = Math.max(y0, band.from ?? y0);
    const hi = Math.min(y1, band.to ?? y1);
    if (hi <= lo) continue;
    const rect = el("rect", {
      class: `band band-${band.kind}`,
      "data-band": band.name,
      x: sx(x0), width: sx(x1) - sx(x0), y: sy(hi), height: sy(lo) - sy(hi),
    });
    rect.append(el("title", {}, band.label));
    group.append(rect);
  }
}

function svgRoot(figure, title, description) {
  figure.querySelector("svg")?.remove();
  figure.querySelector(".chart-summary")?.remove();
  const id = figure.id;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-t ${id}-d` });
  svg.append(el("title", { id: `${id}-t` }, title), el("desc", { id: `${id}-d` }, description));
  figure.append(svg);
  const summary = document.createElement("p");
  summary.className = "chart-summary";
  summary.textContent = description;
  figure.append(summary);
  return svg;
}

/**
 * A series over [start, end]: raw points ({t, v}) as a line broken at gaps, or buckets
 * ({t, mean, min, max}) as a mean line over a min-max area. Bands are threshold zones.
 */
export function timeChart(figure, { title, unit, start, end, points, buckets, bands, domain, describe }) {
  const values = points ? points.map((p) => p.v) : buckets.flatMap((b) => [b.min, b.max]);
  const y0 = Math.min(domain[0], ...values.map((v) => Math.floor(v)));
  const y1 = Math.max(domain[1], ...values.map((v) => Math.ceil(v)));
  const { ticks, step } = timeTicks(start, end);
  const svg = svgRoot(figure, title, describe(values));
  const { sx, sy, axes } = frame(svg, {
    x0: start, x1: end, y0, y1, xTicks: ticks, yTicks: valueTicks(y0, y1),
    xLabel: (t) => timeLabel(t, step), unit,
  });
  const bandGroup = el("g", { class: "bands" });
  drawBands(bandGroup, bands, y0, y1, sx, sy, start, end);
  svg.append(bandGroup, axes);

  const data = el("g", { class: "data" });
  const series = points ?? buckets.map((b) => ({ t: b.t, v: b.mean }));
  if (buckets) {
    const area = buckets.map((b) => `${sx(b.t).toFixed(1)},${sy(b.max).toFixed(1)}`)
      .concat([...buckets].reverse().map((b) => `${sx(b.t).toFixed(1)},${sy(b.min).toFixed(1)}`));
    if (area.length) data.append(el("polygon", { class: "spread", points: area.join(" ") }));
  }
  if (series.length) {
    const gaps = series.slice(1).map((p, i) => p.t - series[i].t).sort((a, b) => a - b);
    const typical = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
    const gapLimit = Math.max(3 * typical, 10 * MINUTE);
    let path = "";
    series.forEach((p, i) => {
      const jump = i === 0 || p.t - series[i - 1].t > gapLimit;
      path += `${jump ? "M" : "L"}${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)}`;
    });
    data.append(el("path", { class: "line", d: path }));
    if (series.length <= 300) {
      for (const p of series) data.append(el("circle", { class: "dot", cx: sx(p.t), cy: sy(p.v), r: 2.2 }));
    }
  } else {
    data.append(el("text", { class: "empty", x: W / 2, y: H / 2 }, "No readings in this period"));
  }
  svg.append(data);
}

/** The ambulatory glucose profile: percentile bands by time of day, target range marked. */
export function agpChart(figure, slices, description) {
  const max = Math.max(16, ...slices.map((s) => Math.ceil(s.p95 + 1)));
  const svg = svgRoot(figure, "Ambulatory glucose profile", description);
  const xTicks = [0, 180, 360, 540, 720, 900, 1080, 1260];
  const { sx, sy, axes } = frame(svg, {
    x0: 0, x1: 1440, y0: 0, y1: max, xTicks, yTicks: valueTicks(0, max),
    xLabel: (m) => `${String(Math.floor(m / 60) % 24).padStart(2, "0")}:00`, unit: "mmol/L",
  });
  const bands = el("g", { class: "bands" });
  drawBands(bands, [{ name: "target", kind: "target", from: 3.9, to: 10, label: "Target 3.9–10 mmol/L" }],
    0, max, sx, sy, 0, 1440);
  svg.append(bands, axes);
  if (!slices.length) {
    svg.append(el("text", { class: "empty", x: W / 2, y: H / 2 }, "No CGM readings in the last 14 days"));
    return;
  }
  const mid = (s) => s.minute_of_day + 15;
  const area = (lo, hi) => slices.map((s) => `${sx(mid(s)).toFixed(1)},${sy(s[hi]).toFixed(1)}`)
    .concat([...slices].reverse().map((s) => `${sx(mid(s)).toFixed(1)},${sy(s[lo]).toFixed(1)}`)).join(" ");
  const data = el("g", { class: "data" });
  data.append(el("polygon", { class: "agp-outer", points: area("p5", "p95") }));
  data.append(el("polygon", { class: "agp-inner", points: area("p25", "p75") }));
  data.append(el("polyline", {
    class: "line", points: slices.map((s) => `${sx(mid(s)).toFixed(1)},${sy(s.p50).toFixed(1)}`).join(" "),
  }));
  svg.append(data);
}
