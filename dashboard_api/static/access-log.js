"use strict";
// A patient's view of their access log. DOM built with textContent only; no inline script.
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("telehealth-token");
let patientId = null;
let oldest = null;

const ACTIONS = {
  "patients.list": "saw you in the patient list",
  "alerts.list": "saw your alerts in the alert inbox",
  "observations.read": "read your readings",
  "thresholds.read": "read your alert thresholds",
  "thresholds.update": "changed your alert thresholds",
  "alert.acknowledge": "acknowledged an alert",
  "alert.resolve": "resolved an alert",
  "device.provision": "set up a device for you",
  "patient.register": "registered you",
  "access_log.read": "read this access log",
  "access.denied": "tried to open your records and was refused",
};

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { signOut(); throw new Error("Please sign in again."); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || response.statusText);
  return body;
}

function cell(row, value) { const td = document.createElement("td"); td.textContent = value; row.append(td); }

function render(entries) {
  const body = $("#log tbody");
  for (const e of entries) {
    const tr = document.createElement("tr");
    const when = new Date(e.at);
    const time = document.createElement("time");
    time.dateTime = e.at; time.textContent = when.toLocaleString();
    const td = document.createElement("td"); td.append(time); tr.append(td);
    cell(tr, e.actor); cell(tr, e.role); cell(tr, e.purpose); cell(tr, ACTIONS[e.action] || e.action);
    body.append(tr);
  }
  if (entries.length) oldest = entries[entries.length - 1].id;
  $("#empty").hidden = body.children.length > 0;
  $("#more").hidden = entries.length < 100;
}

async function load() {
  const query = oldest ? `?limit=100&before=${oldest}` : "?limit=100";
  render(await api(`/api/v1/patients/${patientId}/access-log${query}`));
}

async function signIn(newToken) {
  token = newToken;
  const me = await api("/api/v1/auth/me");
  if (!me.patient_id) throw new Error("This page is for patients; your role is " + me.role + ".");
  sessionStorage.setItem("telehealth-token", token);
  patientId = me.patient_id;
  $("#who").textContent = me.username;
  $("#login").hidden = true; $("#log").hidden = false; $("#logout").hidden = false;
  $("#log tbody").replaceChildren(); oldest = null;
  await load();
}

function signOut() {
  token = null; sessionStorage.removeItem("telehealth-token");
  $("#login").hidden = false; $("#log").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#error").textContent = "";
  try {
    const form = Object.fromEntries(new FormData(event.target));
    const r = await api("/api/v1/auth/token", { method: "POST", body: JSON.stringify(form) });
    await signIn(r.access_token);
  } catch (e) { $("#error").textContent = e.message; }
});
$("#logout").addEventListener("click", async () => {
  try { await api("/api/v1/auth/logout", { method: "POST" }); } catch (e) { /* signed out anyway */ }
  signOut();
});
$("#more").addEventListener("click", () => load().catch((e) => { $("#error").textContent = e.message; }));
if (token) signIn(token).catch((e) => { signOut(); $("#error").textContent = e.message; });
