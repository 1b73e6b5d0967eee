"use strict";
// The patient's alert thresholds form. Glucose fields are in the user's unit (stored in
// mmol/L). Every error names the field as the form shows it, and marks that field invalid.
import { absolute } from "./format.js";
import { api } from "./session.js";
import { digits, fromUnit, glucoseUnit, MG_DL_PER_MMOL_L, toUnit } from "./units.js";

const $ = (sel) => document.querySelector(sel);
const GLUCOSE = ["glucose_urgent_low", "glucose_low", "glucose_high", "glucose_predicted_low"];
const OPTIONAL = new Set(["spo2_warning", "spo2_urgent", "glucose_predicted_low"]);
export const FIELDS = ["glucose_urgent_low", "glucose_low", "glucose_high", "glucose_predicted_low",
  "glucose_predicted_minutes", "glucose_low_minutes", "glucose_episode_end_minutes", "spo2_scale",
  "spo2_warning", "spo2_urgent", "pulse_low_urgent", "pulse_low_warning", "pulse_high_warning",
  "pulse_high_urgent", "warning_after"];
const SPO2_SCALES = { 1: [93, 91], 2: [87, 85] };

const form = () => $("#thresholds-form");

/** The field's name as the user sees it: its group and its label, e.g. "Glucose: Warning below". */
export function fieldLabel(name) {
  const input = form().elements[name];
  if (!input) return name;
  const label = form().querySelector(`label[for="${input.id}"]`)?.textContent.trim() ?? name;
  const legend = input.closest("fieldset")?.querySelector("legend")?.textContent.trim();
  return legend ? `${legend.replace(/\s*\(.*\)$/, "")}: ${label}` : label;
}

/** Replace API field names in a server message with the labels on the form. */
export function humanise(message) {
  const plain = message.replace(/\bbody(\.|: )/g, "").replace(/Value error, /g, "");
  return FIELDS.reduce((text, name) => text.replaceAll(new RegExp(`\\b${name}\\b`, "g"), `“${fieldLabel(name)}”`), plain);
}

function setUnitAttributes() {
  const mg = glucoseUnit() === "mg/dL";
  for (const name of GLUCOSE) {
    const input = form().elements[name];
    input.step = mg ? "1" : "0.1";
    input.min = mg ? "10" : "0.5";
    input.max = mg ? "720" : "40";
  }
  for (const span of document.querySelectorAll(".glucose-unit")) span.textContent = glucoseUnit();
}

export function fillForm(t) {
  setUnitAttributes();
  for (const name of FIELDS) {
    const input = form().elements[name];
    const v = t[name];
    input.value = v == null ? "" : GLUCOSE.includes(name) ? Number(toUnit(v).toFixed(digits())) : v;
  }
  clearErrors();
}

function clearErrors() {
  for (const name of FIELDS) {
    form().elements[name].removeAttribute("aria-invalid");
    form().elements[name].removeAttribute("aria-describedby");
  }
}

function showErrors(message, names) {
  clearErrors();
  for (const name of names) {
    form().elements[name]?.setAttribute("aria-invalid", "true");
    form().elements[name]?.setAttribute("aria-describedby", "thresholds-error");
  }
  const box = $("#thresholds-error");
  box.textContent = message;
  (names.length ? form().elements[names[0]] : box).focus();
}

/** What the user typed, checked as the API will check it, with messages that use the labels. */
export function readForm() {
  const body = {};
  const problems = [];
  for (const name of FIELDS) {
    const raw = form().elements[name].value.trim();
    if (raw === "") {
      if (OPTIONAL.has(name)) { body[name] = null; continue; }
      problems.push([`${fieldLabel(name)}: a value is needed.`, [name]]);
      continue;
    }
    const n = Number(raw);
    if (!Number.isFinite(n)) { problems.push([`${fieldLabel(name)}: “${raw}” is not a number.`, [name]]); continue; }
    // mg/dL typed values become mmol/L with enough digits to come back as the same whole number
    body[name] = GLUCOSE.includes(name) ? (glucoseUnit() === "mg/dL" ? Number((n / MG_DL_PER_MMOL_L).toFixed(4)) : fromUnit(n)) : n;
  }
  if (!problems.length) {
    const order = (names, words) => {
      const vals = names.map((n) => body[n]);
      if (vals.every((v, i) => i === 0 || vals[i - 1] < v)) return;
      problems.push([`${names.map(fieldLabel).join(", then ")} must be ${words}.`, names]);
    };
    order(["glucose_urgent_low", "glucose_low", "glucose_high"], "in rising order");
    if (body.glucose_predicted_low != null
      && !(body.glucose_urgent_low <= body.glucose_predicted_low && body.glucose_predicted_low <= body.glucose_low)) {
      problems.push([`${fieldLabel("glucose_predicted_low")} must be between ${fieldLabel("glucose_urgent_low")} and ${fieldLabel("glucose_low")} (or empty).`,
        ["glucose_predicted_low"]]);
    }
    const [w, u] = SPO2_SCALES[body.spo2_scale];
    if (!((body.spo2_urgent ?? u) < (body.spo2_warning ?? w))) {
      problems.push([`${fieldLabel("spo2_urgent")} must be below ${fieldLabel("spo2_warning")}.`, ["spo2_urgent", "spo2_warning"]]);
    }
    order(["pulse_low_urgent", "pulse_low_warning", "pulse_high_warning", "pulse_high_urgent"], "in rising order");
  }
  return { body, problems };
}

export function createThresholdsForm({ onSaved }) {
  let patientId = null;
  let current = null;

  async function load(id) {
    patientId = id;
    const h = await api(`/api/v1/patients/${id}/thresholds`);
    current = h.current.thresholds;
    fillForm(current);
    const c = h.current;
    $("#thresholds-version").textContent = c.version
      ? `version ${c.version}, by ${c.changed_by}, ${absolute(c.changed_at)}` : "defaults (never changed)";
    $("#thresholds-error").textContent = "";
    $("#thresholds-saved").textContent = "";
    return current;
  }

  form().addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#thresholds-error").textContent = "";
    $("#thresholds-saved").textContent = "";
    const { body, problems } = readForm();
    if (problems.length) {
      showErrors(problems.map((p) => p[0]).join(" "), problems.flatMap((p) => p[1]));
      return;
    }
    try {
      // The PUT replaces the whole set: settings the form does not show keep their values.
      const whole = { ...current, ...body };
      const saved = await api(`/api/v1/patients/${patientId}/thresholds`, { method: "PUT", body: JSON.stringify(whole) });
      current = saved.thresholds;
      clearErrors();
      $("#thresholds-saved").textContent = `Saved as version ${saved.version}. New readings are judged against them.`;
      $("#thresholds-version").textContent = `version ${saved.version}, by ${saved.changed_by}, ${absolute(saved.changed_at)}`;
      onSaved(current);
    } catch (error) {
      const names = (error.body?.errors ?? []).map((e) => e.loc.at(-1)).filter((n) => FIELDS.includes(n));
      const mentioned = FIELDS.filter((n) => error.message.includes(n));
      showErrors(humanise(error.message), names.length ? names : mentioned);
    }
  });

  return { load, get current() { return current; }, refill() { if (current) fillForm(current); } };
}
