// The UI's client of the public API (CONTRACT.md): HTTP calls with a bearer token, and a
// WebSocket subscription to one session that resumes from the last LSN it saw, dropping
// duplicates, so its listener sees every event of the session once and in LSN order.

/** An answer other than 2xx, with the contract's error body. */
export class ApiError extends Error {
  constructor(status, code, message, requestId, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }
}

/** HTTP client of one token. */
export class Client {
  /** Told after every request whether the server answered (false: unreachable or 503). */
  static onReachable = () => {};

  constructor(token) {
    this.token = token;
  }

  async request(method, path, { body, form } = {}) {
    const headers = {};
    if (this.token) headers.authorization = "Bearer " + this.token;
    let payload;
    if (form) payload = form;
    else if (body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      Client.onReachable(false);
      throw new ApiError(0, "unreachable", "the server cannot be reached (stopped or restarting)");
    }
    Client.onReachable(r.status !== 503);
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!r.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(
        r.status,
        err.code || "http_" + r.status,
        err.message || r.statusText || "request failed",
        err.request_id,
        r.headers.get("retry-after"),
      );
    }
    return data;
  }

  get(path) { return this.request("GET", path); }
  post(path, body) { return this.request("POST", path, { body: body === undefined ? {} : body }); }

  // Admin.
  tenants() { return this.get("/admin/tenants"); }
  createTenant(tenant_id) { return this.post("/admin/tenants", { tenant_id }); }
  issueToken(tenant_id, user_id, ttl_seconds) {
    return this.post("/admin/tokens", { tenant_id, user_id, ttl_seconds });
  }
  revokeToken(tokenId) { return this.post("/admin/tokens/" + encodeURIComponent(tokenId) + "/revoke"); }

  // Tenant.
  capabilities() { return this.get("/curator/capabilities"); }
  sessions(limit = 50) { return this.get("/sessions?limit=" + limit); }
  createSession(context) { return this.post("/session/create", { context: context || {} }); }
  session(id) { return this.get("/session/" + encodeURIComponent(id)); }
  closeSession(id) { return this.post("/session/" + encodeURIComponent(id) + "/close"); }
  submit(intent) { return this.post("/intent/submit", intent); }
  status(executionId) { return this.get("/execution/" + encodeURIComponent(executionId) + "/status"); }
  wal(sessionId, fromLsn, limit) {
    return this.get(`/runtime/wal/${encodeURIComponent(sessionId)}?from_lsn=${fromLsn}&limit=${limit}`);
  }
  metrics() { return this.get("/runtime/metrics"); }
  document(id) { return this.get("/content/documents/" + encodeURIComponent(id) + "?include=chunks"); }
  search(q, k = 10) { return this.get("/content/search?q=" + encodeURIComponent(q) + "&k=" + k); }
  vertex(collection, key) {
    return this.get("/graph/vertex/" + encodeURIComponent(collection) + "/" + encodeURIComponent(key));
  }
  traverse(start, direction = "any", depth = 1) {
    return this.get(`/graph/traverse?start=${encodeURIComponent(start)}&direction=${direction}&depth=${depth}`);
  }
  upload(sessionId, file) {
    const form = new FormData();
    form.append("session_id", sessionId);
    form.append("file", file, file.name);
    return this.request("POST", "/content/upload", { form });
  }
  devSignin() { return this.request("POST", "/ui/dev-signin"); }
}

/** Reconnect delays of a dropped socket: 250 ms doubling to 5 s. */
export const RECONNECT_MS_MIN = 250;
export const RECONNECT_MS_MAX = 5000;

/**
 * A live feed of one session's events. `onEvent(event)` sees each event once, in LSN order;
 * `onState(state, detail)` sees "connecting", "live", "reconnecting" and "unauthorized".
 * After a drop it subscribes again from the last LSN seen + 1 and ignores anything at or
 * below it, so the feed has no gap and no duplicate.
 */
export class SessionFeed {
  constructor(token, sessionId, fromLsn, { onEvent, onState }) {
    this.token = token;
    this.sessionId = sessionId;
    this.lastLsn = Math.max(0, fromLsn - 1);
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.delay = RECONNECT_MS_MIN;
    this.closed = false;
    this.drops = 0;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    this.onState("connecting");
    const url = location.origin.replace(/^http/, "ws") + "/ws?token=" + encodeURIComponent(this.token);
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "subscribe", session_id: this.sessionId, from_lsn: this.lastLsn + 1 }));
      this.delay = RECONNECT_MS_MIN;
      this.onState("live", { from: this.lastLsn + 1 });
    };
    socket.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (msg.type === "event" && msg.session_id === this.sessionId) {
        if (msg.lsn <= this.lastLsn) return; // already seen before a reconnect
        this.lastLsn = msg.lsn;
        this.onEvent(msg);
      } else if (msg.type === "error") {
        this.onState("error", { code: msg.code, message: msg.message });
      }
    };
    socket.onclose = (e) => {
      if (this.socket !== socket || this.closed) return;
      if (e.code === 1008) {
        this.closed = true;
        this.onState("unauthorized", { reason: e.reason });
        return;
      }
      this.drops += 1;
      this.onState("reconnecting", { in_ms: this.delay, reason: e.reason || "connection lost" });
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, RECONNECT_MS_MAX);
    };
  }

  /** Closes the socket as a network drop would (the feed reconnects and resumes). */
  drop() {
    if (this.socket) this.socket.close(4000, "dropped by the client");
  }

  close() {
    this.closed = true;
    if (this.socket) this.socket.close(1000, "closed");
  }
}
