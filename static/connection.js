// The connection: every request to the API, and the live event stream.
//
// It knows the CSRF token, turns answers into values or errors
// ({"error": {"code", "message", "field"}} → ApiError), notices when the
// server cannot be reached, and recovers on its own: the state goes
// "live" → "lost" → "live", and the controller re-fetches what it shows.

/** The server said no: status, code, message and (maybe) the field at fault. */
export class ApiError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The server could not be reached at all. */
export class NetworkError extends Error {
  constructor(message = "BitMail cannot be reached") {
    super(message);
    this.name = "NetworkError";
  }
}

const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const EVENT_TYPES = ["message", "status", "providers", "moved", "deleted", "draft", "geolists"];
// How long an event stream may stay broken before the page says so: a
// server's quick restart or a page reload should not flash a banner.
const GRACE_MS = 1200;
const PROBE_MS = 2500;

/** A random key for Idempotency-Key (works outside secure contexts too). */
export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Connection {
  /**
   * onEvent(type, data): a live event; onState(state, {recovered}): "live" or
   * "lost"; onUnauthorized(): the session is gone.
   */
  constructor({ onEvent = () => {}, onState = () => {}, onUnauthorized = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.csrf = null;
    this.state = "idle";
    this.source = null;
    this.wantEvents = false;
    this.graceTimer = null;
    this.probeTimer = null;
    this.unloading = false;
    addEventListener("pagehide", () => {
      this.unloading = true;
    });
  }

  // ---- requests -----------------------------------------------------------

  async request(method, path, { json, headers = {}, quiet401 = false, keepalive = false } = {}) {
    const init = {
      method,
      credentials: "same-origin",
      cache: "no-store",
      keepalive, // a save as the page goes away still arrives
      headers: { Accept: "application/json", ...headers },
    };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    if (STATE_CHANGING.has(method) && this.csrf) init.headers["X-CSRF-Token"] = this.csrf;
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      this.lost();
      throw new NetworkError();
    }
    // A proxy in front of a stopped server answers for it.
    if (response.status === 502 || response.status === 504) {
      this.lost();
      throw new NetworkError();
    }
    if (this.state === "lost") this.probeSoon(0);
    let body = null;
    const type = response.headers.get("Content-Type") || "";
    if (response.status !== 204 && type.includes("json")) {
      try {
        body = await response.json();
      } catch {
        body = null;
      }
    }
    if (!response.ok) {
      const err = (body && body.error) || {};
      const error = new ApiError(
        response.status,
        err.code || `http_${response.status}`,
        err.message || response.statusText || `The server answered ${response.status}`,
        err.field ?? null,
      );
      if (response.status === 401 && !quiet401) this.unauthorized();
      throw error;
    }
    return body;
  }

  me() {
    return this.request("GET", "/api/me", { quiet401: true });
  }

  /** Log in; `create` makes the account if the name is new (and only then). */
  async login(username, password, location, { create = false } = {}) {
    const json = { username, password };
    if (create) json.create = true;
    if (location) json.location = location;
    const me = await this.request("POST", "/api/session", { json, quiet401: true });
    this.csrf = me.csrf_token || null;
    return me;
  }

  async logout() {
    try {
      await this.request("DELETE", "/api/session", { quiet401: true });
    } finally {
      this.csrf = null;
      this.stopEvents();
    }
  }

  folder(name, { before = null, q = "", limit = 50, threads = false } = {}) {
    const params = new URLSearchParams({ folder: name, limit: String(limit) });
    if (threads) params.set("view", "threads");
    if (before !== null && before !== undefined) params.set("before", String(before));
    if (q) params.set("q", q);
    return this.request("GET", `/api/messages?${params}`);
  }

  message(id) {
    return this.request("GET", `/api/messages/${encodeURIComponent(id)}`);
  }

  markRead(id, unread = false) {
    return this.request("PATCH", `/api/messages/${encodeURIComponent(id)}`, { json: { unread } });
  }

  /** Move and/or mark messages: {folder?, unread?}, or {delete: true} from Trash. */
  bulk(ids, change) {
    return this.request("POST", "/api/messages/bulk", { json: { ids, ...change } });
  }

  folders() {
    return this.request("GET", "/api/folders");
  }

  markAllRead(name) {
    return this.request("POST", `/api/folders/${encodeURIComponent(name)}/read`);
  }

  saveDraft(id, draft, { keepalive = false } = {}) {
    return this.request("PUT", `/api/drafts/${encodeURIComponent(id)}`, { json: draft, keepalive });
  }

  deleteDraft(id) {
    return this.request("DELETE", `/api/drafts/${encodeURIComponent(id)}`);
  }

  patchMe(changes) {
    return this.request("PATCH", "/api/me", { json: changes });
  }

  changePassword(current, fresh) {
    return this.request("POST", "/api/me/password", { json: { current, new: fresh } });
  }

  keys() {
    return this.request("GET", "/api/keys");
  }

  createKey(name) {
    return this.request("POST", "/api/keys", { json: { name } });
  }

  deleteKey(id) {
    return this.request("DELETE", `/api/keys/${encodeURIComponent(id)}`);
  }

  send(payload, idempotencyKey) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.request("POST", "/api/messages", { json: payload, headers });
  }

  /** {unknown: [...]}: which of these addresses at our domain name no user. */
  checkRecipients(addresses) {
    return this.request("POST", "/api/recipients/check", { json: { addresses } });
  }

  contacts() {
    return this.request("GET", "/api/contacts");
  }

  geolists() {
    return this.request("GET", "/api/geolists");
  }

  leaveGeolists() {
    return this.request("DELETE", "/api/geolists");
  }

  providers() {
    return this.request("GET", "/api/providers");
  }

  attachmentUrl(id, index) {
    return `/api/messages/${encodeURIComponent(id)}/attachments/${encodeURIComponent(index)}`;
  }

  /** One attachment's bytes, as a Blob. */
  async attachment(id, index) {
    let response;
    try {
      response = await fetch(this.attachmentUrl(id, index), {
        credentials: "same-origin", cache: "no-store",
      });
    } catch {
      throw new NetworkError();
    }
    if (!response.ok) {
      if (response.status === 401) this.unauthorized();
      throw new ApiError(response.status, `http_${response.status}`,
        `the server answered ${response.status}`);
    }
    return response.blob();
  }

  // ---- live events --------------------------------------------------------

  startEvents() {
    this.wantEvents = true;
    this.openSource();
  }

  stopEvents() {
    this.wantEvents = false;
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.graceTimer);
    clearTimeout(this.probeTimer);
    this.graceTimer = this.probeTimer = null;
    this.state = "idle";
  }

  openSource() {
    if (this.source) this.source.close();
    const source = new EventSource("/api/events");
    this.source = source;
    source.addEventListener("open", () => {
      if (source === this.source) this.live();
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (e) => {
        if (source !== this.source) return;
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          return;
        }
        this.onEvent(type, data);
      });
    }
    source.addEventListener("error", async () => {
      if (source !== this.source || this.unloading) return;
      const closed = source.readyState === EventSource.CLOSED;
      if (closed) {
        source.close();
        this.source = null;
      }
      // The server ends the stream when the session ends (a logout in
      // another tab, expiry): ask at once whether that is why, so the page
      // goes to the login screen rather than saying "reconnecting" (the
      // probe's timer may not fire for minutes in a background tab).
      if (this.state !== "lost" && await this.sessionEnded()) return;
      if (closed) {
        // The browser gave up (a refused answer, e.g. a proxy's error
        // page): open a new stream when it can work.
        if (!this.source) this.lost();
        return;
      }
      if (source !== this.source) return;
      // CONNECTING: the browser retries by itself; say so only if it takes long.
      if (this.state === "live" && !this.graceTimer) {
        this.graceTimer = setTimeout(() => {
          this.graceTimer = null;
          if (this.source !== source || source.readyState !== EventSource.OPEN) this.lost();
        }, GRACE_MS);
      }
    });
  }

  live() {
    clearTimeout(this.graceTimer);
    clearTimeout(this.probeTimer);
    this.graceTimer = this.probeTimer = null;
    const recovered = this.state === "lost";
    this.state = "live";
    this.onState("live", { recovered });
  }

  lost() {
    if (!this.wantEvents || this.unloading) return;
    if (this.state !== "lost") {
      this.state = "lost";
      this.onState("lost", { recovered: false });
    }
    this.probeSoon(PROBE_MS);
  }

  probeSoon(delay) {
    if (this.probeTimer && delay > 0) return;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => this.probe(), delay);
  }

  /** GET /api/me as it is: the answer, or null when the server cannot be reached. */
  async askMe() {
    try {
      return await fetch("/api/me", { credentials: "same-origin", cache: "no-store" });
    } catch {
      return null;
    }
  }

  /** Has the session ended? Then the page is told (onUnauthorized) and it is true. */
  async sessionEnded() {
    const response = await this.askMe();
    if (!response || response.status !== 401 || !this.wantEvents) return false;
    this.unauthorized();
    return true;
  }

  /** While lost: is the server back, and is the session still good? */
  async probe() {
    this.probeTimer = null;
    if (!this.wantEvents || this.state !== "lost") return;
    const response = await this.askMe();
    if (!response) {
      this.probeSoon(PROBE_MS);
      return;
    }
    if (response.status === 401) {
      this.unauthorized();
      return;
    }
    if (!response.ok) {
      this.probeSoon(PROBE_MS);
      return;
    }
    const source = this.source;
    if (source && source.readyState === EventSource.OPEN) {
      this.live();
    } else if (!source || source.readyState === EventSource.CLOSED) {
      this.openSource(); // its "open" event makes the state live again
      this.probeSoon(PROBE_MS);
    } else {
      // Still CONNECTING on the browser's own schedule; hurry it up.
      this.openSource();
      this.probeSoon(PROBE_MS);
    }
  }

  unauthorized() {
    const wanted = this.wantEvents;
    this.stopEvents();
    this.csrf = null;
    if (wanted) this.onUnauthorized();
  }
}
