// The Symphainy admin / builder UI: a client of the public API like any other (client.js).
// Views are chosen by the URL hash (#/sessions, #/session/ID, #/execution/ID, #/wal/ID,
// #/graph/COLLECTION/KEY, #/search, #/document/ID, #/metrics, #/admin). Every text coming
// from the server is set as text, never parsed as HTML.

import { ApiError, Client, SessionFeed } from "./client.js";

/** Executions a session page keeps (newest first) and remembers across a reload. */
const SESSION_ROWS_MAX = 500;
/** Events a session page's live log shows. */
const EVENT_LOG_MAX = 2000;
/** WAL events per page of the WAL browser. */
const WAL_PAGE = 50;
/** WAL pages read to find one execution's events. */
const EXECUTION_WAL_PAGES_MAX = 40;
/** Metrics refresh period and the points a chart keeps. */
const METRICS_EVERY_MS = 2000;
const CHART_POINTS = 90;

const keys = { tenant: "symphainy.tenant_token", admin: "symphainy.admin_token", who: "symphainy.who" };
let tenant = sessionStorage.getItem(keys.tenant) ? new Client(sessionStorage.getItem(keys.tenant)) : null;
let admin = sessionStorage.getItem(keys.admin) ? new Client(sessionStorage.getItem(keys.admin)) : null;
let who = JSON.parse(sessionStorage.getItem(keys.who) || "null");
let catalogue = null;
let leaving = [];
/** Hooks for tests and the curious: the live feed of the open session page. */
window.symphainy = { feed: null };

// ---------------------------------------------------------------- small DOM helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

/** Replaces an element's children (strings, nodes, nested arrays; null skipped). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");
const $ = (sel, root = document) => root.querySelector(sel);
const link = (href, text, attrs = {}) => h("a", { href, ...attrs }, text);
const badge = (status) => h("span", { class: "badge s-" + status, text: status });
const code = (text) => h("code", { text });
const shortId = (id) => (id ? id.slice(0, 10) + "…" : "");
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "");
// Durations are recorded in whole milliseconds: 0 means under one.
const fmtMs = (ms) => (ms === null || ms === undefined ? "" : ms === 0 ? "<1 ms" : ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(2) + " s");
const json = (v) => h("pre", { text: JSON.stringify(v, null, 2) });

function table(headers, rows, emptyText) {
  if (!rows.length) return h("p", { class: "empty", text: emptyText });
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows));
}

function page(title, ...children) {
  const m = main();
  fill(m, h("h1", { text: title }), ...children.flat());
  document.title = title + " · Symphainy";
  return m;
}

let unreachable = false;
Client.onReachable = (up) => {
  if (up && unreachable) { unreachable = false; banner(""); }
};

function banner(text, kind) {
  const b = document.getElementById("banner");
  if (!text) { b.hidden = true; return; }
  b.className = kind || "";
  b.textContent = text;
  b.hidden = false;
}

/** Shows an API error where the user is; a refused token sends them to sign in again. */
function failed(e, where) {
  if (e instanceof ApiError && e.status === 401) {
    signOut("Your token expired or was revoked. Sign in again.");
    return;
  }
  const text = e instanceof ApiError && e.status === 404
    ? `Not found: nothing of yours has this id (request ${e.requestId || "?"}).`
    : e instanceof ApiError
    ? (e.status === 0 ? e.message : `${e.message} (${e.code}${e.requestId ? ", request " + e.requestId : ""})`)
    : String(e && e.message ? e.message : e);
  if (e instanceof ApiError && (e.status === 0 || e.status === 503)) {
    banner("Server unreachable or restarting: " + text + " Retry when it is back; nothing you submitted and saw accepted is lost.");
    unreachable = true;
  }
  if (where) fill(where, h("p", { class: "err", role: "alert", text }));
  else banner(text);
}

// ---------------------------------------------------------------- sign in / out

function remember() {
  sessionStorage.setItem(keys.who, JSON.stringify(who));
  if (tenant) sessionStorage.setItem(keys.tenant, tenant.token); else sessionStorage.removeItem(keys.tenant);
  if (admin) sessionStorage.setItem(keys.admin, admin.token); else sessionStorage.removeItem(keys.admin);
}

function signOut(message) {
  tenant = null; admin = null; who = null; catalogue = null;
  remember();
  banner(message || "");
  location.hash = "#/signin";
  render();
}

async function signInWith(token) {
  const c = new Client(token);
  const me = await c.get("/auth/whoami");
  if (me.kind === "admin") {
    admin = c;
    who = { ...(who || {}), admin: true };
  } else {
    tenant = c;
    who = { ...(who || {}), tenant_id: me.tenant_id, user_id: me.user_id, expires_at: me.expires_at };
  }
  catalogue = null;
  remember();
  banner("");
  const target = me.kind === "admin" && !tenant ? "#/admin" : "#/sessions";
  if (location.hash === target) render(); else location.hash = target;
}

function viewSignin() {
  const out = h("div", { role: "status" });
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  page("Sign in",
    h("form", {
      onsubmit: async (e) => {
        e.preventDefault();
        fill(out, h("p", { class: "muted", text: "Checking the token…" }));
        try { await signInWith(input.value.trim()); } catch (err) {
          fill(out, h("p", { class: "err", role: "alert",
            text: err.status === 401 ? "This token is not valid: unknown, expired or revoked." : err.message }));
        }
      },
    },
    h("label", { for: "token" }, h("span", { text: "Token" })),
    input,
    h("p", { id: "token-help", class: "muted", text: "A tenant token (from POST /admin/tokens), or the admin token (DATA_DIR/admin.token) for tenants and tokens." }),
    h("button", { class: "primary", type: "submit", text: "Sign in" })),
    h("h2", { text: "Running on the embedded defaults?" }),
    h("p", {}, h("button", {
      type: "button", id: "dev-signin",
      onclick: async () => {
        try { const t = await new Client(null).devSignin(); await signInWith(t.token); } catch (err) {
          fill(out, h("p", { class: "err", role: "alert",
            text: err.status === 404 ? "Dev sign-in is off on this server (it runs with its own admin token or on a public address)." : err.message }));
        }
      },
    }, "Dev sign-in (tenant dev)")),
    out);
  input.focus();
}

// ---------------------------------------------------------------- the catalogue

async function capabilities() {
  if (!catalogue) {
    const answer = await (tenant || admin).capabilities();
    catalogue = answer.capabilities;
  }
  return catalogue;
}

function capabilityOf(name, version) {
  return (catalogue || []).find((c) => c.name === name && c.version === version);
}

// ---------------------------------------------------------------- sessions

async function viewSessions() {
  const list = h("div", {}, h("p", { class: "muted", text: "Loading sessions…" }));
  const caps = h("div");
  page("Sessions",
    h("div", { class: "row" }, h("button", {
      class: "primary", type: "button", id: "new-session",
      onclick: async () => {
        try { const s = await tenant.createSession({ opened_from: "ui" }); location.hash = "#/session/" + s.session_id; } catch (e) { failed(e, list); }
      },
    }, "New session")),
    list, h("h2", { text: "Capability catalogue" }), caps);
  try {
    const { sessions } = await tenant.sessions(100);
    fill(list, table(["Session", "User", "Created", "Status", "Running sagas", ""],
      sessions.map((s) => h("tr", { dataset: { session: s.session_id } },
        h("td", {}, link("#/session/" + s.session_id, s.session_id, { class: "mono" })),
        h("td", { text: s.user_id }), h("td", { text: fmtTime(s.created_at) }),
        h("td", {}, badge(s.status)), h("td", { text: s.active_sagas.length }),
        h("td", {}, s.status === "open" ? h("button", {
          type: "button", "aria-label": "Close session " + s.session_id,
          onclick: async () => { try { await tenant.closeSession(s.session_id); render(); } catch (e) { failed(e); } },
        }, "Close") : ""))),
      "No sessions yet. Open one to submit intents and upload files."));
    const cat = await capabilities();
    fill(caps, table(["Capability", "Realm", "Version", "Intent types", "Inputs", "Steps", "Deterministic"],
      cat.map((c) => h("tr", {}, h("td", {}, code(c.name)), h("td", { text: c.realm }), h("td", { text: c.version }),
        h("td", { text: c.intent_types.join(", ") }), h("td", { text: c.inputs.join(", ") }),
        h("td", { text: c.steps.join(" → ") }), h("td", { text: c.deterministic ? "yes" : "no" }))),
      "No capabilities registered."));
  } catch (e) { failed(e, list); }
}

/** What a session page knows of one execution, folded from its events. */
function newExecution(id) {
  return { id, intent_type: "", filename: "", capability: "", version: 0, status: "accepted", steps: [], error: null, result: null };
}

/** Folds one WAL event into the executions of a session page. */
function foldEvent(execs, ev) {
  const id = ev.execution_id;
  if (!id) return null;
  let x = execs.get(id);
  if (!x) { x = newExecution(id); execs.set(id, x); }
  const d = ev.data || {};
  const step = (i) => {
    while (x.steps.length <= i) x.steps.push({ name: "step " + x.steps.length, status: "pending", attempts: 0, duration_ms: null });
    return x.steps[i];
  };
  switch (ev.event_type) {
    case "intent_received":
      x.intent_type = d.intent_type;
      x.filename = (d.payload && d.payload.filename) || "";
      x.submitted_at = ev.timestamp;
      break;
    case "saga_started": {
      x.capability = d.capability; x.version = d.capability_version; x.status = "running";
      const spec = capabilityOf(d.capability, d.capability_version);
      for (let i = 0; i < d.step_count; i++) step(i).name = spec && spec.steps[i] ? spec.steps[i] : "step " + i;
      break;
    }
    case "step_started": Object.assign(step(d.step_index), { status: "running", attempts: d.attempt }); break;
    case "step_completed": Object.assign(step(d.step_index), { status: "completed", duration_ms: d.duration_ms }); break;
    case "step_failed": Object.assign(step(d.step_index), { status: "failed", duration_ms: d.duration_ms, error: d.code + ": " + d.message }); break;
    case "step_retry_scheduled": Object.assign(step(d.step_index), { status: "retrying" }); break;
    case "compensation_started": x.status = "compensating"; break;
    case "step_compensated": step(d.step_index).status = "compensated"; break;
    case "saga_completed": x.status = "completed"; x.result = d.result; break;
    case "saga_failed": x.status = "failed"; x.error = d; break;
    case "saga_compensated": x.status = "compensated"; x.error = d; break;
    default: break;
  }
  return x;
}

function executionRow(x) {
  const doc = x.result && x.result.document_id;
  return h("tr", { dataset: { execution: x.id, status: x.status } },
    h("td", {}, link("#/execution/" + x.id, shortId(x.id), { class: "mono", title: x.id })),
    h("td", {}, x.filename ? h("strong", { text: x.filename }) : code(x.intent_type)),
    h("td", {}, badge(x.status)),
    h("td", {}, h("div", { class: "steps" }, x.steps.map((s) =>
      h("span", { class: "badge s-" + s.status, title: s.error || "" },
        s.name, s.attempts > 1 ? ` ×${s.attempts}` : "", s.duration_ms !== null ? " · " + fmtMs(s.duration_ms) : "")))),
    h("td", {}, doc ? link("#/document/" + doc, "document") : "",
      x.error ? h("span", { class: "err", text: `${x.error.code}: ${x.error.message}` }) : ""));
}

// What the built-in capabilities' inputs take (any other input: text or JSON).
const INPUT_HINTS = {
  value: "any JSON, or text: \"hello\", 42, {\"a\": 1}",
  steps: "1 to 16 (default 1)",
  document_id: "a document id, from an upload's result",
  question: "a question about that document",
  filename: "e.g. notes.md (txt, md, csv, json, html, pdf)",
  media_type: "optional, e.g. text/markdown",
  text: "the file's text",
  content_base64: "or the file's bytes, base64",
};

function inputField(name) {
  const id = "in-" + name;
  const hint = INPUT_HINTS[name] || "text, or JSON (42, {\"a\": 1})";
  return h("label", { for: id }, h("span", { text: name }), h("input", { type: "text", id, name, placeholder: hint }));
}

function parseValue(text) {
  if (text === "") return undefined;
  try { return JSON.parse(text); } catch (e) { return text; }
}

async function viewSession(sessionId) {
  const head = h("div", { class: "row" }, h("span", { class: "muted", text: "Loading…" }));
  const live = h("span", { id: "live", role: "status", class: "muted", text: "connecting…" });
  const rows = h("tbody", { id: "executions" });
  const empty = h("p", { class: "empty", text: "No executions yet: submit an intent or drop files." });
  const uploads = h("ul", { id: "uploads", "aria-live": "polite" });
  const eventLog = h("ol", { id: "event-log", class: "mono" });
  const form = h("form", { id: "submit-form", class: "card" });
  const fileInput = h("input", { type: "file", id: "files", multiple: true });
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop files here or ", h("label", { for: "files", text: "choose files" }),
      " (txt, md, csv, json, html, pdf): each becomes an execution with live progress."),
    fileInput, uploads);
  page("Session",
    head,
    h("div", { class: "split" }, h("div", {}, h("h2", { text: "Submit an intent" }), form),
      h("div", {}, h("h2", { text: "Upload files" }), drop)),
    h("h2", {}, "Executions ", live),
    empty,
    h("table", { id: "executions-table" }, h("thead", {}, h("tr", {},
      ["Execution", "What", "Status", "Steps", ""].map((t) => h("th", { scope: "col", text: t })))), rows),
    h("details", {}, h("summary", {}, "Live events of this session (", h("span", { id: "event-count", text: "0" }), ")"), eventLog),
    h("p", {}, link("#/wal/" + sessionId, "Browse this session's WAL")));

  // The executions, restored from this browser tab if it saw the session before a reload.
  const saved = JSON.parse(sessionStorage.getItem("symphainy.session." + sessionId) || "null");
  const execs = new Map(saved ? saved.execs : []);
  const lsns = saved ? saved.lsns : [];
  let fromLsn = saved ? saved.lsn + 1 : 1;
  const draw = () => {
    const list = [...execs.values()].reverse().slice(0, SESSION_ROWS_MAX);
    fill(rows, ...list.map(executionRow));
    empty.hidden = list.length > 0;
    document.getElementById("event-count").textContent = lsns.length;
  };
  // What this tab has seen is written down shortly after each event and whenever the page
  // goes away (reload, navigation), so a reload resumes exactly after the last LSN seen.
  let saveTimer = null;
  let seenLsn = fromLsn - 1;
  const flush = () => {
    clearTimeout(saveTimer);
    saveTimer = null;
    const kept = [...execs.entries()].slice(-SESSION_ROWS_MAX);
    try {
      sessionStorage.setItem("symphainy.session." + sessionId, JSON.stringify({ lsn: seenLsn, execs: kept, lsns: lsns.slice(-EVENT_LOG_MAX) }));
    } catch (e) { /* storage full: a reload replays the session from its first event */ }
  };
  const save = (lastLsn) => {
    seenLsn = lastLsn;
    if (!saveTimer) saveTimer = setTimeout(flush, 250);
  };
  window.addEventListener("pagehide", flush);
  leaving.push(() => { window.removeEventListener("pagehide", flush); if (saveTimer) flush(); });
  for (const lsn of lsns.slice(-EVENT_LOG_MAX)) eventLog.append(h("li", { dataset: { lsn }, text: "LSN " + lsn + " (before reload)" }));
  draw();

  try {
    await capabilities();
    const s = await tenant.session(sessionId);
    fill(head, code(s.session_id), badge(s.status), h("span", { class: "muted", text: "user " + s.user_id + " · opened " + fmtTime(s.created_at) }),
      s.status === "open" ? h("button", { type: "button", onclick: async () => { try { await tenant.closeSession(sessionId); render(); } catch (e) { failed(e); } } }, "Close session") : "");
    buildSubmitForm(form, sessionId, s.status === "open");
  } catch (e) { failed(e, head); return; }

  let redraw = null;
  const feed = new SessionFeed(tenant.token, sessionId, fromLsn, {
    onEvent: (ev) => {
      lsns.push(ev.lsn);
      eventLog.append(h("li", { dataset: { lsn: ev.lsn } }, `LSN ${ev.lsn} ${ev.event_type}${ev.execution_id ? " " + shortId(ev.execution_id) : ""}`));
      while (eventLog.childElementCount > EVENT_LOG_MAX) eventLog.firstElementChild.remove();
      if (lsns.length > EVENT_LOG_MAX * 2) lsns.splice(0, lsns.length - EVENT_LOG_MAX);
      foldEvent(execs, ev);
      if (!redraw) redraw = requestAnimationFrame(() => { redraw = null; draw(); });
      save(ev.lsn);
    },
    onState: async (state, detail) => {
      if (state === "live") { live.textContent = `live from LSN ${detail.from}`; banner(""); }
      else if (state === "reconnecting") {
        live.textContent = `connection lost; resuming from LSN ${feed.lastLsn + 1} in ${detail.in_ms} ms`;
        try { await tenant.session(sessionId); } catch (e) { failed(e); }
      } else if (state === "unauthorized") signOut("Your token was revoked or expired. Sign in again.");
      else if (state === "error") live.textContent = `${detail.code}: ${detail.message}`;
      else live.textContent = state + "…";
    },
  });
  window.symphainy.feed = feed;
  leaving.push(() => { feed.close(); window.symphainy.feed = null; });

  const sendFiles = (files) => {
    for (const file of files) {
      const item = h("li", { dataset: { file: file.name } }, `${file.name}: uploading…`);
      uploads.append(item);
      tenant.upload(sessionId, file).then(
        (a) => { item.textContent = `${file.name}: accepted as ${shortId(a.executions[0].execution_id)}`; },
        (e) => {
          if (e.status === 401) return failed(e);
          item.className = "err";
          item.textContent = `${file.name}: rejected: ${e.message}${e.status === 413 ? " (file too large)" : ""}`;
        });
    }
  };
  fileInput.addEventListener("change", () => { sendFiles([...fileInput.files]); fileInput.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); sendFiles([...e.dataTransfer.files]); });
}

function buildSubmitForm(form, sessionId, open) {
  const select = h("select", { id: "intent-type", name: "intent_type" });
  const fields = h("div");
  const out = h("p", { role: "status" });
  const types = [];
  for (const c of catalogue) for (const t of c.intent_types) types.push([t, c]);
  select.append(...types.map(([t, c]) => h("option", { value: t, text: `${t} (${c.name} v${c.version})` })));
  const showFields = () => {
    const c = types.find(([t]) => t === select.value);
    fill(fields, ...(c ? c[1].inputs.map(inputField) : []));
  };
  select.addEventListener("change", showFields);
  const echo = types.findIndex(([t]) => t === "runtime.echo");
  if (echo >= 0) select.selectedIndex = echo;
  showFields();
  fill(form, 
    h("label", { for: "intent-type" }, h("span", { text: "Intent type" })), select, fields,
    h("button", { class: "primary", type: "submit", disabled: !open }, "Submit"), out);
  form.onsubmit = async (e) => {
    e.preventDefault();
    const payload = {};
    for (const input of fields.querySelectorAll("input")) {
      const v = parseValue(input.value.trim());
      if (v !== undefined) payload[input.name] = v;
    }
    try {
      const a = await tenant.submit({ intent_type: select.value, session_id: sessionId, payload });
      out.className = "muted";
      out.textContent = `accepted: ${a.execution_id} (LSN ${a.lsn})`;
    } catch (err) {
      if (err.status === 401) return failed(err);
      out.className = "err";
      out.textContent = `rejected: ${err.message} (${err.code})`;
    }
  };
}

// ---------------------------------------------------------------- one execution

// The events that end a saga.
const SAGA_END_EVENTS = ["saga_completed", "saga_failed", "saga_compensated"];
const endsSaga = (events) => events.length > 0 && SAGA_END_EVENTS.includes(events[events.length - 1].event_type);

// An execution's events start at its intent's LSN (`lsn` in its status): read the session's
// WAL from there, not from the session's first event.
async function executionEvents(sessionId, executionId, fromLsn) {
  const found = [];
  let from = fromLsn || 0;
  for (let i = 0; i < EXECUTION_WAL_PAGES_MAX; i++) {
    const p = await tenant.wal(sessionId, from, 1000);
    found.push(...p.events.filter((e) => e.execution_id === executionId));
    if (!p.events.length || p.next_lsn === from) break;
    from = p.next_lsn;
    if (endsSaga(found)) break;
  }
  return found;
}

async function viewExecution(executionId) {
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  page("Execution", h("p", {}, code(executionId)), body);
  const finishedStates = ["completed", "failed", "compensated"];
  // The execution's WAL events are read once; later ones come from the session's live feed.
  const draw = (s, events) => {
    const attempts = new Map();
    for (const e of events) {
      if (e.data && e.data.step_index !== undefined) {
        const list = attempts.get(e.data.step_index) || [];
        list.push(e);
        attempts.set(e.data.step_index, list);
      }
    }
    fill(body,
      h("div", { class: "row" }, badge(s.status), code(s.intent_type), h("span", { text: `${s.capability} v${s.capability_version}` }),
        h("span", { class: "muted", text: "submitted " + fmtTime(s.submitted_at) + (s.finished_at ? " · finished " + fmtTime(s.finished_at) : "") }),
        link("#/session/" + s.session_id, "session"), link("#/graph/executions/" + executionId, "graph")),
      s.error ? h("p", { class: "err", role: "alert", text: `${s.error.code}: ${s.error.message}${s.error.step ? " (step " + s.error.step + ")" : ""}` }) : "",
      h("h2", { text: "Saga timeline" }),
      table(["#", "Step", "Status", "Attempts", "Started", "Duration", "What happened"],
        s.steps.map((st, i) => h("tr", { dataset: { step: st.name } },
          h("td", { text: i }), h("td", {}, code(st.name)), h("td", {}, badge(st.status)), h("td", { text: st.attempts }),
          h("td", { text: fmtTime(st.started_at) }), h("td", { text: fmtMs(st.duration_ms) }),
          h("td", {}, (attempts.get(i) || []).map((e) => h("div", { class: "mono" },
            `LSN ${e.lsn} ${e.event_type}`,
            e.data.attempt ? ` attempt ${e.data.attempt}` : "",
            e.data.code ? ` ${e.data.code}: ${e.data.message}` : "",
            e.data.delay_ms ? ` retry in ${e.data.delay_ms} ms` : ""))))),
        "This execution has no steps."),
      s.result !== undefined && s.result !== null ? [h("h2", { text: "Result" }), json(s.result),
        s.result.document_id ? h("p", {}, link("#/document/" + s.result.document_id, "Open the document")) : ""] : "",
      h("h2", { text: "WAL events behind it" }),
      table(["LSN", "Type", "Time", "Data"], events.map((e) => h("tr", { dataset: { lsn: e.lsn } },
        h("td", { text: e.lsn }), h("td", {}, code(e.event_type)), h("td", { text: fmtTime(e.timestamp) }),
        h("td", {}, h("pre", { text: JSON.stringify(e.data) })))), "No events found."));
  };
  try {
    let s = await tenant.status(executionId);
    const events = await executionEvents(s.session_id, executionId, s.lsn);
    // The saga may have ended between the two reads: then no later event of it will come to
    // the feed, so read the status again (it reflects at least what the log read saw).
    if (!finishedStates.includes(s.status) && endsSaga(events)) s = await tenant.status(executionId);
    draw(s, events);
    if (finishedStates.includes(s.status)) return;
    let pending = null;
    const from = events.length ? events[events.length - 1].lsn + 1 : 1;
    const feed = new SessionFeed(tenant.token, s.session_id, from, {
      onEvent: (ev) => {
        if (ev.execution_id !== executionId) return;
        events.push(ev);
        if (pending) return;
        // The status (step names, outputs) is read again at most every 150 ms.
        pending = setTimeout(async () => {
          pending = null;
          try {
            const now = await tenant.status(executionId);
            draw(now, events);
            if (finishedStates.includes(now.status)) feed.close();
          } catch (e) { failed(e, body); }
        }, 150);
      },
      onState: (state) => { if (state === "unauthorized") signOut("Your token was revoked or expired. Sign in again."); },
    });
    leaving.push(() => feed.close());
  } catch (e) { failed(e, body); }
}

// ---------------------------------------------------------------- WAL browser

async function viewWal(sessionId, params) {
  const from = Number(params.get("from") || 1);
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  page("WAL of a session", h("p", {}, code(sessionId), " ", link("#/session/" + sessionId, "back to the session")), body);
  try {
    const p = await tenant.wal(sessionId, from, WAL_PAGE);
    const back = JSON.parse(sessionStorage.getItem("symphainy.walback." + sessionId) || "[]");
    const nav = h("div", { class: "row" },
      h("button", { type: "button", disabled: from <= 1, onclick: () => {
        const prev = back.pop() || 1;
        sessionStorage.setItem("symphainy.walback." + sessionId, JSON.stringify(back));
        location.hash = `#/wal/${sessionId}?from=${prev}`;
      } }, "← Previous page"),
      h("span", { class: "muted", text: `from LSN ${from}: ${p.events.length} events` }),
      h("button", { type: "button", disabled: p.events.length < WAL_PAGE, onclick: () => {
        back.push(from);
        sessionStorage.setItem("symphainy.walback." + sessionId, JSON.stringify(back));
        location.hash = `#/wal/${sessionId}?from=${p.next_lsn}`;
      } }, "Next page →"));
    fill(body, nav, table(["LSN", "Type", "Execution", "Time", "Data"],
      p.events.map((e) => h("tr", { dataset: { lsn: e.lsn } }, h("td", { text: e.lsn }), h("td", {}, code(e.event_type)),
        h("td", {}, e.execution_id ? link("#/execution/" + e.execution_id, shortId(e.execution_id), { class: "mono" }) : ""),
        h("td", { text: fmtTime(e.timestamp) }), h("td", {}, h("pre", { text: JSON.stringify(e.data) })))),
      "No events from this LSN on."));
  } catch (e) { failed(e, body); }
}

// ---------------------------------------------------------------- graph, search, documents

async function viewGraph(collection, key) {
  const form = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const [c, ...k] = $("#vertex-id").value.trim().split("/");
    location.hash = `#/graph/${encodeURIComponent(c)}/${encodeURIComponent(k.join("/"))}`;
  } }, h("label", { for: "vertex-id" }, h("span", { text: "Vertex (collection/key)" }),
    h("input", { type: "text", id: "vertex-id", value: collection ? `${collection}/${key}` : "", placeholder: "sessions/01J…" })),
  h("button", { type: "submit" }, "Open"));
  const body = h("div");
  page("Graph explorer", form, body);
  if (!collection) {
    fill(body, h("p", { class: "empty", text: "Open a vertex: a session, execution or document id, e.g. sessions/<id>. Links on other pages lead here too." }));
    try {
      const { sessions } = await tenant.sessions(10);
      if (sessions.length) {
        append(body, [h("h2", { text: "Start from a recent session" }), h("ul", {}, sessions.map((x) =>
          h("li", {}, link(`#/graph/sessions/${x.session_id}`, `sessions/${x.session_id}`, { class: "mono" }))))]);
      }
    } catch (e) { failed(e); }
    return;
  }
  try {
    const v = await tenant.vertex(collection, key);
    const t = await tenant.traverse(`${collection}/${key}`, "any", 1);
    const others = t.vertices.filter((x) => x._id !== v._id);
    fill(body, 
      h("div", { class: "split" },
        h("div", {}, h("h2", { text: v._id }), json(v)),
        h("div", {}, h("h2", { text: `Neighbours (${others.length})` }),
          table(["Vertex", "Edge"], others.map((x) => {
            const edge = t.edges.find((e) => e._from === x._id || e._to === x._id);
            const [c, ...k] = x._id.split("/");
            return h("tr", {}, h("td", {}, link(`#/graph/${c}/${encodeURIComponent(k.join("/"))}`, x._id, { class: "mono" })),
              h("td", { text: edge ? `${edge._from === v._id ? "→" : "←"} ${edge.label}` : "" }));
          }), "No neighbours."),
          t.truncated ? h("p", { class: "muted", text: "Truncated at the traversal limits." }) : "")));
  } catch (e) { failed(e, body); }
}

async function viewSearch(params) {
  const q = params.get("q") || "";
  const body = h("div");
  page("Search documents",
    h("form", { class: "inline", role: "search", onsubmit: (e) => {
      e.preventDefault();
      location.hash = "#/search?q=" + encodeURIComponent($("#q").value);
    } }, h("label", { for: "q" }, h("span", { text: "Words or a phrase" }), h("input", { type: "search", id: "q", value: q })),
    h("button", { class: "primary", type: "submit" }, "Search")), body);
  $("#q").focus();
  if (!q.trim()) { fill(body, h("p", { class: "empty", text: "Search the text of your uploaded documents (exact cosine top-k)." })); return; }
  try {
    const { results } = await tenant.search(q, 10);
    fill(body, table(["Score", "Document", "Chunk text"], results.map((r) =>
      h("tr", { dataset: { document: r.document_id } }, h("td", { text: r.score.toFixed(3) }),
        h("td", {}, link("#/document/" + r.document_id, shortId(r.document_id), { class: "mono", title: r.document_id })),
        h("td", { text: r.text }))), "Nothing found."));
  } catch (e) { failed(e, body); }
}

async function viewDocument(id) {
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  page("Document", body);
  try {
    const d = await tenant.document(id);
    const chunks = d.chunk_list || [];
    const chunkOf = new Map(chunks.map((c) => [c.chunk_id, c]));
    fill(body, 
      h("div", { class: "row" }, h("strong", { text: d.filename }), code(d.media_type), h("span", { text: `${d.size_bytes} bytes · ${d.format || ""} · ${d.chunks} chunks · ${d.facts.length} facts` }),
        link("#/graph/documents/" + encodeURIComponent(d.document_id), "graph")),
      h("p", { class: "muted mono", text: "sha256 " + d.sha256 }),
      h("h2", { text: "Facts" }),
      table(["Kind", "Value", "Span", "In its chunk"], d.facts.map((f) => {
        const c = chunkOf.get(f.chunk_id);
        let context = "";
        if (c && f.span[0] >= c.span[0] && f.span[1] <= c.span[1] && f.span[1] - f.span[0] < 400) {
          const enc = new TextEncoder(), dec = new TextDecoder();
          const bytes = enc.encode(c.text);
          const a = f.span[0] - c.span[0], b = f.span[1] - c.span[0];
          const pre = dec.decode(bytes.slice(Math.max(0, a - 60), a)), mid = dec.decode(bytes.slice(a, b)), post = dec.decode(bytes.slice(b, b + 60));
          context = h("span", {}, "…" + pre, h("mark", { text: mid }), post + "…");
        }
        return h("tr", { dataset: { fact: f.fact_id } }, h("td", {}, code(f.kind)), h("td", { text: f.value }),
          h("td", { class: "mono", text: `${f.span[0]}–${f.span[1]}` }), h("td", {}, context));
      }), "No facts were extracted."),
      h("h2", { text: "Chunks" }),
      table(["Chunk", "Span", "Text"], chunks.map((c) => h("tr", {}, h("td", { class: "mono", text: c.chunk_id.split("-").pop() }),
        h("td", { class: "mono", text: `${c.span[0]}–${c.span[1]}` }), h("td", {}, h("pre", { text: c.text })))), "No chunks."));
  } catch (e) { failed(e, body); }
}

// ---------------------------------------------------------------- metrics

function chart(points, label) {
  const w = 300, hgt = 80;
  const max = Math.max(1, ...points);
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: latest ${points[points.length - 1] ?? 0}, peak ${max}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((p, i) => `${(i * step).toFixed(1)},${(hgt - (p / max) * (hgt - 4) - 2).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

async function viewMetrics() {
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  page("Metrics", h("p", { class: "muted", text: `Refreshed every ${METRICS_EVERY_MS / 1000} s from /runtime/metrics${admin ? " (admin: the whole node)" : " (your tenant)"}.` }), body);
  const series = { bytes: [], events: [], lag: [], rate: [] };
  let last = null;
  const client = admin || tenant;
  const tick = async () => {
    let m;
    try { m = await client.metrics(); } catch (e) { failed(e, body); return; }
    const events = Object.values(m.wal.events_by_type).reduce((a, b) => a + b, 0);
    const lag = Math.max(...Object.values(m.projections).map((p) => p.lag_events || 0));
    const now = Date.now();
    const rate = last ? Math.max(0, (events - last.events) / ((now - last.at) / 1000)) : 0;
    last = { events, at: now };
    for (const [k, v] of [["bytes", m.wal.bytes], ["events", events], ["lag", lag], ["rate", Math.round(rate)]]) {
      series[k].push(v);
      if (series[k].length > CHART_POINTS) series[k].shift();
    }
    const card = (title, value, points, id) => h("div", { class: "card", dataset: { metric: id } },
      h("div", { class: "muted", text: title }), h("div", { class: "big", text: value }), points ? chart(points, title) : "");
    const status = m.executions_by_status || {};
    const done = (status.completed || 0), bad = (status.failed || 0) + (status.compensated || 0);
    fill(body, 
      h("div", { class: "grid" },
        card("WAL size", `${(m.wal.bytes / 1048576).toFixed(2)} MiB`, series.bytes, "wal_bytes"),
        card("Events appended", events.toLocaleString(), series.events, "events"),
        card("Events per second", Math.round(rate).toLocaleString(), series.rate, "rate"),
        card("Projection lag (events)", lag.toLocaleString(), series.lag, "lag"),
        card("Success rate", done + bad ? `${((100 * done) / (done + bad)).toFixed(1)} %` : "–", null, "success"),
        card("fsync p50 / p99", `${m.wal.fsync_p50_us} / ${m.wal.fsync_p99_us} µs`, null, "fsync"),
        card("Batch size (avg)", Number(m.wal.batch_size_avg || 0).toFixed(1), null, "batch"),
        card("WAL segments", m.wal.segments, null, "segments")),
      h("div", { class: "split" },
        h("div", {}, h("h2", { text: "Executions by status" }),
          table(["Status", "Count"], Object.entries(status).map(([k, v]) => h("tr", {}, h("td", {}, badge(k)), h("td", { text: v }))), "No executions."),
          h("h2", { text: "Events by type" }),
          table(["Type", "Count"], Object.entries(m.wal.events_by_type).map(([k, v]) => h("tr", {}, h("td", {}, code(k)), h("td", { text: v }))), "No events.")),
        h("div", {}, h("h2", { text: "Step latency and outcomes" }),
          table(["Capability / step", "Count", "OK", "Failed", "p50", "p99"], Object.entries(m.saga.steps).map(([k, v]) =>
            h("tr", {}, h("td", {}, code(k)), h("td", { text: v.count }), h("td", { text: v.success }), h("td", { text: v.failure }),
              h("td", { text: fmtMs(v.p50_ms) }), h("td", { text: fmtMs(v.p99_ms) }))),
          admin ? "No steps ran yet." : "Step latencies are node-wide: sign in with the admin token to see them."),
          h("h2", { text: "State surface" }),
          table(["Backend", "get", "set", "delete", "keys", "fallback reads"], [h("tr", {}, h("td", { text: m.state.backend }),
            h("td", { text: m.state.ops.get }), h("td", { text: m.state.ops.set }), h("td", { text: m.state.ops.delete }),
            h("td", { text: m.state.keys ?? "–" }), h("td", { text: m.state.fallback_reads }))], ""),
          h("h2", { text: "Projections" }),
          table(["Projection", "Applied LSN", "Lag", "Errors", "Stalled"], Object.entries(m.projections).map(([k, p]) =>
            h("tr", {}, h("td", {}, code(k)), h("td", { text: p.applied_lsn }), h("td", { text: p.lag_events }),
              h("td", { text: p.errors, title: p.last_error || "" }), h("td", { text: p.stalled ? "yes" : "no" }))), ""))));
  };
  await tick();
  const timer = setInterval(tick, METRICS_EVERY_MS);
  leaving.push(() => clearInterval(timer));
}

// ---------------------------------------------------------------- admin

async function viewAdmin() {
  const tenants = h("div");
  const issued = h("div", { id: "issued" });
  const out = h("p", { role: "status" });
  page("Tenants and tokens",
    h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      try { await admin.createTenant($("#tenant-id").value.trim()); out.className = "muted"; out.textContent = "tenant created"; draw(); } catch (err) { out.className = "err"; out.textContent = err.message; }
    } }, h("label", { for: "tenant-id" }, h("span", { text: "New tenant id" }), h("input", { type: "text", id: "tenant-id", pattern: "[a-z0-9][a-z0-9_-]{0,62}", required: true })),
    h("button", { type: "submit" }, "Create tenant")),
    h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const t = await admin.issueToken($("#token-tenant").value.trim(), $("#token-user").value.trim(), Number($("#token-ttl").value));
        const mine = JSON.parse(sessionStorage.getItem("symphainy.issued") || "[]");
        mine.unshift(t);
        sessionStorage.setItem("symphainy.issued", JSON.stringify(mine.slice(0, 50)));
        out.className = "muted"; out.textContent = "token issued"; drawIssued();
      } catch (err) { out.className = "err"; out.textContent = err.message; }
    } },
    h("label", { for: "token-tenant" }, h("span", { text: "Tenant" }), h("input", { type: "text", id: "token-tenant", required: true })),
    h("label", { for: "token-user" }, h("span", { text: "User" }), h("input", { type: "text", id: "token-user", value: "alice", required: true })),
    h("label", { for: "token-ttl" }, h("span", { text: "Lifetime (s)" }), h("input", { type: "number", id: "token-ttl", value: "3600", min: "1" })),
    h("button", { type: "submit" }, "Issue token")),
    out, h("h2", { text: "Tenants" }), tenants, h("h2", { text: "Tokens issued from this tab" }), issued);
  const drawIssued = () => {
    const mine = JSON.parse(sessionStorage.getItem("symphainy.issued") || "[]");
    fill(issued, table(["Tenant", "User", "Token id", "Expires", ""], mine.map((t) => h("tr", {},
      h("td", { text: t.tenant_id }), h("td", { text: t.user_id }), h("td", {}, code(t.token_id)), h("td", { text: fmtTime(t.expires_at) }),
      h("td", {}, t.revoked ? badge("revoked") : [
        h("button", { type: "button", onclick: async () => { await signInWith(t.token); } }, "Use as tenant"), " ",
        h("button", { type: "button", onclick: async () => {
          try { await admin.revokeToken(t.token_id); t.revoked = true; sessionStorage.setItem("symphainy.issued", JSON.stringify(mine)); drawIssued(); } catch (err) { out.className = "err"; out.textContent = err.message; }
        } }, "Revoke")]))), "No tokens issued from this tab yet."));
  };
  const draw = async () => {
    try {
      const t = await admin.tenants();
      const list = t.tenants || [];
      fill(tenants, table(["Tenant", "Created"], list.map((x) => h("tr", {},
        h("td", {}, code(typeof x === "string" ? x : x.tenant_id)), h("td", { text: fmtTime(x.created_at) }))), "No tenants yet."));
    } catch (e) { failed(e, tenants); }
  };
  drawIssued();
  await draw();
}

// ---------------------------------------------------------------- routing

const routes = [
  [/^#\/sessions$/, () => viewSessions(), "sessions"],
  [/^#\/session\/([^/]+)$/, (m) => viewSession(m[1]), "sessions"],
  [/^#\/execution\/([^/]+)$/, (m) => viewExecution(m[1]), "sessions"],
  [/^#\/wal\/([^/]+)$/, (m, p) => viewWal(m[1], p), "sessions"],
  [/^#\/graph(?:\/([^/]+)\/(.+))?$/, (m) => viewGraph(m[1] && decodeURIComponent(m[1]), m[2] && decodeURIComponent(m[2])), "graph"],
  [/^#\/search$/, (m, p) => viewSearch(p), "search"],
  [/^#\/document\/([^/]+)$/, (m) => viewDocument(decodeURIComponent(m[1])), "search"],
  [/^#\/metrics$/, () => viewMetrics(), "metrics"],
  [/^#\/admin$/, () => viewAdmin(), "admin"],
];

function render() {
  for (const f of leaving.splice(0)) f();
  const [path, query] = (location.hash || "").split("?");
  const params = new URLSearchParams(query || "");
  const signedIn = tenant || admin;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  $("[data-nav=admin]").hidden = !admin;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav !== "admin" && a.dataset.nav !== "metrics") a.hidden = !tenant;
  }
  document.getElementById("who").textContent = who
    ? [who.tenant_id ? `tenant ${who.tenant_id} · user ${who.user_id}` : "", who.admin ? "admin" : ""].filter(Boolean).join(" · ")
    : "";
  if (!signedIn || path === "#/signin") return viewSignin();
  for (const [re, view, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    if (nav !== "admin" && nav !== "metrics" && !tenant) break;
    if (nav === "admin" && !admin) break;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    view(m, params);
    main().focus({ preventScroll: true });
    return;
  }
  location.hash = tenant ? "#/sessions" : "#/admin";
}

window.addEventListener("hashchange", render);
document.getElementById("signout").addEventListener("click", () => signOut("Signed out."));
render();
