"use strict";
// Clinician dashboard. Alerts arrive live from /api/v1/alerts/stream (see sse.js); the inbox
// and triage list are kept in place (inbox.js); one patient opens beside them (patient.js).
// No frameworks, no CDN, no inline script.
import { refreshRelative } from "./format.js";
import { alertRow, compareAlerts, createTriage, placeRows, updateAlertRow } from "./inbox.js";
import { createPatientView } from "./patient.js";
import { api, chooseGlucoseUnit, hasToken, currentToken, me, signInWithPassword, signOut, useToken, whenSignedOut } from "./session.js";
import { openAlertStream } from "./sse.js";
import { glucoseUnit } from "./units.js";

const $ = (sel) => document.querySelector(sel);
const ROLES = ["clinician"];
let stream = null;
const alerts = new Map(); // alert id -> alert
const triage = createTriage({ alerts });
const patientView = createPatientView({ alerts, onClose: () => $("#app").classList.remove("with-patient") });

// ---- announcements -------------------------------------------------------------------
function announce(message, urgent = false) {
  const region = urgent ? $("#announce-urgent") : $("#announce-polite");
  region.textContent = "";
  setTimeout(() => { region.textContent = message; }, 50);
}

// ---- alert inbox ---------------------------------------------------------------------
const alertRows = new Map();
function renderInbox() {
  const active = [...alerts.values()].filter((a) => a.status !== "resolved").sort(compareAlerts);
  const rows = active.map((a) => {
    let tr = alertRows.get(a.id);
    if (!tr) { tr = alertRow(a); alertRows.set(a.id, tr); }
    updateAlertRow(tr, a);
    return tr;
  });
  for (const [id, tr] of alertRows) {
    if (!active.some((a) => a.id === id)) {
      alertRows.delete(id);
      if (tr.contains(document.activeElement)) $("#inbox-heading").focus();
    }
  }
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
  triage.render();
  patientView.alertsChanged();
  const label = `${alert.message}, ${alert.patient_name}`;
  if (event.status === "open" && !before) announce(`New ${alert.severity} alert: ${label}`, alert.severity === "urgent");
  else if (event.status === "open") announce(`Alert now ${alert.severity}: ${label}`, alert.severity === "urgent");
  else if (event.status === "escalated") announce(`Escalated, not acknowledged: ${label}`, true);
  else if (event.status === "acknowledged") announce(`Acknowledged by ${event.actor}: ${label}`);
  else if (event.status === "resolved") announce(`Resolved${event.actor === "processor" ? " (back in range)" : ` by ${event.actor}`}: ${label}`);
  schedulePatients();
}

async function loadPatients() {
  try {
    triage.set(await api("/api/v1/patients"));
    $("#app-error").textContent = "";
  } catch (error) {
    if (hasToken()) $("#app-error").textContent = `Could not refresh the patient list: ${error.message}`;
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
  $("#action-note").removeAttribute("aria-invalid");
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
    $("#action-error").textContent = "Resolution note: resolving by hand needs a note saying what was done.";
    $("#action-note").setAttribute("aria-invalid", "true");
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
    triage.render();
    patientView.alertsChanged();
    $("#action-dialog").close();
    announce(`${pending?.action === "resolve" ? "Resolved" : "Acknowledged"}: ${updated.message}, ${updated.patient_name}`);
  } catch (error) {
    $("#action-error").textContent = error.message;
  } finally {
    $("#action-confirm").disabled = false;
  }
});
$("#action-cancel").addEventListener("click", () => $("#action-dialog").close());
$("#action-dialog").addEventListener("close", () => {
  const row = pending && alertRows.get(pending.alert.id);
  const target = row?.querySelector("[data-action]:not([hidden])") ?? $("#inbox-heading");
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
    token: currentToken(),
    onState: setLive,
    onUnauthorized: () => showSignedOut("Your session has ended; please sign in again."),
    onEvent: (name, data) => {
      if (name === "snapshot") {
        alerts.clear();
        for (const a of data.alerts) alerts.set(a.id, a);
        renderInbox();
        triage.render();
        patientView.alertsChanged();
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

// ---- glucose unit --------------------------------------------------------------------
function showUnit() {
  for (const radio of document.querySelectorAll('input[name="glucose-unit"]')) radio.checked = radio.value === glucoseUnit();
}
for (const radio of document.querySelectorAll('input[name="glucose-unit"]')) {
  radio.addEventListener("change", async () => {
    try {
      await chooseGlucoseUnit(radio.value);
    } catch (error) {
      $("#app-error").textContent = `Could not save the glucose unit: ${error.message}`;
    }
    showUnit();
    renderInbox();
    triage.render();
    patientView.unitChanged();
  });
}

// ---- sign in / out -------------------------------------------------------------------
async function signedIn(who) {
  $("#who").textContent = `${who.username} (${who.role})`;
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false; $("#unit-choice").hidden = false;
  $("#login-error").textContent = "";
  showUnit();
  startStream();
  await loadPatients();
  $("#inbox-heading").focus();
}

function showSignedOut(reason = "") {
  stream?.close();
  stream = null;
  patientView.close(false);
  alerts.clear(); alertRows.clear(); triage.clear();
  $("#alerts tbody").replaceChildren();
  $("#login").hidden = false; $("#app").hidden = true; $("#logout").hidden = true; $("#unit-choice").hidden = true;
  $("#who").textContent = "";
  $("#live-status").hidden = true;
  $("#login-error").textContent = reason;
}
whenSignedOut(showSignedOut);

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target || !$("#app").contains(target)) return;
  if (target.dataset.action) openDialog(target.dataset.action, target.dataset.alert);
  else if (target.dataset.patient) {
    const p = triage.patients.get(target.dataset.patient);
    if (p) { $("#app").classList.add("with-patient"); patientView.open(p); }
    else $("#app-error").textContent = "This patient is not in your list yet; try again in a moment.";
  }
});
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await signedIn(await signInWithPassword(form.get("username"), form.get("password"), ROLES));
  } catch (error) { $("#login-error").textContent = error.message; }
});
$("#token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await signedIn(await useToken(new FormData(event.target).get("token").trim(), ROLES)); }
  catch (error) { $("#login-error").textContent = error.message; }
});
$("#logout").addEventListener("click", async () => { await signOut(); showSignedOut(); });
if (hasToken()) useToken(currentToken(), ROLES).then(signedIn).catch((error) => showSignedOut(error.message));
// Relative times tick; latest readings are not pushed, so the triage list refreshes each 30 s.
setInterval(() => refreshRelative(), 15000);
setInterval(() => { if (me) { loadPatients(); } }, 30000);
