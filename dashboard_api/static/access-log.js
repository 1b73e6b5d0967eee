"use strict";
// A patient's view of their access log: who, when, why and what, in words (the API's
// `description` of each action). DOM built with textContent only; no inline script.
import { api, hasToken, currentToken, signInWithPassword, signOut, useToken, whenSignedOut } from "./session.js";

const $ = (sel) => document.querySelector(sel);
const ROLES = ["patient"];
let patientId = null;
let oldest = null;

const PURPOSES = {
  "direct-care": "direct care (your care team)",
  "self-access": "you, looking at your own records",
  administration: "administration",
  research: "research",
  account: "account security",
};
const ROLE_NAMES = { clinician: "clinician", patient: "patient", admin: "administrator", researcher: "researcher", operator: "operator (command line)" };

function cell(row, label, value) {
  const td = row.insertCell();
  td.dataset.label = label;
  if (value instanceof Node) td.append(value); else td.textContent = value;
}

function render(entries) {
  const body = $("#log tbody");
  for (const e of entries) {
    const tr = body.insertRow();
    const time = document.createElement("time");
    time.dateTime = e.at;
    time.textContent = new Date(e.at).toLocaleString();
    cell(tr, "When", time);
    cell(tr, "Who", e.actor);
    cell(tr, "Role", ROLE_NAMES[e.role] ?? e.role);
    cell(tr, "Why", PURPOSES[e.purpose] ?? e.purpose.replaceAll("-", " "));
    cell(tr, "What", e.description);
  }
  if (entries.length) oldest = entries[entries.length - 1].id;
  $("#empty").hidden = body.children.length > 0;
  $("#more").hidden = entries.length < 100;
}

async function load() {
  const query = oldest ? `?limit=100&before=${oldest}` : "?limit=100";
  render(await api(`/api/v1/patients/${patientId}/access-log${query}`));
}

async function signedIn(who) {
  patientId = who.patient_id;
  $("#who").textContent = who.username;
  $("#login").hidden = true; $("#log").hidden = false; $("#logout").hidden = false;
  $("#log tbody").replaceChildren(); oldest = null;
  await load();
}

function showSignedOut(reason = "") {
  $("#login").hidden = false; $("#log").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  $("#error").textContent = reason;
}
whenSignedOut(showSignedOut);

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#error").textContent = "";
  const form = new FormData(event.target);
  try { await signedIn(await signInWithPassword(form.get("username"), form.get("password"), ROLES)); }
  catch (e) { $("#error").textContent = e.message; }
});
$("#logout").addEventListener("click", async () => { await signOut(); showSignedOut(); });
$("#more").addEventListener("click", () => load().catch((e) => { $("#error").textContent = e.message; }));
if (hasToken()) useToken(currentToken(), ROLES).then(signedIn).catch((e) => showSignedOut(e.message));
