"use strict";
// The consensus CGM figures (Battelino et al. 2019/2023) as the patient view and the AGP
// report show them: time in ranges as a stacked bar with each range's share, time per day and
// target, and the metrics beside their targets. Values in the user's glucose unit.
import { duration } from "./format.js";
import { glucoseText, glucoseUnit, lines } from "./units.js";

const h = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
};

const pct = (v) => (v === null || v === undefined ? "–" : `${v < 10 && v > 0 ? v.toFixed(1) : Math.round(v)} %`);

/** The five ranges, top to bottom as the consensus bar draws them. */
export function ranges() {
  const u = glucoseUnit();
  const f = (v) => (u === "mg/dL" ? String(v) : v.toFixed(1));
  const raw = lines();
  const l = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, f(v)]));
  const above = (v) => f(u === "mg/dL" ? raw[v] + 1 : raw[v] + 0.1);
  const below = (v) => f(u === "mg/dL" ? raw[v] - 1 : raw[v] - 0.1);
  return [
    { key: "very_high", name: "Very high", span: `above ${l.veryHigh} ${u}`, target: "< 5 %", ok: (v) => v < 5 },
    { key: "high", name: "High", span: `${above("high")}–${l.veryHigh} ${u}`, target: "< 25 % with very high", ok: null },
    { key: "target", name: "Target range", span: `${l.low}–${l.high} ${u}`, target: "> 70 %", ok: (v) => v > 70 },
    { key: "low", name: "Low", span: `${l.veryLow}–${below("low")} ${u}`, target: "< 4 % with very low", ok: null },
    { key: "very_low", name: "Very low", span: `below ${l.veryLow} ${u}`, target: "< 1 %", ok: (v) => v < 1 },
  ];
}

/** Time in ranges: a stacked bar (drawn, hidden from screen readers) and the same as a list. */
export function timeInRanges(s) {
  const box = h("div", { class: "tir" });
  if (!s.time_in_ranges) {
    box.append(h("p", {}, "No CGM readings in this period."));
    return box;
  }
  const bar = h("div", { class: "tir-bar", "aria-hidden": "true" });
  const list = h("ul", { class: "tir-list", "aria-label": "Time in ranges" });
  for (const r of ranges()) {
    const v = s.time_in_ranges[r.key];
    const segment = h("div", { class: `tir-seg tir-${r.key}` });
    segment.style.flexGrow = String(v); // CSSOM, allowed by the style-src 'self' policy
    bar.append(segment);
    const perDay = v > 0 ? duration((v / 100) * 24 * 60) : "0 min";
    const off = r.ok && !r.ok(v);
    const item = h("li", { class: `tir-item${off ? " off-target" : ""}` },
      h("span", { class: `swatch tir-${r.key}`, "aria-hidden": "true" }),
      h("span", { class: "tir-name" }, `${r.name} `, h("small", {}, r.span)),
      h("strong", { class: "tir-value" }, pct(v)),
      h("span", { class: "tir-time" }, `${perDay} a day`),
      h("span", { class: "tir-goal" }, `goal ${r.target}${off ? " (not met)" : ""}`));
    list.append(item);
  }
  const below = s.below_3_9_pct;
  const above = s.above_10_pct;
  list.append(h("li", { class: `tir-item combined${below >= 4 ? " off-target" : ""}` },
    h("span", { class: "tir-name" }, "Low and very low together"), h("strong", { class: "tir-value" }, pct(below)),
    h("span", { class: "tir-goal" }, `goal < 4 %${below >= 4 ? " (not met)" : ""}`)));
  list.append(h("li", { class: `tir-item combined${above >= 25 ? " off-target" : ""}` },
    h("span", { class: "tir-name" }, "High and very high together"), h("strong", { class: "tir-value" }, pct(above)),
    h("span", { class: "tir-goal" }, `goal < 25 %${above >= 25 ? " (not met)" : ""}`)));
  box.append(bar, list);
  return box;
}

/** The metrics table: value beside the consensus target, off-target ones marked in words. */
export function metricsTable(s) {
  const rows = [
    ["Days of CGM data", `${s.days_with_data} of ${s.days}`, null, ""],
    ["CGM active (data sufficiency)", `${s.data_sufficiency_pct.toFixed(0)} % of ${s.interval_s / 60}-minute intervals`,
      s.sufficient, "≥ 70 %"],
    ["CGM readings", String(s.readings), null, ""],
    ["Mean glucose", s.mean_mmol_l == null ? "–" : glucoseText(s.mean_mmol_l), null, ""],
    ["Glucose management indicator (GMI)", pct(s.gmi_pct), null, "individual"],
    ["Glucose variability (CV)", pct(s.cv_pct), s.cv_pct == null ? null : s.cv_pct <= 36, "≤ 36 %"],
  ];
  const table = h("table", { class: "metrics" });
  const head = table.createTHead().insertRow();
  for (const t of ["Metric", "Value", "Goal"]) head.append(h("th", { scope: "col" }, t));
  const body = table.createTBody();
  for (const [label, value, ok, target] of rows) {
    const row = body.insertRow();
    row.append(h("th", { scope: "row" }, label));
    const cell = row.insertCell();
    cell.textContent = value;
    if (ok === false && s.readings > 0) { cell.classList.add("off-target"); cell.append(" (goal not met)"); }
    row.insertCell().textContent = target;
  }
  return table;
}

/** The warning a report needs when CGM data covers less than the consensus minimum. */
export function sufficiencyNote(s) {
  if (s.sufficient) return null;
  return h("p", { class: "note", role: "note" },
    `CGM data covers ${s.data_sufficiency_pct.toFixed(0)} % of this period, under the 70 % the consensus asks for: `
    + "read these figures with care.");
}
