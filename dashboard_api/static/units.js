"use strict";
// Glucose in the user's unit (mmol/L or mg/dL, a preference stored with the user). The API
// speaks mmol/L; values are converted only for display and for what the user types.

export const MG_DL_PER_MMOL_L = 18.01559;
let unit = "mmol/L";

export function glucoseUnit() { return unit; }
export function setGlucoseUnit(u) { unit = u === "mg/dL" ? "mg/dL" : "mmol/L"; }

/** mmol/L -> the user's unit (a number). */
export function toUnit(mmol) { return unit === "mg/dL" ? mmol * MG_DL_PER_MMOL_L : mmol; }
/** The user's unit -> mmol/L. */
export function fromUnit(v) { return unit === "mg/dL" ? v / MG_DL_PER_MMOL_L : v; }
export function digits() { return unit === "mg/dL" ? 0 : 1; }

/** "5.4" or "97" (no unit). mg/dL is rounded to whole numbers, as meters show it. */
export function glucoseNumber(mmol) {
  if (mmol === null || mmol === undefined) return "–";
  const v = toUnit(mmol);
  return unit === "mg/dL" ? String(Math.floor(v + 0.5)) : v.toFixed(1);
}
export function glucoseText(mmol) { return mmol == null ? "–" : `${glucoseNumber(mmol)} ${unit}`; }

/** A signed change: "+0.3" / "−5". */
export function glucoseDelta(mmol) {
  const v = toUnit(mmol);
  const text = unit === "mg/dL" ? String(Math.round(Math.abs(v))) : Math.abs(v).toFixed(1);
  if (Number(text) === 0) return "±0";
  return `${v > 0 ? "+" : "−"}${text}`;
}

/** Consensus lines, in the user's unit, as the labels name them. */
export function rangeLabel(lowMmol, highMmol) {
  return unit === "mg/dL"
    ? `${Math.round(lowMmol * MG_DL_PER_MMOL_L)}–${Math.round(highMmol * MG_DL_PER_MMOL_L)} mg/dL`
    : `${lowMmol}–${highMmol} mmol/L`;
}
/** The consensus boundaries in each unit (whole mg/dL or one-decimal mmol/L). */
export const LINES = {
  "mmol/L": { veryLow: 3.0, low: 3.9, high: 10.0, veryHigh: 13.9 },
  "mg/dL": { veryLow: 54, low: 70, high: 180, veryHigh: 250 },
};
export function lines() { return LINES[unit]; }

/** Any observation in its display unit: glucose converted, others as stored. */
export function observationText(code, value, storedUnit) {
  if (value === null || value === undefined) return "–";
  if (code === "glucose" || code === "glucose_forecast" || code === "glucose_level") return glucoseText(value);
  return `${Number(value).toFixed(0)} ${storedUnit ?? (code === "spo2" ? "%" : "/min")}`;
}

export const TRENDS = {
  rising_quickly: { arrow: "⇈", words: "rising quickly" },
  rising: { arrow: "↑", words: "rising" },
  rising_slowly: { arrow: "↗", words: "rising slowly" },
  steady: { arrow: "→", words: "steady" },
  falling_slowly: { arrow: "↘", words: "falling slowly" },
  falling: { arrow: "↓", words: "falling" },
  falling_quickly: { arrow: "⇊", words: "falling quickly" },
};

/** The consensus band of a stored value, decided on whole mg/dL as the API decides it. */
export function bandOf(mmol) {
  const mg = Math.floor(mmol * MG_DL_PER_MMOL_L + 0.5);
  if (mg < 54) return "very_low";
  if (mg < 70) return "low";
  if (mg <= 180) return "target";
  if (mg <= 250) return "high";
  return "very_high";
}
