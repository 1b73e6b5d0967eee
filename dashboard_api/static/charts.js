"use strict";
// Hand-written SVG charts, drawn at the width of their box (redrawn when it changes, so text
// stays readable on a phone): real time and value axes with ticks and labels, threshold bands,
// gaps left open, flagged readings as distinct points, a dashed forecast, event markers.
// Values arrive in display units; colours come from app.css classes.

const NS = "http://www.w3.org/2000/svg";
const MINUTE = 60000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
  6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

export function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- responsive drawing ------------------------------------------------------------------
const drawers = new WeakMap();
const resizer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver((entries) => {
  for (const entry of entries) {
    const d = drawers.get(entry.target);
    const width = Math.round(entry.contentRect.width);
    if (d && width > 0 && Math.abs(width - d.width) > 2) { d.width = width; d.draw(width); }
  }
});
/** Draw `draw(width)` into `figure` now and whenever its width changes. */
function responsive(figure, draw) {
  const width = Math.round(figure.getBoundingClientRect().width) || 720;
  drawers.set(figure, { width, draw });
  resizer?.observe(figure);
  draw(width);
}

function niceStep(span, target) {
  const raw = span / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

export function valueTicks(lo, hi, count = 5) {
  const step = niceStep(hi - lo, count);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
  return ticks;
}

function timeTicks(start, end, most) {
  const step = TIME_STEPS.find((s) => (end - start) / s <= most) ?? 7 * DAY;
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
const dayLabel = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });

function timeLabel(t, step) {
  const d = new Date(t);
  if (step >= DAY || (d.getHours() === 0 && d.getMinutes() === 0)) return dayLabel.format(d);
  return clock.format(d);
}

function frame(svg, size, { x0, x1, y0, y1, xTicks, yTicks, xLabel, yLabel = String, unit }) {
  const { W, H, M } = size;
  const sx = (v) => M.left + ((v - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (v) => H - M.bottom - ((v - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const axes = el("g", { class: "axes" });
  for (const v of yTicks) {
    axes.append(el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v) }));
    axes.append(el("text", { class: "tick y", x: M.left - 5, y: sy(v) + 4 }, yLabel(v)));
  }
  for (const t of xTicks) {
    axes.append(el("line", { class: "grid", x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom }));
    const edge = sx(t) > W - M.right - 16 ? " end" : "";
    axes.append(el("text", { class: `tick x${edge}`, x: sx(t), y: H - M.bottom + 15 }, xLabel(t)));
  }
  axes.append(el("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  axes.append(el("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  if (unit) axes.append(el("text", { class: "unit", x: 2, y: 11 }, unit));
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

function svgRoot(figure, W, H, title, description) {
  figure.querySelector(":scope > svg")?.remove();
  figure.querySelector(":scope > .chart-summary")?.remove();
  const id = figure.id;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": `${id}-t ${id}-d` });
  svg.append(el("title", { id: `${id}-t` }, title), el("desc", { id: `${id}-d` }, description));
  const caption = figure.querySelector("figcaption");
  if (caption) caption.after(svg); else figure.prepend(svg);
  const summary = document.createElement("p");
  summary.className = "chart-summary";
  summary.textContent = description;
  svg.after(summary);
  return svg;
}

function sizeFor(width, height) {
  const narrow = width < 520;
  return { W: width, H: height ?? (narrow ? 200 : 230), M: { left: narrow ? 34 : 42, right: 10, top: 20, bottom: 26 } };
}

function linePath(series, sx, sy, gapLimit) {
  let path = "";
  series.forEach((p, i) => {
    const jump = i === 0 || p.t - series[i - 1].t > gapLimit;
    path += `${jump ? "M" : "L"}${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)}`;
  });
  return path;
}

function typicalGap(series) {
  const gaps = series.slice(1).map((p, i) => p.t - series[i].t).sort((a, b) => a - b);
  const typical = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
  return Math.max(3 * typical, 10 * MINUTE);
}

/**
 * A series over [start, end]: raw points ({t, v, flag?}) as a line broken at gaps, flagged
 * points (artefacts) drawn apart and left out of the line; or buckets ({t, mean, min, max}) as
 * a mean line over a min-max area. Bands are threshold zones; `forecast` ({points: [{t, v}],
 * label}) is drawn dashed past the last reading; `markers` ({t, kind, label}) are events.
 */
export function timeChart(figure, opts) {
  responsive(figure, (width) => drawTimeChart(figure, width, opts));
}

function drawTimeChart(figure, width, { title, unit, start, end, points, buckets, bands, domain, describe, forecast, markers = [], digits = 0 }) {
  const size = sizeFor(width);
  const { W, H, M } = size;
  const clean = points ? points.filter((p) => !p.flag) : null;
  const flagged = points ? points.filter((p) => p.flag) : [];
  const values = points ? points.map((p) => p.v) : buckets.flatMap((b) => [b.min, b.max]);
  const ahead = forecast?.points ?? [];
  const all = values.concat(ahead.map((p) => p.v));
  const y0 = Math.min(domain[0], ...all.map((v) => Math.floor(v)));
  const y1 = Math.max(domain[1], ...all.map((v) => Math.ceil(v)));
  const x1 = Math.max(end, ...ahead.map((p) => p.t));
  const { ticks, step } = timeTicks(start, x1, Math.max(3, Math.floor((W - M.left) / 80)));
  const svg = svgRoot(figure, W, H, title, describe(values));
  const { sx, sy, axes } = frame(svg, size, {
    x0: start, x1, y0, y1, xTicks: ticks, yTicks: valueTicks(y0, y1, H < 210 ? 4 : 5),
    xLabel: (t) => timeLabel(t, step), unit,
  });
  const bandGroup = el("g", { class: "bands" });
  drawBands(bandGroup, bands, y0, y1, sx, sy, start, x1);
  svg.append(bandGroup, axes);

  const data = el("g", { class: "data" });
  const series = clean ?? buckets.map((b) => ({ t: b.t, v: b.mean }));
  if (buckets) {
    const area = buckets.map((b) => `${sx(b.t).toFixed(1)},${sy(b.max).toFixed(1)}`)
      .concat([...buckets].reverse().map((b) => `${sx(b.t).toFixed(1)},${sy(b.min).toFixed(1)}`));
    if (area.length) data.append(el("polygon", { class: "spread", points: area.join(" ") }));
  }
  if (series.length) {
    data.append(el("path", { class: "line", d: linePath(series, sx, sy, typicalGap(series)) }));
    if (series.length <= 300) {
      for (const p of series) data.append(el("circle", { class: "dot", cx: sx(p.t), cy: sy(p.v), r: 2.2 }));
    }
  } else if (!flagged.length) {
    data.append(el("text", { class: "empty", x: W / 2, y: H / 2 }, "No readings in this period"));
  }
  for (const p of flagged) {
    const mark = el("g", { class: `flagged flag-${p.flag}`, transform: `translate(${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)})` });
    mark.append(el("path", { d: "M-4,-4L4,4M-4,4L4,-4" }));
    mark.append(el("title", {}, `${p.v.toFixed(digits)} ${unit} at ${clock.format(new Date(p.t))}, flagged as ${p.flag}: not used for alerts`));
    data.append(mark);
  }
  if (ahead.length) {
    const now = Math.min(end, ahead[0].t);
    data.append(el("rect", { class: "future", x: sx(now), y: M.top, width: Math.max(0, sx(x1) - sx(now)), height: H - M.top - M.bottom }));
    data.append(el("path", { class: "forecast", d: linePath(ahead, sx, sy, Infinity) }));
    const last = ahead.at(-1);
    data.append(el("circle", { class: "forecast-end", cx: sx(last.t), cy: sy(last.v), r: 3 }));
    const label = el("text", { class: "forecast-label", x: Math.min(sx(last.t), W - M.right) - 2, y: M.top + 12 }, forecast.label);
    data.append(label);
  }
  for (const m of markers) {
    if (m.t < start || m.t > x1) continue;
    const x = sx(m.t);
    const g = el("g", { class: `marker marker-${m.kind}`, "data-marker": m.kind });
    g.append(el("line", { x1: x, x2: x, y1: M.top, y2: H - M.bottom }));
    g.append(el("path", { d: `M${x - 5},${M.top - 1}L${x + 5},${M.top - 1}L${x},${M.top + 7}Z` }));
    g.append(el("title", {}, m.label));
    data.append(g);
  }
  svg.append(data);
}

/**
 * The ambulatory glucose profile: the 5-95 % and 25-75 % bands and the median by time of day
 * (slices: {minute_of_day, p5, p25, p50, p75, p95} in display units), the target lines marked.
 */
export function agpChart(figure, { slices, unit, target, top, description, height }) {
  responsive(figure, (width) => {
    const size = sizeFor(width, height);
    const { W, H } = size;
    const max = Math.max(top, ...slices.map((s) => s.p95));
    const svg = svgRoot(figure, W, H, "Ambulatory glucose profile", description);
    const hours = W < 520 ? [0, 360, 720, 1080, 1440] : [0, 180, 360, 540, 720, 900, 1080, 1260, 1440];
    const { sx, sy, axes } = frame(svg, size, {
      x0: 0, x1: 1440, y0: 0, y1: max, xTicks: hours, yTicks: valueTicks(0, max),
      xLabel: (m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:00`, unit,
    });
    const bands = el("g", { class: "bands" });
    drawBands(bands, [{ name: "target", kind: "target", from: target[0], to: target[1], label: `Target ${target[0]}–${target[1]} ${unit}` }],
      0, max, sx, sy, 0, 1440);
    for (const v of target) bands.append(el("line", { class: "target-line", x1: sx(0), x2: sx(1440), y1: sy(v), y2: sy(v) }));
    svg.append(bands, axes);
    if (!slices.length) {
      svg.append(el("text", { class: "empty", x: W / 2, y: H / 2 }, "No CGM readings in this period"));
      return;
    }
    const mid = (s) => s.minute_of_day + 15;
    const area = (lo, hi) => slices.map((s) => `${sx(mid(s)).toFixed(1)},${sy(s[hi]).toFixed(1)}`)
      .concat([...slices].reverse().map((s) => `${sx(mid(s)).toFixed(1)},${sy(s[lo]).toFixed(1)}`)).join(" ");
    const data = el("g", { class: "data" });
    data.append(el("polygon", { class: "agp-outer", points: area("p5", "p95") }));
    data.append(el("polygon", { class: "agp-inner", points: area("p25", "p75") }));
    const curve = (key, cls) => data.append(el("polyline", {
      class: cls, points: slices.map((s) => `${sx(mid(s)).toFixed(1)},${sy(s[key]).toFixed(1)}`).join(" "),
    }));
    curve("p5", "agp-edge"); curve("p95", "agp-edge");
    curve("p50", "line agp-median");
    svg.append(data);
  });
}

let clipIds = 0;
/**
 * One day's glucose (points: {minute_of_day, v} in display units) from midnight to midnight:
 * the line red where it is below the low line and amber above the high one.
 */
export function dayChart(figure, { points, unit, target, top, title, description }) {
  responsive(figure, (width) => {
    const size = { W: width, H: 96, M: { left: 28, right: 4, top: 6, bottom: 16 } };
    const { W, H, M } = size;
    const svg = svgRoot(figure, W, H, title, description);
    const { sx, sy, axes } = frame(svg, size, {
      x0: 0, x1: 1440, y0: 0, y1: top, xTicks: [0, 360, 720, 1080, 1440], yTicks: target,
      xLabel: (m) => (width < 200 ? String(Math.floor(m / 60)) : `${String(Math.floor(m / 60)).padStart(2, "0")}:00`),
    });
    const bands = el("g", { class: "bands" });
    drawBands(bands, [{ name: "target", kind: "target", from: target[0], to: target[1], label: `Target ${target[0]}–${target[1]} ${unit}` }],
      0, top, sx, sy, 0, 1440);
    svg.append(bands, axes);
    if (!points.length) {
      svg.append(el("text", { class: "empty small", x: (W + M.left) / 2, y: H / 2 }, "no data"));
      return;
    }
    const series = points.map((p) => ({ t: p.minute_of_day * MINUTE, v: Math.min(p.v, top) }));
    const d = linePath(series, (t) => sx(t / MINUTE), sy, 15 * MINUTE);
    const n = ++clipIds;
    const defs = el("defs");
    const low = el("clipPath", { id: `clip-low-${n}` });
    low.append(el("rect", { x: 0, y: sy(target[0]), width: W, height: H }));
    const high = el("clipPath", { id: `clip-high-${n}` });
    high.append(el("rect", { x: 0, y: 0, width: W, height: sy(target[1]) }));
    defs.append(low, high);
    const data = el("g", { class: "data" });
    data.append(defs, el("path", { class: "line day", d }));
    data.append(el("path", { class: "line day-low", d, "clip-path": `url(#clip-low-${n})` }));
    data.append(el("path", { class: "line day-high", d, "clip-path": `url(#clip-high-${n})` }));
    svg.append(data);
  });
}
