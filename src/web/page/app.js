// toolstream's page: plain JavaScript over the public routes, no build step.
//
// - GET /v1/tools                  the tools; a form per tool from its input schema
// - GET /v1/ws                     one WebSocket for every run the page starts or follows
//                                  (run_tool, run_agent, watch): a browser opens at most six
//                                  HTTP/1.1 connections per server, so one stream per run would
//                                  stall the page after a few runs
// - GET /v1/runs, POST .../cancel  the runs list, cancel
// - POST /v1/runs/{id}/inputs/{request_id}
//                                  answers a run's input request from the form made from its
//                                  schema (in the run's card, the run view and the runs list)
// - GET /v1/runs/{id}              the run view at /runs/{id} (this same page): what the run was
//                                  called with, when, and its end; its tree follows live over
//                                  the WebSocket (a watch from the first event)
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
    // The server's message alone (shown beside its code where a form keeps its error).
    this.detail = message;
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

// The token form stays hidden until a route answers 401 (`askForToken`).
function setUpTokenForm() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("token").value = "";
    document.getElementById("token-why").textContent = value ? "Token set for this tab." : "";
    // A socket opened with the old token serves the old principal: open a new one.
    channel.reset();
    start();
  });
}

// How long an error toast stays (it can be closed sooner); the run it came from keeps the error.
const TOAST_MS = 8000;

function showError(error) {
  // A 401 opened the token form, which says why: no toast besides.
  if (error.status === 401) return;
  const box = document.getElementById("errors");
  const item = el("div", { class: "error" },
    el("span", { text: error.message || String(error) }),
    el("button", { type: "button", class: "close", "aria-label": "dismiss", text: "×",
      onclick: () => item.remove() }));
  box.append(item);
  setTimeout(() => item.remove(), TOAST_MS);
}

function percent(fraction) {
  return Math.max(0, Math.min(100, Math.round(fraction * 100)));
}

// A tool's description with its `code` spans as <code> (text only; nothing else is markup).
function describe(text) {
  const box = el("p", { class: "description" });
  text.split("`").forEach((part, i) => {
    if (part !== "") box.append(i % 2 === 1 ? el("code", { text: part }) : part);
  });
  return box;
}

// Seconds as people read them: 3.2s, 42s, 2m 05s, 1h 02m.
function formatSeconds(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

// The server's estimate of a node's time left (Progress.etaSeconds), or "" when unknown.
function etaText(seconds) {
  if (seconds === undefined || seconds === null) return "";
  if (seconds < 1) return "<1s left";
  return `${formatSeconds(Math.ceil(seconds))} left`;
}

// A run's duration: from its create time to its end time, or to now while it runs.
function duration(run) {
  if (!run.createTime) return "";
  const end = run.endTime ? new Date(run.endTime) : new Date();
  return formatSeconds((end - new Date(run.createTime)) / 1000);
}

// `RUN_STATE_SUCCEEDED` as `succeeded`.
function shortState(state) {
  return (state || "RUN_STATE_UNSPECIFIED").replace("RUN_STATE_", "").toLowerCase();
}

function stateBadge(state) {
  return el("span", { class: `badge ${state}`, text: state });
}

// A JSON value for people: a string as itself, anything else as indented JSON.
function readable(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function runLink(runId, text) {
  return el("a", { href: `/runs/${encodeURIComponent(runId)}`, class: "run-link", text });
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
  const hint = schema.description ? el("small", { class: "hint" }, ...describe(schema.description).childNodes) : null;
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
  if (tool.description) form.append(describe(tool.description));
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
    startRun({ type: "run_tool", tool: tool.name, arguments: args, options }, { title: tool.name });
  });
  return form;
}

// ------------------------------------------------------------------------------------------
// Input requests: a run that asks a person (docs/contract.md, "Runs that ask"). Each open
// request gets a form made from its schema; the answer is POSTed to
// /v1/runs/{id}/inputs/{request_id}; a refused answer's error stays beside the form.

// `INPUT_OUTCOME_ANSWERED` as `answered`.
function shortOutcome(outcome) {
  return (outcome || "INPUT_OUTCOME_UNSPECIFIED").replace("INPUT_OUTCOME_", "").toLowerCase();
}

// The input of an answer made from the request's schema: returns [element, read()] where read()
// gives the value or throws an Error saying what is wrong; null for a boolean (its buttons are
// the answer).
function answerInput(schema) {
  const type = typeOf(schema);
  if (type === "boolean") return null;
  if (schema.enum) {
    const input = el("select", { name: "value", "aria-label": "answer" },
      ...schema.enum.map((v, i) => el("option", { value: String(i), text: String(v),
        selected: schema.default === v })));
    return [input, () => schema.enum[Number(input.value)]];
  }
  if (type === "integer" || type === "number") {
    const input = el("input", { name: "value", type: "number", "aria-label": "answer",
      step: type === "integer" ? "1" : "any", value: schema.default });
    return [input, () => {
      if (input.value.trim() === "") throw new Error("a number is needed");
      return Number(input.value);
    }];
  }
  if (type === "string") {
    const input = el("input", { name: "value", type: "text", "aria-label": "answer",
      value: schema.default });
    return [input, () => input.value];
  }
  const input = el("textarea", { name: "value", rows: 3, "aria-label": "answer (JSON)",
    placeholder: "JSON" });
  if (schema.default !== undefined) input.value = JSON.stringify(schema.default);
  return [input, () => {
    try {
      return JSON.parse(input.value);
    } catch (e) {
      throw new Error(`not JSON (${e.message})`);
    }
  }];
}

// The form answering `request` (an InputRequested) of run `runId`: its prompt, for an approval
// the call's tool and arguments, an input made from its schema (Yes/No, or Approve, for a
// boolean), and Decline. `onSent(body)` runs once the server took the answer.
function inputForm(runId, request, onSent) {
  const schema = request.schema ? resolve(request.schema, request.schema) : {};
  const approval = request.kind === "INPUT_KIND_APPROVAL";
  const form = el("form", { class: `input-request${approval ? " approval" : ""}`,
    "data-request-id": request.requestId, "data-run-id": runId });
  const error = el("div", { class: "input-error", role: "alert", hidden: true });
  const failed = (e) => {
    error.hidden = false;
    error.replaceChildren(e.code ? el("strong", { text: e.code }) : "", e.code ? " " : "",
      e.detail !== undefined ? e.detail : e.message);
  };
  const send = async (body) => {
    const buttons = form.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    try {
      await api(`/v1/runs/${encodeURIComponent(runId)}/inputs/${encodeURIComponent(request.requestId)}`,
        { method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify(body) });
    } catch (e) {
      failed(e);
      for (const button of buttons) button.disabled = false;
      return;
    }
    error.hidden = true;
    form.dataset.sent = "true";
    onSent(body);
  };
  const who = request.tool ? el("small", { class: "asker", text: request.tool }) : null;
  form.append(el("p", { class: "prompt" }, who, el("span", { text: request.prompt || "" })));
  if (approval) {
    const data = request.data || {};
    const tool = el("code", { text: data.tool || request.tool || "" });
    form.append(el("p", { class: "approval-tool" }, "tool ", tool),
      el("pre", { class: "approval-arguments",
        text: JSON.stringify(data.arguments === undefined ? {} : data.arguments, null, 2) }));
  }
  if (request.expireTime) {
    form.append(el("small", { class: "expires",
      text: `answer by ${new Date(request.expireTime).toLocaleTimeString()}` }));
  }
  const buttons = el("div", { class: "input-buttons" });
  const input = answerInput(schema);
  if (input) {
    const [element, read] = input;
    form.append(element);
    buttons.append(el("button", { type: "submit", class: "send", text: "Send" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      let value;
      try {
        value = read();
      } catch (e) {
        failed(e);
        return;
      }
      send({ value });
    });
  } else {
    form.addEventListener("submit", (event) => event.preventDefault());
    const answer = (text, value) => el("button", { type: "button", class: "send", text,
      "data-value": String(value), onclick: () => send({ value }) });
    if (approval) buttons.append(answer("Approve", true));
    else buttons.append(answer("Yes", true), answer("No", false));
  }
  buttons.append(el("button", { type: "button", class: "decline", text: "Decline",
    onclick: () => send({ decline: true }) }));
  form.append(buttons, error);
  return form;
}

// What became of a request (an InputResolved): its prompt, the outcome, the value answered.
function inputOutcome(request, resolved) {
  const outcome = shortOutcome(resolved.outcome);
  const answer = resolved.value === undefined ? null : resolved.value;
  const value = outcome === "answered" ? `: ${JSON.stringify(answer)}` : "";
  const prompt = request ? request.prompt || "" : resolved.requestId;
  return el("p", { class: `input-outcome ${outcome}`, "data-request-id": resolved.requestId,
    "data-outcome": outcome }, el("span", { class: "prompt", text: prompt }), " ",
  el("strong", { text: `${outcome}${value}` }));
}

// ------------------------------------------------------------------------------------------
// A run on the page: a card with its own bar and the tree of its calls and sub-tasks (each node
// a bar with its ETA and status; an agent's tool calls with their arguments and result), the
// model's text, the partial results as they come, the result or the error. On the run view (`detail`), the card also holds what the
// run was called with and its facts (state, start, duration).

class RunView {
  // `title`: the tool's name or "agent". `agent`: an agent run. `toast`: errors of this run also
  // go to a toast (runs started here). `detail`: the run view at /runs/{id}, with `run` (the Run
  // from GET /v1/runs/{id}) and `container` (where the card goes; default: the live list).
  constructor({ title, agent = false, toast = false, detail = false, run = null, container = null }) {
    this.runId = "";
    this.lastSequence = "0";
    this.ended = false;
    this.agent = agent;
    this.toast = toast;
    this.nodes = new Map();
    this.createTime = run && run.createTime ? new Date(run.createTime) : new Date();
    // When a run already ended, its end time (a replayed error carries none).
    this.storedEnd = run && run.endTime ? new Date(run.endTime) : null;
    this.bar = progressBar("run", "overall");
    this.status = el("div", { class: "status" });
    this.text = el("pre", { class: "text", hidden: true });
    this.callsBox = el("div", { class: "calls" });
    // The run's input requests: a form for each open one, what became of each resolved one.
    this.inputs = el("div", { class: "inputs" });
    this.asked = new Map(); // request id -> { request, form (while open) }
    // Partial results, one line each, appended as they come.
    this.partials = el("ol", { class: "partials", hidden: true, "aria-label": "partial results" });
    this.result = el("pre", { class: "result", hidden: true });
    this.error = el("div", { class: "run-error", role: "alert", hidden: true });
    this.badge = stateBadge("running");
    this.idLabel = el("code", { class: "run-id", text: "starting…" });
    this.elapsed = el("span", { class: "elapsed" });
    this.cancelButton = el("button", { type: "button", class: "cancel", text: "Cancel",
      disabled: true, onclick: () => this.cancel() });
    this.resumeButton = el("button", { type: "button", text: "Resume", hidden: true,
      onclick: () => this.resume() });
    const header = el("header", {},
      el(detail ? "h1" : "strong", { class: "title", text: title }), this.badge, this.idLabel,
      el("span", { class: "actions" }, this.elapsed, this.cancelButton, this.resumeButton,
        detail ? null : el("button", { type: "button", class: "close", "aria-label": "remove",
          text: "×", onclick: () => this.remove() })));
    this.root = el("article", { class: `card run${detail ? " detail" : ""}`,
      "data-state": "running", "data-title": title }, header);
    if (detail) this.root.append(...this.details(run));
    this.root.append(this.bar.root, this.status, this.inputs, this.text, this.callsBox,
      this.partials,
      this.result, this.error);
    if (container) {
      container.append(this.root);
    } else {
      const live = document.getElementById("live");
      live.querySelector(".empty")?.remove();
      live.prepend(this.root);
    }
    this.tick = setInterval(() => this.showElapsed(), 1000);
    this.showElapsed();
  }

  // The run view's facts and input: state, kind, start, end, duration; arguments or prompt.
  details(run) {
    this.stateFact = el("dd", { text: "running" });
    this.durationFact = el("dd", {});
    this.endFact = el("dd", { text: run.endTime ? new Date(run.endTime).toLocaleString() : "—" });
    const facts = el("dl", { class: "facts" },
      el("div", {}, el("dt", { text: "State" }), this.stateFact),
      el("div", {}, el("dt", { text: run.agent ? "Agent" : "Tool" }),
        el("dd", { text: run.agent ? "agent run" : run.tool })),
      el("div", {}, el("dt", { text: "Started" }),
        el("dd", { text: new Date(run.createTime).toLocaleString() })),
      el("div", {}, el("dt", { text: "Ended" }), this.endFact),
      el("div", {}, el("dt", { text: "Duration" }), this.durationFact));
    const input = run.agent
      ? el("pre", { class: "arguments prompt", text: run.prompt || "" })
      : el("pre", { class: "arguments", text: JSON.stringify(run.arguments || {}, null, 2) });
    return [facts, el("h3", { text: run.agent ? "Prompt" : "Arguments" }), input,
      el("h3", { text: "Progress" })];
  }

  showElapsed() {
    const seconds = ((this.endTime || new Date()) - this.createTime) / 1000;
    const text = formatSeconds(seconds);
    this.elapsed.textContent = text;
    if (this.durationFact) this.durationFact.textContent = text;
    if (this.ended) clearInterval(this.tick);
  }

  remove() {
    clearInterval(this.tick);
    this.root.remove();
  }

  setRunId(runId) {
    if (!runId || this.runId) return;
    this.runId = runId;
    this.root.dataset.runId = runId;
    this.idLabel.replaceChildren(runLink(runId, runId.slice(0, 8)));
    this.idLabel.title = runId;
    this.cancelButton.disabled = this.ended;
  }

  // One RunEvent (canonical JSON) of this run.
  onEvent(name, event) {
    this.setRunId(event.runId);
    if (event.sequence && event.sequence !== "0") this.lastSequence = event.sequence;
    switch (name) {
      case "progress": {
        const p = event.progress || {};
        const target = p.callId ? this.node(p.callId, p.tool, p.parentCallId) : this.bar;
        target.update(p);
        if (!p.callId && p.status !== undefined) this.status.textContent = p.status;
        break;
      }
      case "message":
        this.text.hidden = false;
        this.text.textContent += (event.message && event.message.text) || "";
        break;
      case "tool_call_started": {
        const c = event.toolCallStarted;
        const node = this.node(c.callId, c.tool, c.parentCallId);
        node.show("arguments", c.arguments !== undefined
          ? JSON.stringify(c.arguments, null, 2) : c.rawArguments || "");
        break;
      }
      case "tool_call_finished": {
        const c = event.toolCallFinished;
        const node = this.node(c.callId, c.tool, c.parentCallId);
        if (c.error !== undefined) {
          node.fail(c.error);
        } else {
          node.update({ progress: 1, etaSeconds: 0 });
          node.show("result", readable(c.result));
        }
        break;
      }
      case "result": {
        this.bar.update({ progress: 1, etaSeconds: 0 });
        const value = event.result ? event.result.value : null;
        // An agent's answer was streamed as its text: shown once, there.
        if (typeof value === "string" && this.agent) {
          if (this.text.textContent.trim() === "") {
            this.text.hidden = false;
            this.text.textContent = value;
          }
        } else {
          this.result.hidden = false;
          this.result.textContent = readable(value);
        }
        this.end("succeeded", event.timestamp);
        break;
      }
      case "input_requested": {
        const request = event.inputRequested || {};
        if (this.asked.has(request.requestId)) break;
        const form = inputForm(this.runId, request, () => {
          form.replaceChildren(el("p", { class: "hint", text: "Sent; waiting for the run…" }));
        });
        this.asked.set(request.requestId, { request, form });
        this.inputs.append(form);
        if (!this.ended) this.setState("input_required");
        break;
      }
      case "input_resolved": {
        const resolved = event.inputResolved || {};
        const entry = this.asked.get(resolved.requestId);
        const outcome = inputOutcome(entry && entry.request, resolved);
        if (entry && entry.form) entry.form.replaceWith(outcome);
        else this.inputs.append(outcome);
        if (entry) entry.form = null;
        const open = [...this.asked.values()].some((e) => e.form);
        if (!open && !this.ended) this.setState("running");
        break;
      }
      case "partial_result": {
        // One line: who (a call's tool or a sub-task's label), which output, += (the next item)
        // or = (replaced), and the value.
        const r = event.partialResult || {};
        const who = r.tool ? `${r.tool}: ` : "";
        const op = r.append ? "+=" : "=";
        const value = JSON.stringify(r.value === undefined ? null : r.value);
        this.partials.hidden = false;
        this.partials.append(el("li", { class: "partial", "data-call-id": r.callId || "",
          text: `${who}${r.key || "output"} ${op} ${value}` }));
        break;
      }
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
    this.error.replaceChildren(el("strong", { text: error.code }), " ", error.message);
    this.end(error.code === "CANCELLED" ? "cancelled" : "failed");
  }

  // The stream broke before the run's end: offer to resume from the last event seen.
  onLost(reason) {
    if (this.ended) return;
    this.status.textContent = `connection lost (${reason}); the run may go on`;
    this.resumeButton.hidden = !this.runId;
    this.setState("lost");
  }

  setState(state) {
    this.root.dataset.state = state;
    this.badge.className = `badge ${state}`;
    this.badge.textContent = state;
    if (this.stateFact) this.stateFact.textContent = state;
  }

  end(state, timestamp) {
    this.ended = true;
    // The run resolves its requests before it ends; a form left (a lost event) answers nothing.
    for (const entry of this.asked.values()) {
      if (entry.form) entry.form.remove();
      entry.form = null;
    }
    this.endTime = timestamp ? new Date(timestamp) : this.storedEnd || new Date();
    this.setState(state);
    this.cancelButton.disabled = true;
    this.cancelButton.hidden = true;
    this.resumeButton.hidden = true;
    // Nothing is left to wait for: no ETA stays.
    for (const eta of this.root.querySelectorAll(".eta")) eta.textContent = "";
    if (this.endFact) this.endFact.textContent = this.endTime.toLocaleString();
    this.showElapsed();
    scheduleRunsRefresh();
  }

  // The tree node of a call or sub-task, made on first sight under its parent (made too, if it
  // is not known yet); the run's top level holds the nodes without a parent.
  node(callId, label, parentCallId) {
    let node = this.nodes.get(callId);
    if (!node) {
      node = treeNode(callId);
      this.nodes.set(callId, node);
      const parent = parentCallId ? this.node(parentCallId, "", "").children : this.callsBox;
      parent.append(node.root);
    }
    if (label) node.label(label);
    return node;
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
    this.setState("running");
    this.status.textContent = "";
    this.follow({ type: "watch", runId: this.runId, after: this.lastSequence });
  }

  // Sends `message` (run_tool, run_agent or watch) over the page's socket; its frames come here.
  follow(message) {
    channel.call(message, this).catch((e) => this.onLost(e.message));
  }
}

// A bar: `update(progress)` takes a Progress message (fraction, status, ETA).
function progressBar(kind, label) {
  const fill = el("div", { class: "fill" });
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0,
    "aria-valuemax": 100, "aria-valuenow": 0 }, fill);
  const pct = el("span", { class: "pct", text: "0%" });
  const eta = el("span", { class: "eta" });
  const name = el("span", { class: "label", text: label || "" });
  const root = el("div", { class: `progress ${kind}` },
    el("div", { class: "line" }, name, el("span", { class: "numbers" }, pct, eta)), bar);
  return {
    root,
    name,
    eta,
    update(p) {
      if (p.progress !== undefined) {
        const value = percent(p.progress);
        fill.style.width = `${value}%`;
        pct.textContent = `${value}%`;
        bar.setAttribute("aria-valuenow", String(value));
      }
      eta.textContent = p.progress === undefined ? eta.textContent : etaText(p.etaSeconds);
    },
  };
}

// A node of a run's tree: its bar, status, the call's arguments and result, and its children.
function treeNode(callId) {
  const bar = progressBar("call", callId);
  const status = el("div", { class: "status" });
  const extra = el("div", { class: "extra" });
  const children = el("div", { class: "children" });
  const root = el("div", { class: "node", "data-call-id": callId }, bar.root, status, extra,
    children);
  return {
    root,
    children,
    label(text) {
      bar.name.textContent = text;
      bar.name.title = callId;
    },
    update(p) {
      bar.update(p);
      if (p.status !== undefined) status.textContent = p.status;
    },
    fail(message) {
      root.classList.add("failed");
      bar.eta.textContent = "";
      status.textContent = `failed: ${message}`;
    },
    // The call's arguments or result: one line (cut short), the whole when opened.
    show(what, text) {
      const line = text.replace(/\s*\n\s*/g, " ");
      const short = line.length > 90 ? `${line.slice(0, 89)}…` : line;
      extra.append(el("details", { class: what },
        el("summary", {}, el("span", { class: "what", text: what }), " ",
          el("code", { text: short })),
        el("pre", { text })));
    },
  };
}

// ------------------------------------------------------------------------------------------
// The page's WebSocket: many runs at once, each tagged with an id (docs/web.md, "WebSocket").

const EVENT_NAMES = {
  started: "started", progress: "progress", result: "result",
  toolCallStarted: "tool_call_started", toolCallFinished: "tool_call_finished",
  message: "message", gap: "gap", heartbeat: "heartbeat", partialResult: "partial_result",
  inputRequested: "input_requested", inputResolved: "input_resolved",
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
      // A run shows its own error; runs started here say so in a toast too (not a cancel).
      if (!view || (view.toast && frame.error.code !== "CANCELLED")) {
        showError(new ApiError(frame.error.code, frame.error.message));
      }
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

function startRun(message, options) {
  new RunView({ ...options, toast: true }).follow(message);
}

// ------------------------------------------------------------------------------------------
// The runs list.

let refreshTimer = null;
function scheduleRunsRefresh() {
  if (runPageId()) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshRuns, 300);
}

// Follows a run of the list on this page: live from its latest state, or replayed.
function followListed(run, state) {
  const view = new RunView({ title: run.agent ? "agent" : run.tool, agent: run.agent, run });
  view.setRunId(run.runId);
  view.follow(isLive(state)
    ? { type: "watch", runId: run.runId, fromLatest: true }
    : { type: "watch", runId: run.runId, after: "0" });
}

async function cancelListed(run) {
  try {
    await api(`/v1/runs/${encodeURIComponent(run.runId)}/cancel`, { method: "POST" });
  } catch (e) {
    showError(e);
  }
  refreshRuns();
}

// A run's labels (RunOptions.labels) as small `key=value` chips; null when it has none.
function labelChips(labels) {
  const pairs = Object.entries(labels || {});
  if (!pairs.length) return null;
  return el("span", { class: "labels" },
    ...pairs.map(([key, value]) => el("span", { class: "label", text: `${key}=${value}` })));
}

// The forms of the runs list's open requests by `runId/requestId`, kept across refreshes (what
// was typed, an error shown); a request no longer listed drops its form.
const listedForms = new Map();

// A run of the list that may still change (it runs, or waits for input).
function isLive(state) {
  return state === "running" || state === "input_required";
}

// A run's rows in the list: its row, then one holding a form per open input request.
function runRows(run, seen) {
  const rows = [runRow(run)];
  const pending = run.pendingInputs || [];
  if (pending.length) {
    const forms = pending.map((request) => {
      const key = `${run.runId}/${request.requestId}`;
      seen.add(key);
      let form = listedForms.get(key);
      if (!form) {
        form = inputForm(run.runId, request, () => refreshRuns());
        listedForms.set(key, form);
      }
      return form;
    });
    rows.push(el("tr", { class: "inputs-row", "data-run-id": run.runId },
      el("td", { colspan: 8, "data-label": "asks" }, ...forms)));
  }
  return rows;
}

// A row of the runs list (a card at phone width: each cell says what it is).
function runRow(run) {
  const state = shortState(run.state);
  const top = (run.progress || []).find((p) => !p.callId);
  const progress = state === "succeeded" ? 1 : top && top.progress !== undefined ? top.progress : null;
  const watch = el("button", { type: "button", text: isLive(state) ? "Resume" : "Replay",
    onclick: () => followListed(run, state) });
  const cancel = isLive(state)
    ? el("button", { type: "button", text: "Cancel", onclick: () => cancelListed(run) })
    : null;
  const cell = (label, attrs, ...children) => el("td", { "data-label": label, ...attrs },
    ...children);
  return el("tr", { "data-run-id": run.runId, "data-state": state },
    cell("run", { class: "id" }, runLink(run.runId, run.runId.slice(0, 8))),
    cell("what", { class: "what",
      title: run.agent ? run.prompt : JSON.stringify(run.arguments || {}) },
      run.agent ? `agent: ${run.prompt || ""}` : run.tool, labelChips(run.labels)),
    cell("state", { class: "state" }, stateBadge(state)),
    cell("progress", { class: "pct", text: progress === null ? "" : `${percent(progress)}%` }),
    cell("started", { class: "started",
      text: run.createTime ? new Date(run.createTime).toLocaleTimeString() : "" }),
    cell("duration", { class: "duration", text: duration(run) }),
    cell("error", { class: "error-text", title: run.errorMessage || "",
      text: run.errorMessage || "" }),
    cell("", { class: "actions" }, watch, cancel));
}

async function refreshRuns() {
  clearTimeout(refreshTimer);
  // Someone is typing an answer in the list: refreshing now would take the focus away.
  const active = document.activeElement;
  if (active && active.tagName !== "BUTTON" && active.closest("#runs form.input-request")) {
    refreshTimer = setTimeout(refreshRuns, 3000);
    return;
  }
  const state = document.getElementById("runs-state").value;
  const query = new URLSearchParams({ pageSize: "25" });
  if (state) query.set("state", state);
  try {
    const page = await api(`/v1/runs?${query}`);
    const seen = new Set();
    const rows = (page.runs || []).flatMap((run) => runRows(run, seen));
    for (const key of [...listedForms.keys()]) if (!seen.has(key)) listedForms.delete(key);
    document.getElementById("runs").replaceChildren(...rows);
  } catch (e) {
    showError(e);
  }
  refreshTimer = setTimeout(refreshRuns, 3000);
}

// ------------------------------------------------------------------------------------------
// The run view: /runs/{id}.

async function showRunPage(runId) {
  document.getElementById("home").hidden = true;
  const page = document.getElementById("run-view");
  page.hidden = false;
  document.title = `run ${runId.slice(0, 8)} · toolstream`;
  let run;
  try {
    run = await api(`/v1/runs/${encodeURIComponent(runId)}`);
  } catch (e) {
    page.append(el("p", { class: "run-error", text: e.message }));
    return;
  }
  document.title = `${run.agent ? "agent" : run.tool} ${runId.slice(0, 8)} · toolstream`;
  const view = new RunView({ title: run.agent ? "agent" : run.tool, agent: run.agent,
    detail: true, run, container: page });
  view.setRunId(run.runId);
  view.follow({ type: "watch", runId: run.runId, after: "0" });
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
    box.textContent = e.status === 401
      ? "Give a token (above) to see the tools."
      : "The tools could not be loaded.";
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
    startRun({ type: "run_agent", ...body }, { title: "agent", agent: true });
  });
}

// `/runs/{id}`: that run's id; otherwise null.
function runPageId() {
  const match = location.pathname.match(/^\/runs\/([^/]+)\/?$/);
  return match ? decodeURIComponent(match[1]) : null;
}

// Loads what the page shows (again, once a token was given).
function start() {
  const runId = runPageId();
  if (runId) {
    document.getElementById("run-view").querySelector("article")?.remove();
    document.getElementById("run-view").querySelector(".run-error")?.remove();
    showRunPage(runId);
  } else {
    loadTools();
    refreshRuns();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpTokenForm();
  setUpAgentForm();
  document.getElementById("runs-refresh").addEventListener("click", refreshRuns);
  document.getElementById("runs-state").addEventListener("change", refreshRuns);
  start();
  refreshHealth();
  setInterval(refreshHealth, 10000);
});
