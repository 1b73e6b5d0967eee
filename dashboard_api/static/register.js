"use strict";
// The public register of research projects and releases (no login). DOM built with
// textContent only; loaded as a file, so the page holds under script-src 'self'.

function table(caption, headers, rows) {
  const t = document.createElement("table");
  t.className = "cards";
  const c = t.createCaption();
  c.textContent = caption;
  c.className = "visually-hidden";
  const head = t.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    head.append(th);
  }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    r.forEach((v, i) => {
      const td = tr.insertCell();
      td.dataset.label = headers[i];
      td.textContent = v;
    });
  }
  return t;
}

function cohort(c) {
  const parts = Object.entries(c ?? {}).filter(([, v]) => v != null && !(Array.isArray(v) && !v.length)).map(([k, v]) => `${k.replaceAll("_", " ")}: ${Array.isArray(v) ? v.join(", ") : v}`);
  return parts.join("; ") || "everyone who consents";
}

async function load() {
  const box = document.getElementById("projects");
  const response = await fetch("/api/v1/research/register");
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const data = await response.json();
  box.replaceChildren();
  if (!data.projects.length) { box.textContent = "No projects registered."; return; }
  for (const p of data.projects) {
    const section = document.createElement("section");
    section.className = "card";
    const h = document.createElement("h2");
    h.textContent = `${p.title} (${p.slug})`;
    section.append(h);
    const budget = p.epsilon_budget === null ? "no differential privacy"
      : `ε ${p.epsilon_per_release} per release, budget ${p.epsilon_budget}, spent ${p.epsilon_spent}`;
    section.append(table(`Project ${p.slug}`, ["Owner", "Purpose", "Codes", "Cohort", "Runs", "Privacy"], [[
      p.owner, p.purpose, p.codes.join(", "), cohort(p.cohort), `${p.starts_on} to ${p.ends_on}`, budget,
    ]]));
    const rows = p.releases.map((r) => [
      r.id, new Date(r.released_at).toLocaleString(), r.kind, r.code, `${r.bucket_seconds / 3600} h`, r.group_by ?? "–",
      `${r.period_start} to ${r.period_end}`, r.cells, r.patients_rounded ?? "not shown (DP)", r.epsilon ?? "–",
    ]);
    if (rows.length) {
      section.append(table(`Releases of ${p.slug}`, ["Release", "When", "Kind", "Code", "Bucket", "By", "Period", "Cells", "Patients", "ε"], rows));
    } else {
      const none = document.createElement("p");
      none.textContent = "No releases yet.";
      section.append(none);
    }
    box.append(section);
  }
}

load().catch((e) => { document.getElementById("projects").textContent = `Could not load the register: ${e.message}`; });
