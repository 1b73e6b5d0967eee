"use strict";
// One patient: glucose, SpO2 and pulse over 3 h to 14 d with the patient's own threshold
// bands, the consensus CGM summary with the AGP, and the thresholds form.
import { agpChart, timeChart } from "./charts.js";
import { absolute } from "./format.js";

const $ = (sel) => document.querySelector(sel);
const HOUR = 3600000;
const RANGES = {
  "3h": { ms: 3 * HOUR, bucket: null },
  "24h": { ms: 24 * HOUR, bucket: null },
  "7d": { ms: 7 * 24 * HOUR, bucket: "15m" },
  "14d": { ms: 14 * 24 * HOUR, bucket: "30m" },
};
const SPO2_SCALES = { 1: [93, 91], 2: [87, 85] };
const CHARTS = {
  glucose: { title: "Glucose", unit: "mmol/L", domain: [2, 16], digits: 1 },
  spo2: { title: "SpO2", unit: "%", domain: [84, 100], digits: 0 },
  pulse: { title: "Pulse", unit: "/min", domain: [35, 140], digits: 0 },
};
const FIELDS = ["glucose_urgent_low", "glucose_low", "glucose_high", "spo2_scale", "spo2_warning", "spo2_urgent",
  "pulse_low_urgent", "pulse_low_warning", "pulse_high_warning", "pulse_high_urgent", "warning_after"];

export function bandsFor(code, t) {
  if (code === "glucose") {
    return [
      { name: "target", kind: "target", from: 3.9, to: 10, label: "Target range 3.9–10 mmol/L" },
      { name: "urgent-low", kind: "urgent", to: t.glucose_urgent_low, label: `Urgent: below ${t.glucose_urgent_low} mmol/L` },
      { name: "low", kind: "warning", from: t.glucose_urgent_low, to: t.glucose_low, label: `Warning: below ${t.glucose_low} mmol/L` },
      { name: "high", kind: "warning", from: t.glucose_high, label: `Warning: above ${t.glucose_high} mmol/L` },
    ];
  }
  if (code === "spo2") {
    const [warning, urgent] = SPO2_SCALES[t.spo2_scale];
    const w = t.spo2_warning ?? warning;
    const u = t.spo2_urgent ?? urgent;
    return [
      { name: "urgent-low", kind: "urgent", to: u, label: `Urgent: at or below ${u} % (NEWS2 scale ${t.spo2_scale})` },
      { name: "low", kind: "warning", from: u, to: w, label: `Warning: at or below ${w} %` },
    ];
  }
  return [
    { name: "urgent-low", kind: "urgent", to: t.pulse_low_urgent, label: `Urgent: at or below ${t.pulse_low_urgent} /min` },
    { name: "low", kind: "warning", from: t.pulse_low_urgent, to: t.pulse_low_warning, label: `Warning: at or below ${t.pulse_low_warning} /min` },
    { name: "high", kind: "warning", from: t.pulse_high_warning, to: t.pulse_high_urgent, label: `Warning: at or above ${t.pulse_high_warning} /min` },
    { name: "urgent-high", kind: "urgent", from: t.pulse_high_urgent, label: `Urgent: at or above ${t.pulse_high_urgent} /min` },
  ];
}

function describe(code, values, latest) {
  const c = CHARTS[code];
  if (!values.length) return `${c.title}: no readings in this period.`;
  const f = (v) => v.toFixed(c.digits);
  const last = latest ? ` Latest ${f(latest.v)} ${c.unit} at ${absolute(new Date(latest.t).toISOString())}.` : "";
  return `${c.title}: ${values.length} values from ${f(Math.min(...values))} to ${f(Math.max(...values))} ${c.unit}.${last}`;
}

const pct = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(1)} %`);

const METRICS = [
  ["Time in range 3.9–10 mmol/L", (s) => pct(s.in_range_pct), (s) => s.in_range_pct > 70, "> 70 %"],
  ["Below 3.9 mmol/L", (s) => pct(s.below_3_9_pct), (s) => s.below_3_9_pct < 4, "< 4 %"],
  ["Below 3.0 mmol/L", (s) => pct(s.below_3_0_pct), (s) => s.below_3_0_pct < 1, "< 1 %"],
  ["Above 10 mmol/L", (s) => pct(s.above_10_pct), (s) => s.above_10_pct < 25, "< 25 %"],
  ["Above 13.9 mmol/L", (s) => pct(s.above_13_9_pct), (s) => s.above_13_9_pct < 5, "< 5 %"],
  ["Mean glucose", (s) => (s.mean_mmol_l == null ? "–" : `${s.mean_mmol_l.toFixed(1)} mmol/L`), null, ""],
  ["GMI", (s) => pct(s.gmi_pct), null, ""],
  ["Coefficient of variation", (s) => pct(s.cv_pct), (s) => s.cv_pct <= 36, "≤ 36 %"],
  ["Data sufficiency", (s) => `${s.data_sufficiency_pct.toFixed(0)} % (${s.readings} of ${s.expected_readings})`,
    (s) => s.data_sufficiency_pct >= 70, "≥ 70 %"],
];

export function createPatientView({ api }) {
  let patient = null;
  let range = "24h";
  let thresholds = null;
  let series = {};
  let loadToken = 0;

  function renderCharts() {
    const end = Date.now();
    const start = end - RANGES[range].ms;
    for (const [code, c] of Object.entries(CHARTS)) {
      const data = series[code] ?? { points: [] };
      const values = data.points ? data.points.map((p) => p.v) : data.buckets.map((b) => b.mean);
      const last = data.points ? data.points.at(-1) : data.buckets.at(-1) && { t: data.buckets.at(-1).t, v: data.buckets.at(-1).mean };
      timeChart($(`#chart-${code}`), {
        title: `${c.title}, ${range}`, unit: c.unit, start, end, domain: c.domain,
        points: data.points, buckets: data.buckets,
        bands: thresholds ? bandsFor(code, thresholds) : [],
        describe: () => describe(code, values, last),
      });
    }
  }

  async function loadCharts() {
    const mine = ++loadToken;
    const end = new Date();
    const start = new Date(end.getTime() - RANGES[range].ms);
    const { bucket } = RANGES[range];
    const results = await Promise.all(Object.keys(CHARTS).map(async (code) => {
      const q = new URLSearchParams({ code, from: start.toISOString(), to: end.toISOString() });
      if (bucket) q.set("bucket", bucket);
      const rows = await api(`/api/v1/patients/${patient.id}/observations?${q}`);
      if (bucket) {
        return [code, { buckets: rows.map((r) => ({ t: Date.parse(r.bucket), mean: r.mean, min: r.min, max: r.max })) }];
      }
      const ok = rows.filter((r) => !r.quality.includes("implausible"));
      return [code, { points: ok.map((r) => ({ t: Date.parse(r.measured_at), v: r.value })) }];
    }));
    if (mine !== loadToken) return; // a newer load (other patient or range) won
    series = Object.fromEntries(results);
    renderCharts();
  }

  async function loadSummary() {
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const s = await api(`/api/v1/patients/${patient.id}/glucose-summary?days=14&tz=${encodeURIComponent(tz)}`);
    const table = document.createElement("table");
    table.className = "metrics";
    const head = table.createTHead().insertRow();
    for (const h of ["Metric", "Value", "Target"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = h;
      head.append(th);
    }
    const body = table.createTBody();
    for (const [label, value, ok, target] of METRICS) {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.append(th);
      const cell = row.insertCell();
      cell.textContent = value(s);
      if (ok && s.readings > 0 && !ok(s)) { cell.classList.add("off-target"); cell.append(" (outside target)"); }
      row.insertCell().textContent = target;
    }
    const container = $("#cgm-summary");
    container.replaceChildren(table);
    if (s.data_sufficiency_pct < 70) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "Fewer than 70 % of the expected CGM readings are present: read these figures with care.";
      container.append(note);
    }
    agpChart($("#chart-agp"), s.agp,
      s.agp.length ? `Median glucose by time of day ranges from ${Math.min(...s.agp.map((a) => a.p50)).toFixed(1)} to ${Math.max(...s.agp.map((a) => a.p50)).toFixed(1)} mmol/L (${s.timezone}).`
        : "No CGM readings in the last 14 days.");
  }

  function fillForm(t) {
    const form = $("#thresholds-form");
    for (const name of FIELDS) form.elements[name].value = t[name] ?? "";
  }

  async function loadThresholds() {
    const h = await api(`/api/v1/patients/${patient.id}/thresholds`);
    thresholds = h.current.thresholds;
    fillForm(thresholds);
    const c = h.current;
    $("#thresholds-version").textContent = c.version
      ? `version ${c.version}, by ${c.changed_by}, ${absolute(c.changed_at)}` : "defaults (never changed)";
  }

  async function saveThresholds(event) {
    event.preventDefault();
    const form = event.target;
    $("#thresholds-error").textContent = "";
    $("#thresholds-saved").textContent = "";
    const body = {};
    for (const name of FIELDS) {
      const raw = form.elements[name].value.trim();
      if (raw === "") {
        if (name === "spo2_warning" || name === "spo2_urgent") { body[name] = null; continue; }
        $("#thresholds-error").textContent = `${form.elements[name].closest("label").textContent.trim()}: a value is needed.`;
        form.elements[name].focus();
        return;
      }
      body[name] = Number(raw);
    }
    try {
      const saved = await api(`/api/v1/patients/${patient.id}/thresholds`, { method: "PUT", body: JSON.stringify(body) });
      thresholds = saved.thresholds;
      $("#thresholds-saved").textContent = `Saved as version ${saved.version}. New readings are judged against them.`;
      $("#thresholds-version").textContent = `version ${saved.version}, by ${saved.changed_by}, ${absolute(saved.changed_at)}`;
      renderCharts();
    } catch (error) {
      $("#thresholds-error").textContent = error.message;
    }
  }

  async function load() {
    $("#patient-error").textContent = "";
    try {
      await loadThresholds();
      await Promise.all([loadCharts(), loadSummary()]);
    } catch (error) {
      $("#patient-error").textContent = `Could not load this patient's data: ${error.message}`;
    }
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", async () => {
      range = button.dataset.range;
      for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b === button));
      try { await loadCharts(); } catch (error) { $("#patient-error").textContent = error.message; }
    });
  }
  $("#thresholds-form").addEventListener("submit", saveThresholds);
  $("#patient-close").addEventListener("click", () => {
    const id = patient?.id;
    patient = null;
    $("#patient").hidden = true;
    document.querySelector(`#patients [data-patient="${id}"]`)?.focus();
  });

  return {
    get id() { return patient?.id ?? null; },
    async open(p) {
      patient = p;
      series = {};
      $("#patient").hidden = false;
      $("#patient-name").textContent = p.name;
      $("#patient-details").textContent =
        `NHS number ${p.nhs_number} · born ${p.birth_date} · ${p.conditions.join(", ") || "no conditions recorded"} · care team ${p.care_team}`;
      $("#patient-name").focus();
      await load();
    },
    async refresh() {
      if (patient) {
        try { await loadCharts(); } catch (error) { $("#patient-error").textContent = error.message; }
      }
    },
  };
}
