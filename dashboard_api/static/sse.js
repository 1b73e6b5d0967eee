"use strict";
// The alert stream read with fetch(), so the bearer token travels in the Authorization header
// and never in a URL (EventSource cannot send headers). Parses text/event-stream itself,
// resumes with Last-Event-ID after a drop, and reconnects when heartbeats stop.

const HEARTBEAT_TIMEOUT_MS = 45000; // the server sends a comment every 15 s

async function readEvents(body, onChunk, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  let event = "";
  let id;
  let retry;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    buffer += value;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      if (match === null) break;
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      if (match[0] === "\r" && match.index === buffer.length - 1) break;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      if (line === "") {
        dispatch({ event: event || "message", data: data.length ? data.join("\n") : null, id, retry });
        data = []; event = ""; id = undefined; retry = undefined;
        continue;
      }
      if (line.startsWith(":")) continue; // comment: a heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "data") data.push(text);
      else if (field === "event") event = text;
      else if (field === "id" && !text.includes("\0")) id = text;
      else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Open the stream. onEvent(name, data) gets every event with data, in order; onState(state)
 * gets "connecting", "live" or "reconnecting"; onUnauthorized() when the token is refused.
 */
export function openAlertStream({ token, onEvent, onState, onUnauthorized }) {
  let lastEventId = null;
  let retryMs = 2000;
  let stopped = false;
  let controller = null;

  async function run() {
    onState("connecting");
    while (!stopped) {
      controller = new AbortController();
      let watchdog = setTimeout(() => controller.abort(), HEARTBEAT_TIMEOUT_MS);
      const resetWatchdog = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), HEARTBEAT_TIMEOUT_MS);
      };
      const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      try {
        const response = await fetch("/api/v1/alerts/stream", { headers, signal: controller.signal, cache: "no-store" });
        if (response.status === 401) { stopped = true; onUnauthorized(); return; }
        if (!response.ok) throw new Error(`the alert stream answered ${response.status}`);
        onState("live");
        await readEvents(response.body, resetWatchdog, (message) => {
          if (message.retry !== undefined) retryMs = message.retry;
          if (message.event === "signed-out") { stopped = true; onUnauthorized(); return; }
          if (message.data !== null) {
            onEvent(message.event, JSON.parse(message.data));
          }
          // Only after the event was applied: a resume must not skip it.
          if (message.id !== undefined) lastEventId = message.id;
        });
      } catch (error) {
        if (stopped) return;
        console.warn("alert stream interrupted:", error);
      } finally {
        clearTimeout(watchdog);
      }
      if (stopped) return;
      onState("reconnecting");
      await sleep(retryMs);
    }
  }

  run();
  return {
    close() {
      stopped = true;
      controller?.abort();
    },
  };
}
