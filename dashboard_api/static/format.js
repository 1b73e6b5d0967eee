"use strict";
// Times shown both ways: absolute (local clock, date when not today) and relative.

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dated = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

export function absolute(iso) {
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? clock.format(d) : dated.format(d);
}

export function relative(iso) {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 0) return "in the future";
  if (s < 60) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** A <time> with the absolute time and a relative part that refreshRelative() keeps current. */
export function timeElement(iso) {
  const wrapper = document.createElement("span");
  wrapper.className = "when";
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = full.format(new Date(iso));
  time.textContent = absolute(iso);
  const rel = document.createElement("span");
  rel.className = "rel";
  rel.dataset.at = iso;
  rel.textContent = ` (${relative(iso)})`;
  wrapper.append(time, rel);
  return wrapper;
}

export function setTime(container, iso) {
  const current = container.querySelector("time");
  if (current && current.dateTime === iso) return;
  container.replaceChildren(timeElement(iso));
}

export function refreshRelative(root = document) {
  for (const rel of root.querySelectorAll(".rel[data-at]")) rel.textContent = ` (${relative(rel.dataset.at)})`;
}

/** Minutes as "1 h 5 min" / "25 min" / "40 s". */
export function duration(minutes) {
  if (minutes < 1) return `${Math.round(minutes * 60)} s`;
  const m = Math.round(minutes);
  if (m < 60) return `${m} min`;
  return m % 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m / 60} h`;
}

/** A time in another time zone (the patient's): "14:05". */
export function clockIn(iso, timeZone) {
  return new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", timeZone }).format(new Date(iso));
}
