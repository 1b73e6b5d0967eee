"use strict";
// The consensus AGP report (Battelino et al. 2019/2023, one page): time in ranges, the metrics
// with their targets, the AGP, and 14 daily profiles, in the patient's time zone and the
// reader's glucose unit. For the patient's clinicians and the patient; printable (agp.css).
import { agpChart, dayChart } from "./charts.js";
import { api, hasToken, currentToken, signInWithPassword, useToken, whenSignedOut } from "./session.js";
import { metricsTable, sufficiencyNote, timeInRanges } from "./summary.js";
import { glucoseNumber, glucoseUnit, lines, toUnit } from "./units.js";

const $ = (sel) => document.querySelector(sel);
const ROLES = ["clinician", "patient"];

function dateIn(value, timeZone, opts = { day: "numeric", month: "short", year: "numeric" }) {
  return new Intl.DateTimeFormat(undefined, { ...opts, timeZone }).format(new Date(value));
}

function renderDays(profiles) {
  const list = $("#r-days");
  list.replaceChildren();
  const l = lines();
  const top = glucoseUnit() === "mg/dL" ? 400 : 22.2;
  profiles.days.forEach((day, i) => {
    const item = document.createElement("li");
    item.className = "agp-day";
    const figure = document.createElement("figure");
    figure.id = `r-day-${i}`;
    figure.className = "chart day-chart";
    const caption = document.createElement("figcaption");
    const label = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" })
      .format(new Date(`${day.date}T12:00:00Z`));
    caption.textContent = label;
    if (day.in_range_pct != null) {
      const tir = document.createElement("small");
      tir.textContent = ` ${Math.round(day.in_range_pct)} % in range`;
      caption.append(tir);
    }
    figure.append(caption);
    item.append(figure);
    list.append(item);
    dayChart(figure, {
      points: day.points.map((p) => ({ minute_of_day: p.minute_of_day, v: toUnit(p.value) })),
      unit: glucoseUnit(), target: [l.low, l.high], top,
      title: `Glucose on ${label}`,
      description: day.readings
        ? `${label}: ${day.readings} readings from ${glucoseNumber(Math.min(...day.points.map((p) => p.value)))} to `
          + `${glucoseNumber(Math.max(...day.points.map((p) => p.value)))} ${glucoseUnit()}, ${Math.round(day.in_range_pct)} % in range.`
        : `${label}: no CGM readings.`,
    });
  });
}

async function load(patientId) {
  const [patient, summary, profiles] = await Promise.all([
    api(`/api/v1/patients/${patientId}`),
    api(`/api/v1/patients/${patientId}/glucose-summary?days=14`),
    api(`/api/v1/patients/${patientId}/glucose-days?days=14`),
  ]);
  const zone = summary.timezone;
  document.title = `AGP report: ${patient.name}`;
  $("#r-name").textContent = patient.name;
  $("#r-nhs").textContent = patient.nhs_number;
  $("#r-born").textContent = patient.birth_date;
  $("#r-period").textContent = `${summary.days} days: ${dateIn(summary.start, zone)} – ${dateIn(summary.end, zone)}`;
  $("#r-zone").textContent = zone;
  $("#r-generated").textContent = new Date().toLocaleString();
  const note = sufficiencyNote(summary);
  $("#r-sufficiency").replaceChildren(...(note ? [note] : []));
  $("#r-metrics").replaceChildren(metricsTable(summary));
  $("#r-tir").replaceChildren(timeInRanges(summary));
  const l = lines();
  const slices = summary.agp.map((s) => ({
    minute_of_day: s.minute_of_day, p5: toUnit(s.p5), p25: toUnit(s.p25), p50: toUnit(s.p50), p75: toUnit(s.p75), p95: toUnit(s.p95),
  }));
  agpChart($("#r-agp"), {
    slices, unit: glucoseUnit(), target: [l.low, l.high], top: glucoseUnit() === "mg/dL" ? 350 : 20, height: 260,
    description: summary.agp.length
      ? `Median glucose by time of day from ${glucoseNumber(Math.min(...summary.agp.map((a) => a.p50)))} to `
        + `${glucoseNumber(Math.max(...summary.agp.map((a) => a.p50)))} ${glucoseUnit()} (${zone}).`
      : "No CGM readings in the last 14 days.",
  });
  renderDays(profiles);
  $("#report").hidden = false;
  $("#print").hidden = false;
}

async function start(who) {
  $("#login").hidden = true;
  $("#who").textContent = `${who.username} (${who.role})`;
  const requested = new URLSearchParams(location.search).get("patient");
  const patientId = requested || who.patient_id;
  if (!patientId) {
    $("#report").hidden = false;
    $("#report-error").textContent = "No patient chosen: open this report from a patient in the dashboard.";
    return;
  }
  try {
    await load(patientId);
  } catch (error) {
    $("#report").hidden = false;
    $("#report-error").textContent = `Could not load the report: ${error.message}`;
  }
}

function showLogin(reason = "") {
  $("#login").hidden = false;
  $("#report").hidden = true;
  $("#print").hidden = true;
  $("#login-error").textContent = reason;
}
whenSignedOut(showLogin);

$("#print").addEventListener("click", () => window.print());
$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try { await start(await signInWithPassword(form.get("username"), form.get("password"), ROLES)); }
  catch (error) { $("#login-error").textContent = error.message; }
});
if (hasToken()) useToken(currentToken(), ROLES).then(start).catch((error) => showLogin(error.message));
else showLogin();
