"use strict";
// The alert inbox and the triage list: rows kept per alert and patient id and updated in
// place, so focus and screen-reader position survive live updates.
import { setTime, relative } from "./format.js";
import { glucoseText, observationText, TRENDS } from "./units.js";

const $ = (sel) => document.querySelector(sel);

export const RULES = {
  glucose_low: "Glucose low", glucose_high: "Glucose high",
  spo2_low: "SpO2 low", pulse: "Pulse", stale_data: "No recent data",
  device_offline: "Device offline", battery_low: "Battery low",
};

// Worst first, as the server orders: measured urgent, then predicted urgent (a forecast), then
// warnings; within those escalated, open before acknowledged, latest change first. Measured
// urgent alerts rank above predicted ones everywhere a clinician looks.
export function alertClass(a) {
  if (a.severity !== "urgent") return 2;
  return (a.code || "").endsWith("forecast") ? 1 : 0;
}
function rank(a) {
  return [alertClass(a), a.escalated_at ? 0 : 1, a.status === "open" ? 0 : 1, -Date.parse(a.triggered_at || a.opened_at)];
}
export function compareAlerts(a, b) {
  const x = rank(a);
  const y = rank(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return a.id - b.id;
}

export function button(label, attrs) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  Object.assign(b.dataset, attrs);
  return b;
}

function labelled(cell, label) { cell.dataset.label = label; return cell; }

/** "at opening 2.6 mmol/L" and the patient's latest reading, "now 3.4 mmol/L ↑ rising (2 min ago)". */
const NOT_A_MEASUREMENT = new Set(["stale_data", "device_offline", "battery_low"]);

export function alertValues(a) {
  const parts = [];
  const code = a.code === "glucose_forecast" ? "glucose" : a.code;
  if (a.value != null && code && !NOT_A_MEASUREMENT.has(a.rule)) {
    parts.push(`${a.code === "glucose_forecast" ? "forecast" : "at opening"} ${observationText(code, a.value)}`);
  }
  const c = a.current;
  if (c && c.value != null) {
    const text = code === "glucose" && (!c.unit || c.unit === "mmol/L") ? glucoseText(c.value) : observationText(code, c.value, c.unit);
    const trend = TRENDS[c.trend];
    const when = c.measured_at ? ` (${relative(c.measured_at)})` : "";
    parts.push(`now ${text}${trend ? ` ${trend.arrow} ${trend.words}` : ""}${when}`);
  }
  return parts.join(" · ");
}

export function alertRow(a) {
  const tr = document.createElement("tr");
  tr.dataset.alert = a.id;
  const labels = ["Severity", "Patient", "Alert", "Since", "Status", "Actions"];
  ["sev", "patient", "msg", "since", "status", "actions"].forEach((cls, i) => { labelled(tr.insertCell(), labels[i]).className = cls; });
  const name = button(a.patient_name, { patient: a.patient_id });
  name.className = "link";
  tr.cells[1].append(name);
  const message = document.createElement("span");
  message.className = "message";
  const values = document.createElement("span");
  values.className = "values";
  tr.cells[2].append(message, values);
  tr.cells[5].append(
    button("Acknowledge", { action: "acknowledge", alert: a.id }),
    button("Resolve", { action: "resolve", alert: a.id }),
  );
  return tr;
}

export function updateAlertRow(tr, a) {
  tr.className = `${a.severity} ${a.status}${a.escalated_at ? " escalated" : ""}${a.code === "glucose_forecast" ? " predicted" : ""}`;
  tr.cells[0].textContent = a.code === "glucose_forecast" ? `${a.severity} (predicted)` : a.severity;
  tr.querySelector(".message").textContent = a.message;
  tr.querySelector(".values").textContent = alertValues(a);
  setTime(tr.cells[3], a.opened_at);
  const who = a.status === "acknowledged" && a.acknowledged_by ? ` by ${a.acknowledged_by}` : "";
  tr.cells[4].textContent = `${a.status}${who}${a.escalated_at ? " · escalated" : ""}`;
  const ack = tr.querySelector('[data-action="acknowledge"]');
  if (a.status !== "open" && document.activeElement === ack) tr.querySelector('[data-action="resolve"]').focus();
  ack.hidden = a.status !== "open";
  for (const b of tr.querySelectorAll("[data-action]")) b.setAttribute("aria-label", `${b.textContent}: ${a.message}, ${a.patient_name}`);
}

/** Put `rows` into `tbody` in order, moving only rows that are out of place. */
export function placeRows(tbody, rows) {
  const focused = document.activeElement;
  rows.forEach((row, i) => {
    if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] ?? null);
  });
  while (tbody.children.length > rows.length) tbody.lastElementChild.remove();
  if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus();
}

function observationCell(cell, p, code) {
  const o = p.latest.find((x) => x.code === code);
  if (!o) { cell.replaceChildren("–"); return; }
  let strong = cell.querySelector("strong");
  if (!strong) { cell.replaceChildren(); strong = document.createElement("strong"); cell.append(strong, document.createElement("span"), document.createElement("small")); }
  strong.textContent = observationText(code, o.value, o.unit);
  setTime(cell.children[1], o.measured_at);
  cell.children[2].textContent = o.quality.length ? ` ${o.quality.join(", ")}` : "";
  cell.children[2].className = o.quality.length ? "flag" : "";
}

export function createTriage({ alerts }) {
  const rows = new Map();
  const patients = new Map();

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

  function render() {
    const list = [...patients.values()].sort(comparePatients);
    const out = list.map((p) => {
      let tr = rows.get(p.id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.patientRow = p.id;
        ["Patient", "Glucose", "SpO2", "Pulse", "Worst alert", "Devices"].forEach((label) => labelled(tr.insertCell(), label));
        const name = button(p.name, { patient: p.id });
        name.className = "link";
        tr.cells[0].append(name);
        rows.set(p.id, tr);
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
    for (const id of rows.keys()) if (!patients.has(id)) rows.delete(id);
    placeRows($("#patients tbody"), out);
    $("#no-patients").hidden = list.length > 0;
  }

  return {
    patients,
    render,
    set(list) { patients.clear(); for (const p of list) patients.set(p.id, p); render(); },
    clear() { patients.clear(); rows.clear(); $("#patients tbody").replaceChildren(); },
  };
}
