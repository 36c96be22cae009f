// toolstream's page: plain JavaScript over the public routes, no build step.
//
// - GET /v1/tools                  the tools; a form per tool from its input schema
// - GET /v1/ws                     one WebSocket for every run the page starts or follows
//                                  (run_tool, run_agent, watch): a browser opens at most six
//                                  HTTP/1.1 connections per server, so one stream per run would
//                                  stall the page after a few runs
// - GET /v1/runs, POST .../cancel  the runs list, cancel
//
// With auth on (docs/operations.md, "Auth"), the page asks for a token when a route answers 401,
// keeps it in sessionStorage (this tab only, gone when it closes) and sends it as
// `Authorization: Bearer` on every fetch; a browser's WebSocket cannot set headers, so /v1/ws
// gets it as `?access_token=` (the server takes it out of the URI before anything logs it).
//
// Every payload is the canonical proto3 JSON of the contract's messages (camelCase names,
// 64-bit integers as strings). Text from the server only ever goes into textContent.
"use strict";

// ------------------------------------------------------------------------------------------
// Small helpers.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(code, message, status) {
    super(`${code}: ${message}`);
    this.code = code;
    this.status = status;
  }
}

// An error body `{"code", "message"}` (or whatever came instead) as an ApiError.
async function apiError(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.code) return new ApiError(body.code, body.message || "", response.status);
  } catch (_) { /* not JSON */ }
  return new ApiError(`HTTP ${response.status}`, text || response.statusText, response.status);
}

const TOKEN_KEY = "toolstream.token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// Shows the token form, saying why.
function askForToken(message) {
  const form = document.getElementById("token-form");
  form.hidden = false;
  document.getElementById("token-why").textContent = message;
  document.getElementById("token").focus();
}

async function api(path, options) {
  const headers = new Headers((options && options.headers) || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    const error = await apiError(response);
    askForToken(token() ? "The token was refused." : "This server needs a token.");
    throw error;
  }
  if (!response.ok) throw await apiError(response);
  return response.json();
}

function setUpTokenForm() {
  const form = document.getElementById("token-form");
  form.hidden = !token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("token").value = "";
    document.getElementById("token-why").textContent = value ? "Token set for this tab." : "";
    // A socket opened with the old token serves the old principal: open a new one.
    channel.reset();
    loadTools();
    refreshRuns();
  });
}

function showError(error) {
  const box = document.getElementById("errors");
  const item = el("div", { class: "error" },
    el("span", { text: error.message || String(error) }),
    el("button", { type: "button", class: "close", "aria-label": "dismiss", text: "×",
      onclick: () => item.remove() }));
  box.append(item);
}

function percent(fraction) {
  return Math.max(0, Math.min(100, Math.round(fraction * 100)));
}

// ------------------------------------------------------------------------------------------
// Forms from JSON Schemas.

// The schema of a property made simple for a form: `$ref`s into `$defs` resolved (the
// property's own `description` and `default` win), `T | null` reduced to `T`, and a choice of
// constants (`oneOf: [{const: "a"}, {const: "b"}]`) turned into an `enum`.
function resolve(schema, root) {
  let s = schema || {};
  for (let depth = 0; depth < 8 && s.$ref; depth++) {
    const name = s.$ref.replace(/^#\/(\$defs|definitions)\//, "");
    const { $ref, ...own } = s;
    s = { ...(((root.$defs || root.definitions || {})[name]) || {}), ...own };
  }
  const variants = s.anyOf || s.oneOf;
  if (variants) {
    const real = variants.filter((v) => v.type !== "null").map((v) => resolve(v, root));
    const keep = { description: s.description, default: s.default };
    if (real.length > 0 && real.every((v) => v.const !== undefined)) {
      s = { type: real[0].type, enum: real.map((v) => v.const), ...keep };
    } else if (real.length === 1) {
      s = { ...real[0], ...Object.fromEntries(Object.entries(keep).filter(([, v]) => v !== undefined)) };
    }
  }
  return s;
}

function typeOf(schema) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type) return type;
  if (schema.enum) return "string";
  return "json";
}

// One field: returns [label element, read()] where read() gives the value or undefined (left out).
function field(name, schema, required) {
  const type = typeOf(schema);
  const id = `f-${Math.random().toString(36).slice(2)}`;
  const hint = schema.description ? el("small", { class: "hint", text: schema.description }) : null;
  const title = el("span", { class: "name", text: name + (required ? " *" : "") });
  let input;
  let read;
  if (type === "boolean") {
    input = el("input", { id, name, type: "checkbox", checked: schema.default === true });
    read = () => input.checked;
    return [el("label", { class: "inline", for: id }, input, title, hint), read];
  }
  if (schema.enum) {
    input = el("select", { id, name },
      required ? null : el("option", { value: "", text: "" }),
      ...schema.enum.map((v) => el("option", { value: String(v), text: String(v),
        selected: schema.default === v })));
    read = () => (input.value === "" ? undefined : input.value);
  } else if (type === "integer" || type === "number") {
    input = el("input", { id, name, type: "number", step: type === "integer" ? "1" : "any",
      min: schema.minimum, max: schema.maximum, required,
      value: schema.default !== undefined ? schema.default : undefined });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (type === "string") {
    input = el("input", { id, name, type: "text", required,
      value: schema.default !== undefined ? schema.default : undefined });
    read = () => (input.value === "" && !required ? undefined : input.value);
  } else if (type === "array" && typeOf(resolve(schema.items, {})) === "string") {
    input = el("textarea", { id, name, rows: 2, required, placeholder: "one per line" });
    read = () => {
      const items = input.value.split("\n").map((s) => s.trim()).filter((s) => s !== "");
      return items.length === 0 && !required ? undefined : items;
    };
  } else {
    input = el("textarea", { id, name, rows: 2, required, placeholder: "JSON",
      value: undefined });
    if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
    read = () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch (e) {
        throw new Error(`${name}: not JSON (${e.message})`);
      }
    };
  }
  return [el("label", { for: id }, title, input, hint), read];
}

function toolCard(tool) {
  const schema = tool.inputSchema || {};
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const readers = [];
  const form = el("form", { class: "card tool", "data-tool": tool.name });
  form.append(el("h3", {}, el("span", { text: tool.name }), " ",
    el("span", { class: "kind", text: tool.kind || "" })));
  if (tool.description) form.append(el("p", { class: "description", text: tool.description }));
  for (const [name, property] of Object.entries(properties)) {
    const [label, read] = field(name, resolve(property, schema), required.has(name));
    form.append(label);
    readers.push([name, read]);
  }
  const interval = el("input", { type: "number", min: 0, step: 1, name: "minProgressIntervalMs",
    placeholder: "0" });
  const detached = el("input", { type: "checkbox", name: "detached" });
  form.append(el("details", { class: "options" }, el("summary", { text: "options" }),
    el("label", {}, el("span", { class: "name", text: "at most one progress event per (ms)" }),
      interval),
    el("label", { class: "inline" }, detached, "keep running when this page goes away")));
  form.append(el("button", { type: "submit", class: "run-button", text: `Run ${tool.name}` }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let args;
    try {
      args = {};
      for (const [name, read] of readers) {
        const value = read();
        if (value !== undefined) args[name] = value;
      }
    } catch (e) {
      showError(e);
      return;
    }
    const options = {};
    if (interval.value !== "") options.minProgressIntervalMs = Number(interval.value);
    if (detached.checked) options.onDisconnect = "ON_DISCONNECT_CONTINUE";
    startRun({ type: "run_tool", tool: tool.name, arguments: args, options }, tool.name);
  });
  return form;
}

// ------------------------------------------------------------------------------------------
// A run on the page: a panel with a bar (a bar per tool call for agents), text, result, error.

class RunView {
  constructor(title) {
    this.runId = "";
    this.lastSequence = "0";
    this.ended = false;
    this.calls = new Map();
    this.bar = progressBar("run");
    this.status = el("div", { class: "status" });
    this.text = el("pre", { class: "text", hidden: true });
    this.callsBox = el("div", { class: "calls" });
    this.result = el("pre", { class: "result", hidden: true });
    this.error = el("div", { class: "run-error", role: "alert", hidden: true });
    this.idLabel = el("code", { class: "run-id", text: "starting…" });
    this.cancelButton = el("button", { type: "button", text: "Cancel", disabled: true,
      onclick: () => this.cancel() });
    this.resumeButton = el("button", { type: "button", text: "Resume", hidden: true,
      onclick: () => this.resume() });
    this.root = el("article", { class: "card run", "data-state": "running", "data-title": title },
      el("header", {}, el("strong", { text: title }), " ", this.idLabel, " ",
        this.cancelButton, this.resumeButton,
        el("button", { type: "button", class: "close", "aria-label": "remove", text: "×",
          onclick: () => this.root.remove() })),
      this.bar.root, this.status, this.text, this.callsBox, this.result, this.error);
    const live = document.getElementById("live");
    live.querySelector(".hint")?.remove();
    live.prepend(this.root);
  }

  setRunId(runId) {
    if (!runId || this.runId) return;
    this.runId = runId;
    this.root.dataset.runId = runId;
    this.idLabel.textContent = runId;
    this.cancelButton.disabled = this.ended;
  }

  // One RunEvent (canonical JSON) of this run.
  onEvent(name, event) {
    this.setRunId(event.runId);
    if (event.sequence && event.sequence !== "0") this.lastSequence = event.sequence;
    switch (name) {
      case "progress": {
        const p = event.progress || {};
        const target = p.callId ? this.call(p.callId, p.tool) : this.bar;
        if (p.progress !== undefined) target.set(p.progress);
        if (p.status !== undefined) (p.callId ? target.status : this.status).textContent = p.status;
        break;
      }
      case "message":
        this.text.hidden = false;
        this.text.textContent += (event.message && event.message.text) || "";
        break;
      case "tool_call_started": {
        const c = event.toolCallStarted;
        this.call(c.callId, c.tool);
        break;
      }
      case "tool_call_finished": {
        const c = event.toolCallFinished;
        const view = this.call(c.callId, c.tool);
        if (c.error !== undefined) {
          view.root.classList.add("failed");
          view.status.textContent = `failed: ${c.error}`;
        } else {
          view.set(1);
          view.status.textContent = "done";
        }
        break;
      }
      case "result":
        this.bar.set(1);
        this.result.hidden = false;
        this.result.textContent = JSON.stringify(event.result ? event.result.value : null, null, 2);
        this.end("succeeded");
        break;
      case "gap":
        this.status.textContent = `events ${event.gap.fromSequence}–${event.gap.toSequence} are gone: ${event.gap.reason}`;
        break;
      default: // started, heartbeat
        break;
    }
  }

  // `event: error` ({"code", "message"}) or an error before the stream began.
  onError(error) {
    this.error.hidden = false;
    this.error.textContent = `${error.code}: ${error.message}`;
    this.end(error.code === "CANCELLED" ? "cancelled" : "failed");
  }

  // The stream broke before the run's end: offer to resume from the last event seen.
  onLost(reason) {
    if (this.ended) return;
    this.status.textContent = `connection lost (${reason}); the run may go on`;
    this.resumeButton.hidden = !this.runId;
    this.root.dataset.state = "lost";
  }

  end(state) {
    this.ended = true;
    this.root.dataset.state = state;
    this.cancelButton.disabled = true;
    this.resumeButton.hidden = true;
    scheduleRunsRefresh();
  }

  call(callId, tool) {
    let view = this.calls.get(callId);
    if (!view) {
      view = progressBar("call", `${tool || "call"} (${callId})`);
      view.status = el("div", { class: "status" });
      view.root.append(view.status);
      this.calls.set(callId, view);
      this.callsBox.append(view.root);
    }
    return view;
  }

  async cancel() {
    if (!this.runId) return;
    this.cancelButton.disabled = true;
    try {
      await api(`/v1/runs/${encodeURIComponent(this.runId)}/cancel`, { method: "POST" });
    } catch (e) {
      showError(e);
      this.cancelButton.disabled = this.ended;
    }
  }

  // Follows the run again from the last event seen (after the socket was lost).
  resume() {
    this.resumeButton.hidden = true;
    this.root.dataset.state = "running";
    this.status.textContent = "";
    this.follow({ type: "watch", runId: this.runId, after: this.lastSequence });
  }

  // Sends `message` (run_tool, run_agent or watch) over the page's socket; its frames come here.
  follow(message) {
    channel.call(message, this).catch((e) => this.onLost(e.message));
  }
}

function progressBar(kind, label) {
  const fill = el("div", { class: "fill" });
  const pct = el("span", { class: "pct", text: "0%" });
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0,
    "aria-valuemax": 100, "aria-valuenow": 0 }, fill, pct);
  const root = el("div", { class: `progress ${kind}` },
    label ? el("div", { class: "label", text: label }) : null, bar);
  return {
    root,
    set(fraction) {
      const value = percent(fraction);
      fill.style.width = `${value}%`;
      pct.textContent = `${value}%`;
      bar.setAttribute("aria-valuenow", String(value));
    },
  };
}

// ------------------------------------------------------------------------------------------
// The page's WebSocket: many runs at once, each tagged with an id (docs/web.md, "WebSocket").

const EVENT_NAMES = {
  started: "started", progress: "progress", result: "result",
  toolCallStarted: "tool_call_started", toolCallFinished: "tool_call_finished",
  message: "message", gap: "gap", heartbeat: "heartbeat",
};

class Channel {
  constructor() {
    this.socket = null; // a Promise of an open WebSocket
    this.calls = new Map(); // id -> RunView
    this.nextId = 1;
  }

  open() {
    if (this.socket) return this.socket;
    const opened = new Promise((resolve, reject) => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const auth = token() ? `?access_token=${encodeURIComponent(token())}` : "";
      const ws = new WebSocket(`${scheme}://${location.host}/v1/ws${auth}`);
      ws.onopen = () => resolve(ws);
      ws.onmessage = (message) => this.dispatch(JSON.parse(message.data));
      ws.onclose = (event) => {
        if (this.socket === opened) this.socket = null;
        reject(new Error("cannot open the WebSocket /v1/ws"));
        const reason = event.reason || `the WebSocket closed (${event.code})`;
        for (const view of this.calls.values()) view.onLost(reason);
        this.calls.clear();
      };
    });
    this.socket = opened;
    return this.socket;
  }

  // Closes the socket (after the token changed); the next call opens a new one.
  reset() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.then((ws) => ws.close(), () => {});
  }

  async call(message, view) {
    const ws = await this.open();
    const id = `c${this.nextId++}`;
    this.calls.set(id, view);
    ws.send(JSON.stringify({ ...message, id }));
  }

  dispatch(frame) {
    const view = frame.id === undefined ? undefined : this.calls.get(frame.id);
    if (frame.error) {
      this.calls.delete(frame.id);
      if (view) view.onError(frame.error);
      if (!view || frame.error.code !== "CANCELLED") showError(new ApiError(frame.error.code, frame.error.message));
      return;
    }
    if (!view) return;
    const name = Object.keys(EVENT_NAMES).find((key) => frame.event[key] !== undefined);
    if (!name) return;
    view.onEvent(EVENT_NAMES[name], frame.event);
    if (name === "started") scheduleRunsRefresh();
    if (name === "result") this.calls.delete(frame.id);
  }
}

const channel = new Channel();

function startRun(message, title) {
  new RunView(title).follow(message);
}

// ------------------------------------------------------------------------------------------
// The runs list.

let refreshTimer = null;
function scheduleRunsRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshRuns, 300);
}

function shortState(state) {
  return (state || "RUN_STATE_UNSPECIFIED").replace("RUN_STATE_", "").toLowerCase();
}

async function refreshRuns() {
  clearTimeout(refreshTimer);
  const state = document.getElementById("runs-state").value;
  const query = new URLSearchParams({ pageSize: "25" });
  if (state) query.set("state", state);
  try {
    const page = await api(`/v1/runs?${query}`);
    const rows = (page.runs || []).map((run) => {
      const state = shortState(run.state);
      const top = (run.progress || []).find((p) => !p.callId);
      const progress = state === "succeeded" ? 1 : top && top.progress !== undefined ? top.progress : null;
      const watch = el("button", { type: "button", text: state === "running" ? "Resume" : "Replay",
        onclick: () => {
          const view = new RunView(run.tool || "agent");
          view.setRunId(run.runId);
          view.follow(state === "running"
            ? { type: "watch", runId: run.runId, fromLatest: true }
            : { type: "watch", runId: run.runId, after: "0" });
        } });
      const cancel = state === "running"
        ? el("button", { type: "button", text: "Cancel", onclick: async () => {
          try {
            await api(`/v1/runs/${encodeURIComponent(run.runId)}/cancel`, { method: "POST" });
          } catch (e) {
            showError(e);
          }
          refreshRuns();
        } })
        : null;
      return el("tr", { "data-run-id": run.runId, "data-state": state },
        el("td", {}, el("code", { text: run.runId.slice(0, 8), title: run.runId })),
        el("td", { text: run.agent ? "agent" : run.tool }),
        el("td", { class: `state ${state}`, text: state,
          title: run.errorMessage || "" }),
        el("td", { text: progress === null ? "" : `${percent(progress)}%` }),
        el("td", { text: run.createTime ? new Date(run.createTime).toLocaleTimeString() : "" }),
        el("td", {}, watch, cancel));
    });
    document.getElementById("runs").replaceChildren(...rows);
  } catch (e) {
    showError(e);
  }
  refreshTimer = setTimeout(refreshRuns, 3000);
}

// ------------------------------------------------------------------------------------------
// Start.

async function refreshHealth() {
  const badge = document.getElementById("health");
  try {
    const response = await fetch("/healthz");
    const body = await response.json();
    badge.textContent = body.status.toLowerCase().replace("_", " ");
    badge.dataset.ok = String(response.ok);
  } catch (_) {
    badge.textContent = "unreachable";
    badge.dataset.ok = "false";
  }
}

async function loadTools() {
  const box = document.getElementById("tools");
  try {
    const { tools = [] } = await api("/v1/tools");
    box.replaceChildren(...tools.map(toolCard));
    const checks = document.getElementById("agent-tools");
    checks.replaceChildren(...tools.map((tool) => el("label", { class: "inline" },
      el("input", { type: "checkbox", name: "tools", value: tool.name }), tool.name)));
  } catch (e) {
    box.textContent = "The tools could not be loaded.";
    showError(e);
  }
}

function setUpAgentForm() {
  const form = document.getElementById("agent-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { prompt: data.get("prompt"), tools: data.getAll("tools") };
    if (data.get("model")) body.model = data.get("model");
    if (data.get("maxSteps")) body.maxSteps = Number(data.get("maxSteps"));
    if (data.get("detached")) body.options = { onDisconnect: "ON_DISCONNECT_CONTINUE" };
    startRun({ type: "run_agent", ...body }, "agent");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpTokenForm();
  setUpAgentForm();
  document.getElementById("runs-refresh").addEventListener("click", refreshRuns);
  document.getElementById("runs-state").addEventListener("change", refreshRuns);
  loadTools();
  refreshRuns();
  refreshHealth();
  setInterval(refreshHealth, 10000);
});
