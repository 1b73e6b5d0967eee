"use strict";
// One patient beside the inbox: the state at a glance (glucose with arrow, change and age,
// SpO2, pulse, open alerts), trends over 3 h to 14 d with the patient's threshold bands, the
// CGM forecast, alert markers and flagged readings, the alert history, the 14-day CGM summary,
// the thresholds form and the patient's time zone.
import { timeChart } from "./charts.js";
import { absolute, clockIn, duration, relative, setTime } from "./format.js";
import { alertValues, compareAlerts } from "./inbox.js";
import { api } from "./session.js";
import { metricsTable, sufficiencyNote, timeInRanges } from "./summary.js";
import { createThresholdsForm } from "./thresholds.js";
import { bandOf, digits, glucoseDelta, glucoseNumber, glucoseUnit, rangeLabel, toUnit, TRENDS } from "./units.js";

const $ = (sel) => document.querySelector(sel);
const HOUR = 3600000;
const RANGES = {
  "3h": { ms: 3 * HOUR, bucket: null },
  "24h": { ms: 24 * HOUR, bucket: null },
  "7d": { ms: 7 * 24 * HOUR, bucket: "15m" },
  "14d": { ms: 14 * 24 * HOUR, bucket: "30m" },
};
const SPO2_SCALES = { 1: [93, 91], 2: [87, 85] };
const STALE_MIN = 15;
const CHART_CODES = { glucose: ["glucose", "glucose_forecast"], spo2: ["spo2"], pulse: ["pulse"] };

function chartSpec(code) {
  if (code === "glucose") return { title: "Glucose", unit: glucoseUnit(), domain: [toUnit(2), toUnit(16)], digits: digits() };
  if (code === "spo2") return { title: "SpO2", unit: "%", domain: [84, 100], digits: 0 };
  return { title: "Pulse", unit: "/min", domain: [35, 140], digits: 0 };
}

/** Threshold zones in display units. */
export function bandsFor(code, t) {
  if (code === "glucose") {
    const g = (v) => toUnit(v);
    const n = (v) => glucoseNumber(v);
    const u = glucoseUnit();
    return [
      { name: "target", kind: "target", from: g(3.9), to: g(10), label: `Target range ${rangeLabel(3.9, 10)}` },
      { name: "urgent-low", kind: "urgent", to: g(t.glucose_urgent_low), label: `Urgent: below ${n(t.glucose_urgent_low)} ${u}` },
      { name: "low", kind: "warning", from: g(t.glucose_urgent_low), to: g(t.glucose_low), label: `Warning: below ${n(t.glucose_low)} ${u}` },
      { name: "high", kind: "warning", from: g(t.glucose_high), label: `Warning: above ${n(t.glucose_high)} ${u}` },
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

function describe(c, values, latest, flagged) {
  if (!values.length && !flagged) return `${c.title}: no readings in this period.`;
  const f = (v) => v.toFixed(c.digits);
  const range = values.length ? `${values.length} values from ${f(Math.min(...values))} to ${f(Math.max(...values))} ${c.unit}.` : "";
  const last = latest ? ` Latest ${f(latest.v)} ${c.unit} at ${absolute(new Date(latest.t).toISOString())}.` : "";
  const flags = flagged ? ` ${flagged} reading${flagged > 1 ? "s" : ""} flagged as artefact, not used for alerts.` : "";
  return `${c.title}: ${range}${last}${flags}`;
}

const h = (tag, cls, ...children) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  node.append(...children);
  return node;
};

export function createPatientView({ alerts, onClose }) {
  let patient = null;
  let range = "24h";
  let series = {};
  let now = null;
  let history = [];
  let treatments = [];
  let summary = null;
  let loadToken = 0;
  // New thresholds redraw the bands at once, and the forecast to the new horizon when it is in.
  const thresholdsForm = createThresholdsForm({
    onSaved: () => {
      renderCharts();
      loadNow().catch((error) => { $("#patient-error").textContent = error.message; });
    },
  });

  // ---- at a glance ----------------------------------------------------------------------
  function tile(kind, label, value, unit, extra = [], state = "") {
    const box = h("div", `tile tile-${kind}${state ? ` ${state}` : ""}`);
    box.append(h("span", "tile-label", label), h("span", "tile-value", h("strong", "", value), " ", h("span", "tile-unit", unit)), ...extra);
    return box;
  }

  function ageLine(iso) {
    const line = h("span", "tile-age");
    setTime(line, iso);
    return line;
  }

  function glucoseTile() {
    const g = now?.glucose;
    if (!g) return tile("glucose", "Glucose", "–", glucoseUnit(), [h("span", "tile-age", "no readings")]);
    const shown = g.credible && g.quality.length ? g.credible : g;
    const extra = [];
    const trend = now.glucose_trend;
    const arrow = trend?.trend ? TRENDS[trend.trend] : null;
    if (arrow) {
      const a = h("span", `tile-arrow trend-${trend.trend}`, arrow.arrow);
      a.setAttribute("role", "img");
      a.setAttribute("aria-label", arrow.words);
      a.title = `${arrow.words} (${trend.rate_source === "filter" ? "filtered rate" : "slope of the last 15 min"})`;
      extra.push(a);
    }
    if (trend?.delta != null) extra.push(h("span", "tile-delta", `${glucoseDelta(trend.delta)} in ${duration(trend.delta_minutes)}`));
    extra.push(ageLine(shown.measured_at));
    if (shown !== g) extra.push(h("span", "flag", `newest (${glucoseNumber(g.value)}) flagged ${g.quality.join(", ")}`));
    else if (g.quality.length) extra.push(h("span", "flag", g.quality.join(", ")));
    const stale = Date.now() - Date.parse(shown.measured_at) > STALE_MIN * 60000;
    return tile("glucose", shown.source === "smbg" ? "Glucose (finger-prick)" : "Glucose", glucoseNumber(shown.value), glucoseUnit(), extra,
      `band-${bandOf(shown.value)}${stale ? " stale" : ""}`);
  }

  function plainTile(code, label, unit) {
    const o = now?.[code];
    if (!o) return tile(code, label, "–", unit, [h("span", "tile-age", "no readings")]);
    const shown = o.credible && o.quality.length ? o.credible : o;
    const extra = [ageLine(shown.measured_at)];
    if (shown !== o) extra.push(h("span", "flag", `newest (${o.value.toFixed(0)} ${unit}) flagged ${o.quality.join(", ")}`));
    else if (o.quality.length) extra.push(h("span", "flag", o.quality.join(", ")));
    const stale = Date.now() - Date.parse(shown.measured_at) > STALE_MIN * 60000;
    return tile(code, label, shown.value.toFixed(0), unit, extra, stale ? "stale" : "");
  }

  function alertsTile() {
    const own = patient ? [...alerts.values()].filter((a) => a.patient_id === patient.id && a.status !== "resolved").sort(compareAlerts) : [];
    const box = h("div", `tile tile-alerts${own.length ? ` has-${own[0].severity}` : ""}`);
    box.append(h("span", "tile-label", `Open alerts (${own.length})`));
    if (!own.length) { box.append(h("span", "tile-none", "none")); return box; }
    const list = h("ul", "tile-alert-list");
    for (const a of own) {
      const item = h("li", `sev-${a.severity}`, h("strong", "", a.severity), ` ${a.message}`);
      const values = alertValues(a);
      if (values) item.append(h("span", "values", ` · ${values}`));
      item.append(" · ", h("span", "status", a.status));
      list.append(item);
    }
    box.append(list);
    return box;
  }

  function renderGlance() {
    if (!patient) return;
    $("#glance").replaceChildren(glucoseTile(), plainTile("spo2", "SpO2", "%"), plainTile("pulse", "Pulse", "/min"), alertsTile());
    if (now?.time_zone) {
      const local = now.time_zone === Intl.DateTimeFormat().resolvedOptions().timeZone ? "" : ` · patient's local time ${clockIn(new Date().toISOString(), now.time_zone)} (${now.time_zone})`;
      $("#patient-details").textContent = `${details(patient)}${local}`;
    }
  }

  // ---- trends -----------------------------------------------------------------------------
  function markersFor(code, start) {
    return history
      .filter((a) => CHART_CODES[code].includes(a.code) && Date.parse(a.triggered_at) >= start)
      .map((a) => ({
        t: Date.parse(a.triggered_at),
        kind: a.code === "glucose_forecast" ? "predicted" : a.severity,
        label: `${a.severity} alert: ${a.message}, ${absolute(a.triggered_at)} (${a.status})`,
      }));
  }

  // Treatments the patient's apps uploaded (carbs, insulin, basal, notes): drawn on the glucose
  // chart beside the readings they explain; never alerts.
  function treatmentMarkers(start) {
    return treatments
      .filter((t) => Date.parse(t.created_at) >= start)
      .map((t) => ({ t: Date.parse(t.created_at), kind: "treatment", label: treatmentLabel(t) }));
  }

  function treatmentLabel(t) {
    const parts = [t.event_type];
    if (t.carbs_g != null) parts.push(`${t.carbs_g} g carbs`);
    if (t.insulin_u != null) parts.push(`${t.insulin_u} U insulin`);
    if (t.basal_u_per_h != null) {
      parts.push(`basal ${t.basal_u_per_h} U/h${t.duration_min != null ? ` for ${t.duration_min} min` : ""}`);
    }
    if (t.notes) parts.push(t.notes);
    return `${parts.join(", ")}, ${absolute(t.created_at)} (from ${t.entered_by ?? t.device_id})`;
  }

  function forecastFor(end) {
    const f = now?.forecast;
    if (!f || range === "7d" || range === "14d") return null;
    const last = f.points.at(-1);
    return {
      points: f.points.map((p) => ({ t: Date.parse(p.at), v: toUnit(p.value) })),
      label: `forecast ${glucoseNumber(last.value)} in ${f.horizon_min} min`,
      end,
    };
  }

  function renderCharts() {
    if (!patient) return;
    const thresholds = thresholdsForm.current;
    const end = Date.now();
    const start = end - RANGES[range].ms;
    for (const code of Object.keys(CHART_CODES)) {
      const c = chartSpec(code);
      const data = series[code] ?? { points: [] };
      const conv = code === "glucose" ? toUnit : (v) => v;
      const points = data.points?.map((p) => ({ ...p, v: conv(p.v) }));
      const buckets = data.buckets?.map((b) => ({ t: b.t, mean: conv(b.mean), min: conv(b.min), max: conv(b.max) }));
      const clean = points ? points.filter((p) => !p.flag) : buckets.map((b) => ({ t: b.t, v: b.mean }));
      const flagged = points ? points.length - clean.length : 0;
      const forecast = code === "glucose" ? forecastFor(end) : null;
      const alerts = markersFor(code, start);
      const given = code === "glucose" ? treatmentMarkers(start) : [];
      const markers = alerts.concat(given);
      timeChart($(`#chart-${code}`), {
        title: `${c.title}, ${range}`, unit: c.unit, start, end, domain: c.domain, digits: c.digits,
        points, buckets, forecast, markers,
        bands: thresholds ? bandsFor(code, thresholds) : [],
        describe: () => describe(c, clean.map((p) => p.v), clean.at(-1), flagged)
          + (forecast ? ` Forecast: ${forecast.label}.` : "")
          + (alerts.length ? ` ${alerts.length} alert${alerts.length > 1 ? "s" : ""} opened in this period.` : "")
          + (given.length ? ` ${given.length} treatment${given.length > 1 ? "s" : ""} recorded.` : ""),
      });
    }
    $("#glucose-caption").textContent = `Glucose (${glucoseUnit()})`;
    $("#legend-target").textContent = `glucose target ${rangeLabel(3.9, 10)}`;
  }

  async function loadCharts() {
    const mine = ++loadToken;
    const end = new Date();
    const start = new Date(end.getTime() - RANGES[range].ms);
    const { bucket } = RANGES[range];
    const given = new URLSearchParams({ from: start.toISOString(), to: end.toISOString() });
    const treatmentsLoad = api(`/api/v1/patients/${patient.id}/treatments?${given}`).catch(() => []);
    const results = await Promise.all(Object.keys(CHART_CODES).map(async (code) => {
      const q = new URLSearchParams({ code, from: start.toISOString(), to: end.toISOString() });
      if (bucket) q.set("bucket", bucket);
      const rows = await api(`/api/v1/patients/${patient.id}/observations?${q}`);
      if (bucket) {
        return [code, { buckets: rows.map((r) => ({ t: Date.parse(r.bucket), mean: r.mean, min: r.min, max: r.max })) }];
      }
      const ok = rows.filter((r) => !r.quality.includes("implausible") && !r.quality.includes("future"));
      return [code, {
        points: ok.map((r) => ({ t: Date.parse(r.measured_at), v: r.value, flag: r.quality.includes("artefact") ? "artefact" : null })),
      }];
    }));
    const loadedTreatments = await treatmentsLoad;
    if (mine !== loadToken) return; // a newer load (other patient or range) won
    series = Object.fromEntries(results);
    treatments = loadedTreatments;
    renderCharts();
  }

  // ---- alert history --------------------------------------------------------------------
  function renderHistory() {
    const body = $("#alert-history tbody");
    body.replaceChildren();
    for (const a of history) {
      const tr = body.insertRow();
      tr.className = `${a.severity} ${a.status}`;
      const cells = ["Opened", "Alert", "Severity", "Value", "Outcome"].map((label) => {
        const td = tr.insertCell();
        td.dataset.label = label;
        return td;
      });
      setTime(cells[0], a.opened_at);
      cells[1].textContent = a.message;
      cells[2].textContent = a.code === "glucose_forecast" ? `${a.severity} (predicted)` : a.severity;
      cells[3].textContent = alertValues(a) || "–";
      const outcome = a.status === "resolved"
        ? `resolved ${a.resolution === "auto" ? "(back in range)" : `by ${a.resolved_by}`} ${absolute(a.resolved_at)}`
        : a.status === "acknowledged" ? `acknowledged by ${a.acknowledged_by}` : "open";
      const ack = a.time_to_acknowledge_s != null ? `; acknowledged after ${duration(a.time_to_acknowledge_s / 60)}` : "";
      cells[4].textContent = `${outcome}${ack}`;
    }
    $("#no-history").hidden = history.length > 0;
  }

  async function loadHistory() {
    const id = patient.id;
    const answer = await api(`/api/v1/alerts?status=all&patient_id=${id}&limit=50`);
    if (patient?.id !== id) return;
    history = answer;
    history.sort((a, b) => Date.parse(b.opened_at) - Date.parse(a.opened_at));
    renderHistory();
    if (Object.keys(series).length) renderCharts(); // the alert markers come from it
  }

  // ---- 14-day summary ---------------------------------------------------------------------
  function renderSummary() {
    const box = $("#cgm-summary");
    if (!summary) { box.replaceChildren(); return; }
    const link = h("a", "button-link", "Open the AGP report (printable)");
    link.href = `/agp?patient=${encodeURIComponent(patient.id)}`;
    box.replaceChildren(...[sufficiencyNote(summary), timeInRanges(summary), metricsTable(summary), h("p", "", link)].filter(Boolean));
  }

  async function loadSummary() {
    const id = patient.id;
    const answer = await api(`/api/v1/patients/${id}/glucose-summary?days=14`);
    if (patient?.id !== id) return;
    summary = answer;
    renderSummary();
    $("#zone-current").textContent = summary.timezone;
    $("#zone-input").value = patient.time_zone ?? "";
    $("#zone-input").placeholder = summary.timezone;
  }

  async function loadNow() {
    const id = patient.id;
    const answer = await api(`/api/v1/patients/${id}/now`);
    if (patient?.id !== id) return; // another patient was opened meanwhile
    now = answer;
    renderGlance();
    if (Object.keys(series).length) renderCharts(); // the forecast is drawn from it
  }

  // ---- time zone --------------------------------------------------------------------------
  const names = $("#zone-names");
  if (names && !names.children.length && Intl.supportedValuesOf) {
    for (const zone of Intl.supportedValuesOf("timeZone")) names.append(new Option(zone));
  }
  $("#zone-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#zone-input");
    $("#zone-error").textContent = "";
    $("#zone-saved").textContent = "";
    input.removeAttribute("aria-invalid");
    const zone = input.value.trim();
    if (!zone) {
      $("#zone-error").textContent = "Time zone (IANA name): a value is needed, e.g. Europe/London.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    try {
      await api(`/api/v1/patients/${patient.id}/time-zone`, { method: "PUT", body: JSON.stringify({ time_zone: zone }) });
      patient.time_zone = zone;
      $("#zone-saved").textContent = `Saved: ${zone}.`;
      await Promise.all([loadSummary(), loadNow()]);
    } catch (error) {
      $("#zone-error").textContent = `Time zone (IANA name): ${error.message.replace(/^(body\.)?time_zone: (Value error, )?/, "")}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });

  // ---- the view ---------------------------------------------------------------------------
  function details(p) {
    return `NHS number ${p.nhs_number} · born ${p.birth_date} · ${p.conditions.join(", ") || "no conditions recorded"} · care team ${p.care_team}`;
  }

  async function load() {
    $("#patient-error").textContent = "";
    try {
      await thresholdsForm.load(patient.id);
      await Promise.all([loadNow(), loadHistory(), loadCharts(), loadSummary()]);
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

  function close(focus = true) {
    const id = patient?.id;
    patient = null;
    $("#patient").hidden = true;
    onClose();
    if (focus) document.querySelector(`#patients [data-patient="${id}"]`)?.focus();
  }
  $("#patient-close").addEventListener("click", () => close());
  setInterval(() => { if (patient && !document.hidden) loadNow().catch(() => {}); }, 60000);

  return {
    get id() { return patient?.id ?? null; },
    async open(p) {
      patient = { ...p };
      series = {}; now = null; history = []; summary = null;
      $("#patient").hidden = false;
      $("#patient-name").textContent = p.name;
      $("#patient-details").textContent = details(p);
      $("#agp-link").href = `/agp?patient=${encodeURIComponent(p.id)}`;
      $("#glance").replaceChildren();
      $("#patient-name").focus();
      await load();
    },
    close,
    async refresh() {
      if (!patient) return;
      try { await Promise.all([loadNow(), loadHistory(), loadCharts()]); } catch (error) { $("#patient-error").textContent = error.message; }
    },
    alertsChanged() { renderGlance(); },
    unitChanged() {
      if (!patient) return;
      thresholdsForm.refill();
      renderGlance();
      renderCharts();
      renderSummary();
    },
  };
}
