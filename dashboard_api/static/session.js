"use strict";
// The signed-in user of this browser tab: the bearer token (sessionStorage, never a URL or a
// cookie), API calls with it, and the user's glucose unit. Shared by every page.
import { setGlucoseUnit } from "./units.js";

const KEY = "telehealth-token";
let token = sessionStorage.getItem(KEY);
let onSignedOut = () => {};
export let me = null;

export function hasToken() { return Boolean(token); }
export function currentToken() { return token; }
export function whenSignedOut(callback) { onSignedOut = callback; }

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && token) {
    forget();
    onSignedOut("Your session has ended; please sign in again.");
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(body?.detail || `${response.status} ${response.statusText}`, response.status, body);
  return body;
}

function forget() {
  token = null;
  me = null;
  sessionStorage.removeItem(KEY);
}

/** Use `newToken`; resolves to /me, or rejects (and forgets the token) if the role is not allowed. */
export async function useToken(newToken, roles) {
  token = newToken;
  try {
    const who = await api("/api/v1/auth/me");
    if (roles && !roles.includes(who.role)) {
      throw new Error(`this page is for ${roles.join(" or ")} accounts; you are signed in as ${who.role}`);
    }
    me = who;
    setGlucoseUnit(who.glucose_unit);
    sessionStorage.setItem(KEY, token);
    return who;
  } catch (error) {
    forget();
    throw error;
  }
}

export async function signInWithPassword(username, password, roles) {
  token = null;
  const r = await api("/api/v1/auth/token", { method: "POST", body: JSON.stringify({ username, password }) });
  return useToken(r.access_token, roles);
}

export async function signOut() {
  if (token) {
    try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* signed out here anyway */ }
  }
  forget();
}

/** Save the user's glucose unit; resolves to the updated /me. */
export async function chooseGlucoseUnit(unit) {
  me = await api("/api/v1/auth/me/preferences", { method: "PUT", body: JSON.stringify({ glucose_unit: unit }) });
  setGlucoseUnit(me.glucose_unit);
  return me;
}
