"use strict";
// Clinician dashboard: polls the API with the stored bearer token. No frameworks, no CDN.
const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("telehealth-token");
let selected = null;

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { signOut(); throw new Error("signed out"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.detail || response.statusText);
  return body;
}

function text(value) { const span = document.createElement("span"); span.textContent = value; return span.innerHTML; }
function ago(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

async function signIn(newToken) {
  token = newToken;
  const me = await api("/api/v1/auth/me");
  sessionStorage.setItem("telehealth-token", token);
  $("#who").textContent = `${me.username} (${me.role})`;
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  refresh();
}

function signOut() {
  token = null; sessionStorage.removeItem("telehealth-token");
  $("#login").hidden = false; $("#app").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
}

async function act(id, action) {
  const note = action === "resolve" ? prompt("Resolution note (required)") : (prompt("Note (optional)") ?? "");
  if (note === null) return;
  try { await api(`/api/v1/alerts/${id}/${action}`, { method: "POST", body: JSON.stringify({ note }) }); }
  catch (e) { alert(e.message); }
  refresh();
}

function renderAlerts(alerts) {
  $("#no-alerts").hidden = alerts.length > 0;
  $("#alerts tbody").innerHTML = alerts.map((a) => `
    <tr class="${a.severity} ${a.status}" data-alert="${a.id}">
      <td>${text(a.severity)}</td><td><a data-patient="${a.patient_id}">${text(a.patient_name)}</a></td>
      <td>${text(a.message)}</td><td>${ago(a.opened_at)}</td><td>${text(a.status)}</td>
      <td>${a.status === "open" ? `<button data-ack="${a.id}">Acknowledge</button>` : ""}
          <button data-resolve="${a.id}">Resolve</button></td>
    </tr>`).join("");
}

function latest(p, code) {
  const o = p.latest.find((x) => x.code === code);
  if (!o) return "–";
  const flags = o.quality.length ? ` <span class="flag">${text(o.quality.join(","))}</span>` : "";
  return `${o.value.toFixed(code === "glucose" ? 1 : 0)} ${text(o.unit)} <small>${ago(o.measured_at)}</small>${flags}`;
}

function device(d) {
  const status = d.state ? `${d.state}${d.battery_pct != null ? `, battery ${d.battery_pct}%` : ""}` : "no status yet";
  return `${text(d.id)} <small>${text(status)}</small>`;
}

function renderPatients(patients) {
  $("#patients tbody").innerHTML = patients.map((p) => `
    <tr><td><a data-patient="${p.id}">${text(p.name)}</a></td>
      <td>${latest(p, "glucose")}</td><td>${latest(p, "spo2")}</td><td>${latest(p, "pulse")}</td>
      <td>${p.worst_alert ? text(`${p.worst_alert.severity}: ${p.worst_alert.message}`) : "–"}</td>
      <td>${p.devices.map(device).join("<br>")}</td></tr>`).join("");
}

function chart(points, code) {
  const w = 640, h = 120;
  if (!points.length) return `<p>No ${text(code)} readings.</p>`;
  const t0 = Date.now() - 864e5, vs = points.map((p) => p.value);
  const lo = Math.min(...vs), hi = Math.max(...vs), span = hi - lo || 1;
  const xy = points.map((p) => `${((new Date(p.measured_at) - t0) / 864e5 * w).toFixed(1)},${(h - 5 - (p.value - lo) / span * (h - 10)).toFixed(1)}`);
  return `<div>${text(code)} (${text(points[0].unit)}) ${lo.toFixed(1)}–${hi.toFixed(1)}</div>
    <svg width="${w}" height="${h}" role="img" aria-label="${text(code)} trend"><polyline fill="none" stroke="#005eb8" points="${xy.join(" ")}"/></svg>`;
}

async function showTrend(patientId) {
  selected = patientId;
  const points = await api(`/api/v1/patients/${patientId}/observations`);
  const codes = [...new Set(points.map((p) => p.code))];
  $("#trend").hidden = false;
  $("#trend-name").textContent = document.querySelector(`[data-patient="${patientId}"]`)?.textContent ?? "";
  $("#trend-charts").innerHTML = codes.map((c) => chart(points.filter((p) => p.code === c), c)).join("");
}

async function refresh() {
  if (!token) return;
  try {
    const [alerts, patients] = await Promise.all([api("/api/v1/alerts"), api("/api/v1/patients")]);
    renderAlerts(alerts); renderPatients(patients);
    if (selected) await showTrend(selected);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) { $("#updated").textContent = `update failed: ${e.message}`; }
}

document.addEventListener("click", (event) => {
  const t = event.target;
  if (t.dataset.ack) act(t.dataset.ack, "acknowledge");
  else if (t.dataset.resolve) act(t.dataset.resolve, "resolve");
  else if (t.dataset.patient) showTrend(t.dataset.patient);
});
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const r = await api("/api/v1/auth/token", { method: "POST", body: JSON.stringify(Object.fromEntries(form)) });
    await signIn(r.access_token);
  } catch (e) { $("#login-error").textContent = e.message; }
});
$("#token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try { await signIn(new FormData(event.target).get("token").trim()); }
  catch (e) { $("#login-error").textContent = e.message; }
});
$("#logout").addEventListener("click", signOut);
if (token) signIn(token).catch(signOut);
setInterval(refresh, 2000);
