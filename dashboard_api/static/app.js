"use strict";
// Clinician dashboard. Alerts arrive live from /api/v1/alerts/stream (see sse.js); rows are
// kept per alert and patient id and updated in place, so focus and screen-reader position
// survive updates. No frameworks, no CDN.
import { refreshRelative, setTime } from "./format.js";
import { createPatientView } from "./patient.js";
import { openAlertStream } from "./sse.js";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("telehealth-token");
let stream = null;
const alerts = new Map(); // alert id -> alert
const patients = new Map(); // patient id -> patient summary

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && token) { signOut("Your session has ended; please sign in again."); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || `${response.status} ${response.statusText}`);
  return body;
}

const patientView = createPatientView({ api });

// ---- announcements -------------------------------------------------------------------
function announce(message, urgent = false) {
  const region = urgent ? $("#announce-urgent") : $("#announce-polite");
  region.textContent = "";
  setTimeout(() => { region.textContent = message; }, 50);
}

// ---- alert inbox ---------------------------------------------------------------------
const RULES = {
  glucose_low: "Glucose low", glucose_high: "Glucose high",
  spo2_low: "SpO2 low", pulse: "Pulse", stale_data: "No recent data",
  device_offline: "Device offline", battery_low: "Battery low",
};

/** Measured urgent (0) before predicted urgent (1, a forecast) before warnings (2): as the server orders. */
function alertClass(a) {
  if (a.severity !== "urgent") return 2;
  return (a.code || "").endsWith("forecast") ? 1 : 0;
}
function rank(a) {
  return [alertClass(a), a.escalated_at ? 0 : 1, a.status === "open" ? 0 : 1, -Date.parse(a.triggered_at)];
}
function compareAlerts(a, b) {
  const x = rank(a);
  const y = rank(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return a.id - b.id;
}

function button(label, attrs) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  Object.assign(b.dataset, attrs);
  return b;
}

function alertRow(a) {
  const tr = document.createElement("tr");
  tr.dataset.alert = a.id;
  for (const cls of ["sev", "patient", "msg", "now", "since", "status", "actions"]) tr.insertCell().className = cls;
  const name = button(a.patient_name, { patient: a.patient_id });
  name.className = "link";
  tr.cells[1].append(name);
  tr.cells[6].append(
    button("Acknowledge", { action: "acknowledge", alert: a.id }),
    button("Resolve", { action: "resolve", alert: a.id }),
  );
  return tr;
}

// Trend arrows by rate per minute: glucose at 1, 2 and 3 mg/dL/min (as CGM apps draw them).
const ARROW_STEPS = { "mmol/L": [0.056, 0.111, 0.167] };
function arrow(rate, unit) {
  if (rate == null) return "";
  const [flat, single, double] = ARROW_STEPS[unit] || [0.5, 1, 2];
  const size = Math.abs(rate);
  if (size < flat) return "→";
  if (size < single) return rate < 0 ? "↘" : "↗";
  if (size < double) return rate < 0 ? "↓" : "↑";
  return rate < 0 ? "⇊" : "⇈";
}
function currentText(a) {
  const c = a.current;
  if (!c) return "–";
  const digits = c.unit === "mmol/L" ? 1 : 0;
  const rate = c.rate_per_min == null ? "" : ` ${arrow(c.rate_per_min, c.unit)} ${c.rate_per_min >= 0 ? "+" : ""}${c.rate_per_min.toFixed(digits + 1)}/min`;
  const raised = a.value != null ? `; raised at ${a.value.toFixed(digits)}` : "";
  return `${c.value.toFixed(digits)} ${c.unit}${rate}${raised}`;
}

function updateAlertRow(tr, a) {
  tr.className = `${a.severity} ${a.status}${a.escalated_at ? " escalated" : ""}`;
  tr.cells[0].textContent = alertClass(a) === 1 ? "urgent (predicted)" : a.severity;
  tr.cells[2].textContent = a.message;
  tr.cells[3].textContent = currentText(a);
  setTime(tr.cells[4], a.opened_at);
  const who = a.status === "acknowledged" && a.acknowledged_by ? ` by ${a.acknowledged_by}` : "";
  tr.cells[5].textContent = `${a.status}${who}${a.escalated_at ? " · escalated" : ""}`;
  const ack = tr.querySelector('[data-action="acknowledge"]');
  if (a.status !== "open" && document.activeElement === ack) tr.querySelector('[data-action="resolve"]').focus();
  ack.hidden = a.status !== "open";
  for (const b of tr.querySelectorAll("[data-action]")) b.setAttribute("aria-label", `${b.textContent}: ${a.message}, ${a.patient_name}`);
}

/** Put the rows of `items` into `tbody` in order, moving only rows that are out of place. */
function placeRows(tbody, rows) {
  const focused = document.activeElement;
  rows.forEach((row, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] ?? null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
}

const alertRows = new Map();
function renderInbox() {
  const active = [...alerts.values()].filter((a) => a.status !== "resolved").sort(compareAlerts);
  const rows = active.map((a) => {
    let tr = alertRows.get(a.id);
    if (!tr) { tr = alertRow(a); alertRows.set(a.id, tr); }
    updateAlertRow(tr, a);
    return tr;
  });
  for (const [id, tr] of alertRows) if (!active.some((a) => a.id === id)) { alertRows.delete(id); if (tr.contains(document.activeElement)) $("#inbox-heading").focus(); }
  placeRows($("#alerts tbody"), rows);
  $("#no-alerts").hidden = active.length > 0;
  const urgent = active.filter((a) => a.severity === "urgent").length;
  $("#inbox-count").textContent = `${active.length} active${urgent ? `, ${urgent} urgent` : ""}`;
}

function applyAlertEvent({ event, alert }) {
  const before = alerts.get(alert.id);
  alerts.set(alert.id, alert);
  if (alert.status === "resolved") alerts.delete(alert.id);
  renderInbox();
  renderPatients();
  const label = `${alert.message}, ${alert.patient_name}`;
  if (event.status === "open" && !before) announce(`New ${alert.severity} alert: ${label}`, alert.severity === "urgent");
  else if (event.status === "open") announce(`Alert now ${alert.severity}: ${label}`, alert.severity === "urgent");
  else if (event.status === "escalated") announce(`Escalated, not acknowledged: ${label}`, true);
  else if (event.status === "acknowledged") announce(`Acknowledged by ${event.actor}: ${label}`);
  else if (event.status === "resolved") announce(`Resolved${event.actor === "processor" ? " (back in range)" : ` by ${event.actor}`}: ${label}`);
  schedulePatients();
}

// ---- triage list ---------------------------------------------------------------------
/** The live inbox knows every active alert, so it decides a patient's worst one at once. */
function worstAlert(p) {
  const own = [...alerts.values()].filter((a) => a.patient_id === p.id && a.status !== "resolved");
  return own.length ? own.sort(compareAlerts)[0] : null;
}
function comparePatients(a, b) {
  const wa = worstAlert(a);
  const wb = worstAlert(b);
  if (wa && wb) return compareAlerts(wa, wb) || a.name.localeCompare(b.name);
  return (wa ? 0 : 1) - (wb ? 0 : 1) || a.name.localeCompare(b.name);
}

function observationCell(cell, p, code) {
  const o = p.latest.find((x) => x.code === code);
  if (!o) { cell.textContent = "–"; return; }
  const value = `${o.value.toFixed(code === "glucose" ? 1 : 0)} ${o.unit}`;
  let strong = cell.querySelector("strong");
  if (!strong) { cell.replaceChildren(); strong = document.createElement("strong"); cell.append(strong, document.createElement("span"), document.createElement("small")); }
  strong.textContent = value;
  setTime(cell.children[1], o.measured_at);
  cell.children[2].textContent = o.quality.length ? ` ${o.quality.join(", ")}` : "";
  cell.children[2].className = o.quality.length ? "flag" : "";
}

const patientRows = new Map();
function renderPatients() {
  const list = [...patients.values()].sort(comparePatients);
  const rows = list.map((p) => {
    let tr = patientRows.get(p.id);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.patientRow = p.id;
      for (let i = 0; i < 6; i++) tr.insertCell();
      const name = button(p.name, { patient: p.id });
      name.className = "link";
      tr.cells[0].append(name);
      patientRows.set(p.id, tr);
    }
    const worst = worstAlert(p);
    tr.className = worst ? worst.severity : "";
    observationCell(tr.cells[1], p, "glucose");
    observationCell(tr.cells[2], p, "spo2");
    observationCell(tr.cells[3], p, "pulse");
    tr.cells[4].textContent = worst ? `${worst.severity}: ${worst.message}` : "–";
    tr.cells[5].textContent = p.devices.map((d) => {
      const state = d.state ? `${d.state}${d.battery_pct != null ? `, battery ${d.battery_pct} %` : ""}` : "no status yet";
      return `${d.kind} (${state})`;
    }).join("; ") || "–";
    return tr;
  });
  for (const id of patientRows.keys()) if (!patients.has(id)) patientRows.delete(id);
  placeRows($("#patients tbody"), rows);
  $("#no-patients").hidden = list.length > 0;
}

async function loadPatients() {
  try {
    const list = await api("/api/v1/patients");
    patients.clear();
    for (const p of list) patients.set(p.id, p);
    renderPatients();
    $("#app-error").textContent = "";
  } catch (error) {
    if (token) $("#app-error").textContent = `Could not refresh the patient list: ${error.message}`;
  }
}

// At most one refresh per half second, however busy the stream (a throttle, not a debounce,
// so a steady flow of events cannot postpone it for ever).
let patientsTimer = null;
function schedulePatients() {
  if (patientsTimer !== null) return;
  patientsTimer = setTimeout(() => { patientsTimer = null; loadPatients(); patientView.refresh(); }, 500);
}

// ---- acknowledge / resolve dialog ----------------------------------------------------
let pending = null;
function openDialog(action, alertId) {
  const a = alerts.get(Number(alertId));
  if (!a) return;
  pending = { action, alert: a };
  $("#action-title").textContent = action === "resolve" ? "Resolve alert" : "Acknowledge alert";
  $("#action-alert").textContent = `${a.severity}: ${a.message} — ${a.patient_name}`;
  $("#action-note-label").textContent = action === "resolve" ? "Resolution note (required)" : "Note (optional)";
  $("#action-note").required = action === "resolve";
  $("#action-note").value = "";
  $("#action-error").textContent = "";
  $("#action-confirm").textContent = action === "resolve" ? "Resolve" : "Acknowledge";
  $("#action-dialog").showModal();
  $("#action-note").focus();
}

$("#action-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!pending) return;
  const note = $("#action-note").value.trim();
  if (pending.action === "resolve" && !note) {
    $("#action-error").textContent = "Resolving by hand needs a note: what was done?";
    $("#action-note").focus();
    return;
  }
  $("#action-confirm").disabled = true;
  try {
    const updated = await api(`/api/v1/alerts/${pending.alert.id}/${pending.action}`, {
      method: "POST", body: JSON.stringify({ note }),
    });
    if (updated.status === "resolved") alerts.delete(updated.id); else alerts.set(updated.id, updated);
    renderInbox();
    renderPatients();
    $("#action-dialog").close();
    announce(`${pending.action === "resolve" ? "Resolved" : "Acknowledged"}: ${updated.message}, ${updated.patient_name}`);
  } catch (error) {
    $("#action-error").textContent = error.message;
  } finally {
    $("#action-confirm").disabled = false;
  }
});
$("#action-cancel").addEventListener("click", () => $("#action-dialog").close());
$("#action-dialog").addEventListener("close", () => {
  const row = pending && alertRows.get(pending.alert.id);
  const target = row?.querySelector('[data-action]:not([hidden])') ?? $("#inbox-heading");
  pending = null;
  target.focus();
});

// ---- live stream ---------------------------------------------------------------------
function setLive(state) {
  const labels = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };
  const badge = $("#live-status");
  badge.hidden = false;
  badge.textContent = labels[state];
  badge.className = `live-status ${state}`;
}

function startStream() {
  stream?.close();
  stream = openAlertStream({
    token,
    onState: setLive,
    onUnauthorized: () => signOut("Your session has ended; please sign in again."),
    onEvent: (name, data) => {
      if (name === "snapshot") {
        alerts.clear();
        for (const a of data.alerts) alerts.set(a.id, a);
        renderInbox();
        renderPatients();
      } else if (name === "alert") {
        applyAlertEvent(data);
      } else if (name === "values") {
        for (const [id, current] of Object.entries(data.values)) {
          const a = alerts.get(Number(id));
          if (a) a.current = current;
        }
        renderInbox();
      }
    },
  });
}

// ---- sign in / out -------------------------------------------------------------------
async function signIn(newToken) {
  token = newToken;
  const me = await api("/api/v1/auth/me");
  if (me.role !== "clinician") { token = null; throw new Error(`this dashboard is for clinicians; you are ${me.role}`); }
  sessionStorage.setItem("telehealth-token", token);
  $("#who").textContent = `${me.username} (${me.role})`;
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  $("#login-error").textContent = "";
  startStream();
  await loadPatients();
  $("#inbox-heading").focus();
}

function signOut(reason = "") {
  token = null;
  stream?.close();
  stream = null;
  sessionStorage.removeItem("telehealth-token");
  alerts.clear(); patients.clear(); alertRows.clear(); patientRows.clear();
  $("#alerts tbody").replaceChildren(); $("#patients tbody").replaceChildren();
  $("#login").hidden = false; $("#app").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#live-status").hidden = true; $("#patient").hidden = true;
  $("#login-error").textContent = reason;
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target || !$("#app").contains(target)) return;
  if (target.dataset.action) openDialog(target.dataset.action, target.dataset.alert);
  else if (target.dataset.patient) {
    const p = patients.get(target.dataset.patient);
    if (p) patientView.open(p);
    else $("#app-error").textContent = "This patient is not in your list yet; try again in a moment.";
  }
});
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const r = await api("/api/v1/auth/token", { method: "POST", body: JSON.stringify(Object.fromEntries(form)) });
    await signIn(r.access_token);
  } catch (error) { $("#login-error").textContent = error.message; }
});
$("#token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await signIn(new FormData(event.target).get("token").trim()); }
  catch (error) { token = null; $("#login-error").textContent = error.message; }
});
$("#logout").addEventListener("click", () => signOut());
if (token) signIn(token).catch((error) => signOut(error.message));
// Relative times tick; latest readings are not pushed, so the triage list refreshes each 30 s.
setInterval(() => refreshRelative(), 15000);
setInterval(() => { if (token) { loadPatients(); } }, 30000);
