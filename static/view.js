// The view: draws the model into the page. Mail data only ever goes in
// through textContent, attributes and the sandboxed iframe's srcdoc — never
// innerHTML.

import {
  BAD_STATUSES,
  FOLDER_TITLES,
  STATUS_LABELS,
  formatDateLong,
  formatDateShort,
  isEmptyQuery,
} from "./mailmodel.js";

// Mail HTML gets its own, stricter policy on top of the page's: nothing
// may load or run, only inline styles and data: images are thinkable.
export const FRAME_CSP =
  '<meta http-equiv="Content-Security-Policy" ' +
  "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">";

/** Make an element: h("p", {class: "x"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function listText(value) {
  if (Array.isArray(value)) return value.join(", ");
  return String(value || "");
}

export function formatSize(bytes) {
  if (typeof bytes !== "number") return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function statusChip(status, label = null) {
  const known = Object.hasOwn(STATUS_LABELS, status);
  const cls = `chip status-${known ? status : "unknown"}${BAD_STATUSES.has(status) ? " bad" : ""}`;
  return h("span", { class: cls }, label ?? (known ? STATUS_LABELS[status] : String(status || "")));
}

export class View {
  constructor() {
    this.el = {
      banner: $("banner"),
      login: $("login-screen"),
      loginForm: $("login-form"),
      loginUser: $("login-username"),
      loginPass: $("login-password"),
      loginError: $("login-error"),
      loginButton: $("login-button"),
      loginShareLocation: $("login-share-location"),
      app: $("app"),
      me: $("me-address"),
      search: $("search"),
      folders: [...document.querySelectorAll("[data-view]")],
      inboxCount: $("inbox-count"),
      listPane: $("list-pane"),
      listTitle: $("list-title"),
      listInfo: $("list-info"),
      list: $("message-list"),
      listEmpty: $("list-empty"),
      loadMore: $("load-more"),
      listStatus: $("list-status"),
      reader: $("reader"),
      providersPane: $("providers-pane"),
      providersBody: $("providers-body"),
      providersNote: $("providers-note"),
      geolists: $("geolists"),
      compose: $("compose"),
      composeForm: $("compose-form"),
      composeStatus: $("compose-status"),
      composeError: $("compose-error"),
      send: $("send"),
      files: $("compose-files"),
      filesList: $("compose-files-list"),
      filesTotal: $("compose-files-total"),
      filesNote: $("compose-files-note"),
      toast: $("toast"),
      live: $("live"),
    };
    this.fields = {
      to: $("compose-to"),
      cc: $("compose-cc"),
      bcc: $("compose-bcc"),
      subject: $("compose-subject"),
      text: $("compose-text"),
    };
    this.rows = new Map(); // id → {li, button, sig}
    this.handlers = {};
    this.toastTimer = null;
  }

  // ---- screens ------------------------------------------------------------

  showLogin(message = "") {
    this.el.app.hidden = true;
    this.el.login.hidden = false;
    this.el.banner.hidden = true;
    this.setLoginBusy(false);
    this.loginError(message);
    document.title = "BitMail — Log in";
    (this.el.loginUser.value ? this.el.loginPass : this.el.loginUser).focus();
  }

  showApp() {
    this.el.login.hidden = true;
    this.el.app.hidden = false;
    this.el.loginPass.value = "";
  }

  setLoginBusy(busy) {
    this.el.loginButton.disabled = busy;
    this.el.loginButton.textContent = busy ? "Logging in…" : "Log in";
  }

  loginError(message, field = null) {
    this.el.loginError.textContent = message || "";
    this.el.loginError.hidden = !message;
    for (const [name, input] of [
      ["username", this.el.loginUser],
      ["password", this.el.loginPass],
    ]) {
      if (message && field === name) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  renderUser(user) {
    this.el.me.textContent = user ? user.address : "";
    this.el.me.title = user ? `Logged in as ${user.address}` : "";
  }

  banner(state) {
    this.el.banner.hidden = state !== "lost";
  }

  toast(message) {
    this.el.toast.textContent = message;
    this.el.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      this.el.toast.hidden = true;
    }, 3000);
  }

  announce(message) {
    this.el.live.textContent = "";
    // A fresh text node makes screen readers speak it even when repeated.
    setTimeout(() => {
      this.el.live.textContent = message;
    }, 50);
  }

  // ---- folders and the list ------------------------------------------------

  renderView(model) {
    const view = model.view;
    for (const button of this.el.folders) {
      if (button.dataset.view === view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    const isFolder = view !== "providers";
    this.el.listPane.hidden = !isFolder;
    this.el.reader.hidden = !isFolder;
    this.el.providersPane.hidden = isFolder;
    this.el.app.classList.toggle("show-providers", !isFolder);
    this.el.listTitle.textContent = FOLDER_TITLES[view] || view;
    this.el.search.disabled = !isFolder;
    this.rows.clear();
    this.el.list.replaceChildren();
    this.updateTitle(model);
  }

  updateTitle(model) {
    const unread = model.unreadCount("inbox");
    this.el.inboxCount.replaceChildren();
    if (unread) {
      this.el.inboxCount.append(String(unread), h("span", { class: "visually-hidden" }, " unread"));
    }
    const where = FOLDER_TITLES[model.view] || "";
    document.title = `${unread ? `(${unread}) ` : ""}${where} — BitMail`;
  }

  rowSignature(m, folder) {
    const rec = (m.recipients || []).map((r) => `${r.address}:${r.status}`).join(",");
    return [m.from, listText(m.to), m.subject, m.preview, m.date, m.status, m.unread, rec,
      m.has_attachments, folder].join("|");
  }

  /** Selection changes only attributes: the row a click is landing on must stay. */
  markSelected(li, selected, tabStop) {
    const button = li.firstElementChild;
    li.classList.toggle("selected", selected);
    button.tabIndex = tabStop ? 0 : -1;
    if (selected) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }

  buildRow(m, folder, fresh) {
    const who = folder === "sent" ? `To: ${listText(m.to) || "(no recipients)"}` : m.from || "";
    const subject = m.subject || "(no subject)";
    const parts = [];
    if (m.unread) {
      parts.push(h("span", { class: "visually-hidden" }, "Unread, "));
    }
    parts.push(
      h("span", { class: "row-top" },
        m.unread ? h("span", { class: "dot", "aria-hidden": "true" }) : null,
        h("span", { class: "who" }, who),
        m.has_attachments ? h("span", { class: "clip", title: "Has attachments" }, "📎") : null,
        h("time", {
          class: "when",
          datetime: typeof m.date === "number" ? new Date(m.date * 1000).toISOString() : null,
          title: formatDateLong(m.date),
        }, formatDateShort(m.date))),
      h("span", { class: "row-subject" }, subject,
        m.preview ? h("span", { class: "preview" }, ` — ${m.preview}`) : null),
    );
    if (folder === "sent") {
      const statuses = h("span", { class: "row-status" });
      if (m.recipients && m.recipients.length) {
        for (const r of m.recipients) {
          statuses.append(h("span", { class: "rcpt" },
            h("span", { class: "rcpt-addr" }, r.address), " ", statusChip(r.status)));
        }
      } else if (m.status) {
        statuses.append(statusChip(m.status));
      }
      parts.push(statuses);
    }
    const button = h("button", {
      type: "button",
      class: `row${m.unread ? " unread" : ""}${fresh ? " fresh" : ""}`,
      "data-id": m.id,
    }, parts);
    return h("li", {}, button);
  }

  renderList(model) {
    const folderName = model.view;
    const f = model.folder;
    if (!f) return;
    const rows = model.visibleMessages();
    const focusedId = document.activeElement?.closest?.("#message-list .row")?.dataset.id ?? null;
    const selectedId = model.selectedId;
    // One row is the list's tab stop: the selected one, else the first.
    const tabStopId = rows.some((m) => m.id === selectedId) ? selectedId : rows[0]?.id;
    const seen = new Set();
    const ordered = [];
    for (const m of rows) {
      const sig = this.rowSignature(m, folderName);
      let entry = this.rows.get(m.id);
      if (!entry || entry.sig !== sig) {
        const fresh = model.fresh.has(m.id);
        model.fresh.delete(m.id);
        const li = this.buildRow(m, folderName, fresh);
        if (entry) entry.li.replaceWith(li);
        entry = { li, sig };
        this.rows.set(m.id, entry);
      }
      this.markSelected(entry.li, m.id === selectedId, m.id === tabStopId);
      seen.add(m.id);
      ordered.push(entry.li);
    }
    for (const [id, entry] of this.rows) {
      if (!seen.has(id)) {
        entry.li.remove();
        this.rows.delete(id);
      }
    }
    const current = [...this.el.list.children];
    if (current.length !== ordered.length || current.some((li, i) => li !== ordered[i])) {
      this.el.list.replaceChildren(...ordered);
    }
    if (focusedId && this.rows.has(focusedId)) {
      const b = this.rows.get(focusedId).li.querySelector(".row");
      if (document.activeElement !== b) b.focus({ preventScroll: true });
    }
    const searching = !isEmptyQuery(model.query);
    this.el.listEmpty.hidden = !(f.loaded && rows.length === 0);
    this.el.listEmpty.textContent = searching
      ? "Nothing loaded matches this search."
      : folderName === "inbox" ? "Your Inbox is empty." : "Nothing sent yet.";
    this.el.loadMore.hidden = !f.next;
    this.el.loadMore.disabled = f.loading;
    this.el.loadMore.textContent = f.loading && f.loaded ? "Loading…" : "Load more";
    let status = "";
    if (f.loading && !f.loaded) status = "Loading…";
    else if (f.error) status = f.error;
    this.el.listStatus.textContent = status;
    this.el.listInfo.textContent = searching && f.loaded
      ? `${rows.length} found${f.next ? " in what is loaded" : ""}`
      : "";
    this.updateTitle(model);
  }

  focusRow(id) {
    const entry = this.rows.get(id);
    if (!entry) return;
    const button = entry.li.querySelector(".row");
    button.focus();
    button.scrollIntoView({ block: "nearest" });
  }

  // ---- the reading pane ----------------------------------------------------

  renderReader(model, attachmentUrl) {
    const reader = this.el.reader;
    const open = model.open;
    this.el.app.classList.toggle("reading", !!open);
    if (!open) {
      reader.replaceChildren(h("div", { class: "reader-empty" },
        h("p", {}, "Select a message to read it."),
        h("p", { class: "muted" }, "Shortcuts: c compose · j / k move · Enter open · Esc close · / search")));
      return;
    }
    const toolbar = h("div", { class: "reader-bar" },
      h("button", {
        type: "button", class: "ghost back", onclick: () => this.handlers.close?.(),
        "aria-keyshortcuts": "Escape",
      }, h("span", { class: "only-phone" }, "← Back"), h("span", { class: "only-laptop" }, "Close")));
    if (open.loading) {
      reader.replaceChildren(toolbar, h("p", { class: "muted pad" }, "Loading…"));
      return;
    }
    if (open.error) {
      reader.replaceChildren(toolbar, h("p", { class: "form-error pad", role: "alert" }, open.error));
      return;
    }
    const m = open.message;
    toolbar.append(
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "ghost", onclick: () => this.handlers.reply?.() }, "Reply"),
      h("button", { type: "button", class: "ghost", onclick: () => this.handlers.forward?.() },
        "Forward"),
    );
    if (m.html) {
      toolbar.append(h("button", {
        type: "button", class: "ghost", "aria-pressed": model.showHtml ? "true" : "false",
        onclick: () => this.handlers.toggleHtml?.(),
      }, model.showHtml ? "Show text" : "Show HTML"));
    }
    const head = h("header", { class: "reader-head" },
      h("h2", { class: "reader-subject", tabindex: "-1", id: "reader-subject" },
        m.subject || "(no subject)"),
      h("dl", { class: "meta" },
        h("dt", {}, "From"), h("dd", {}, m.from || ""),
        h("dt", {}, "To"), h("dd", {}, listText(m.to)),
        m.cc && m.cc.length ? [h("dt", {}, "Cc"), h("dd", {}, listText(m.cc))] : null,
        m.bcc && m.bcc.length ? [h("dt", {}, "Bcc"), h("dd", {}, listText(m.bcc))] : null,
        h("dt", {}, "Date"), h("dd", {}, formatDateLong(m.date))));
    const parts = [toolbar, head];
    if (m.recipients && m.recipients.length && m.folder !== "inbox") {
      parts.push(this.buildRecipients(m));
    }
    if (m.attachments && m.attachments.length) {
      parts.push(h("section", { class: "attachments", "aria-label": "Attachments" },
        h("h3", {}, "Attachments"),
        h("ul", {}, m.attachments.map((a) => h("li", {},
          h("a", { href: attachmentUrl(m.id, a.index), download: a.filename || "attachment" },
            a.filename || "attachment"),
          h("span", { class: "muted" }, ` ${formatSize(a.size)}`))))));
    }
    parts.push(this.buildBody(m, model.showHtml));
    if (m.events && m.events.length) parts.push(this.buildEvents(m));
    reader.replaceChildren(h("article", { class: "message", "aria-labelledby": "reader-subject" },
      parts));
  }

  buildBody(m, showHtml) {
    if (showHtml && m.html) {
      const frame = h("iframe", {
        class: "html-frame",
        title: "Message (HTML)",
        sandbox: "",
        referrerpolicy: "no-referrer",
      });
      // Empty sandbox: no scripts, no forms, an opaque origin. The page's
      // CSP is inherited as well; FRAME_CSP narrows it further.
      frame.setAttribute("sandbox", "");
      if (typeof m.html_url === "string" && m.html_url.startsWith("/api/")) {
        // A server that serves the body as its own document, under its own
        // policy (which can let the mail's inline styles apply).
        frame.src = m.html_url;
      } else {
        frame.srcdoc = FRAME_CSP + m.html;
      }
      return h("div", { class: "body html" }, frame);
    }
    const text = m.text || (m.html ? "This message has only an HTML version: use “Show HTML”." : "");
    return h("div", { class: "body text" }, text || h("span", { class: "muted" }, "(empty message)"));
  }

  buildRecipients(m) {
    const rows = m.recipients.map((r) => h("tr", {},
      h("td", { class: "addr" }, r.address),
      h("td", {}, statusChip(r.status)),
      h("td", { class: "muted" }, r.provider || ""),
      h("td", { class: "muted detail" }, r.detail || "")));
    return h("section", { class: "recipients", id: "recipients", "aria-label": "Delivery status" },
      h("table", {},
        h("caption", {}, "Delivery"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Recipient"), h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Provider"), h("th", { scope: "col" }, "Detail"))),
        h("tbody", {}, rows)));
  }

  buildEvents(m) {
    return h("details", { class: "events", id: "events" },
      h("summary", {}, `Delivery history (${m.events.length})`),
      h("ol", {}, m.events.map((e) => h("li", {},
        h("time", {}, formatDateLong(e.at)), " ",
        h("strong", {}, e.type || ""),
        e.recipient ? ` ${e.recipient}` : "",
        e.provider ? h("span", { class: "muted" }, ` via ${e.provider}`) : null,
        e.detail ? h("span", { class: "muted" }, ` — ${e.detail}`) : null))));
  }

  /** Live status change of the open message: redraw its delivery parts only. */
  renderStatus(model) {
    const m = model.open && model.open.message;
    if (!m) return;
    const old = this.el.reader.querySelector("#recipients");
    if (old && m.recipients) old.replaceWith(this.buildRecipients(m));
    const oldEvents = this.el.reader.querySelector("#events");
    if (m.events && m.events.length) {
      const fresh = this.buildEvents(m);
      if (oldEvents) {
        fresh.open = oldEvents.open;
        oldEvents.replaceWith(fresh);
      } else this.el.reader.querySelector("article")?.append(fresh);
    }
  }

  focusReader() {
    this.el.reader.querySelector("#reader-subject")?.focus({ preventScroll: true });
  }

  // ---- providers -----------------------------------------------------------

  renderProviders(model) {
    const list = model.providers;
    if (!list) {
      this.el.providersNote.textContent = "Loading…";
      return;
    }
    this.el.providersNote.textContent = list.length ? "" : "No providers are configured.";
    const ms = (v) => (typeof v === "number" ? `${Math.round(v)} ms` : "—");
    this.el.providersBody.replaceChildren(...list.map((p) => h("tr", {},
      h("th", { scope: "row" }, p.name || ""),
      h("td", {}, p.type || ""),
      h("td", {}, h("span", { class: `chip state-${p.state}` }, p.state || "")),
      h("td", { class: "num" }, String(p.sent ?? 0)),
      h("td", { class: "num" }, String(p.failed ?? 0)),
      h("td", { class: "num" }, ms(p.latency_ms?.p50)),
      h("td", { class: "num" }, ms(p.latency_ms?.p95)),
      h("td", { class: "muted detail" }, p.last_error || ""))));
  }

  // ---- GeoLists -------------------------------------------------------------

  renderGeolists(model) {
    const data = model.geolists;
    const box = this.el.geolists;
    if (!data) {
      box.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const lists = data.lists || [];
    if (!lists.length || data.located === false) {
      box.replaceChildren(h("p", { class: "muted note" },
        "Share your location when you log in to see friends near you."));
      return;
    }
    const leave = h("button", {
      type: "button", class: "link geo-leave",
      onclick: () => this.handlers.leaveGeolists?.(),
    }, "Stop sharing my location");
    box.replaceChildren(leave, ...lists.map((g) => {
      const n = g.count ?? (g.addresses || []).length;
      const label = `${g.name} (${n} ${n === 1 ? "Friend" : "Friends"})`;
      return h("button", {
        type: "button", class: "geo", disabled: n === 0,
        onclick: () => this.handlers.geolist?.(g),
      }, label);
    }));
  }

  // ---- compose ---------------------------------------------------------------

  openCompose(focus = "to") {
    this.el.compose.hidden = false;
    this.el.app.classList.add("composing");
    const field = this.fields[focus] || this.fields.to;
    field.focus();
    if (focus === "text") field.setSelectionRange(0, 0);
  }

  closeCompose() {
    this.el.compose.hidden = true;
    this.el.app.classList.remove("composing");
    for (const name of ["to", "cc", "bcc"]) this.hideSuggestions(name);
  }

  get composeOpen() {
    return !this.el.compose.hidden;
  }

  readDraft() {
    const out = {};
    for (const [name, field] of Object.entries(this.fields)) out[name] = field.value;
    return out;
  }

  fillDraft(draft) {
    for (const [name, field] of Object.entries(this.fields)) field.value = draft[name] || "";
  }

  /**
   * The draft's attachments: [{key, filename, size, state: "ready"|"fetching"|"failed"}],
   * their total against `limit`, and the names a reload lost (`missing`).
   */
  renderAttachments(items, { total = 0, limit = 0, missing = [] } = {}) {
    const list = this.el.filesList;
    list.replaceChildren(...items.map((a) => h("li", { "data-key": a.key },
      h("span", { class: "attach-name" }, a.filename),
      h("span", { class: "muted" }, formatSize(a.size)),
      a.state === "fetching" ? h("span", { class: "muted" }, "fetching…") : null,
      a.state === "failed" ? h("span", { class: "field-error" }, "could not be fetched") : null,
      h("button", {
        type: "button", class: "icon small", "aria-label": `Remove ${a.filename}`,
        title: "Remove", "data-remove": a.key,
      }, "✕"))));
    list.hidden = items.length === 0;
    const over = limit && total > limit;
    this.el.filesTotal.textContent = items.length
      ? `${items.length} ${items.length === 1 ? "file" : "files"}, ${formatSize(total)}` +
        (over ? ` — over the ${formatSize(limit)} limit` : "")
      : "";
    this.el.filesTotal.classList.toggle("field-error", !!over);
    this.el.filesNote.textContent = missing.length
      ? `Attachments are not kept when the page reloads — choose again: ${missing.join(", ")}`
      : "";
    this.el.filesNote.hidden = !missing.length;
  }

  fieldError(name, message) {
    const field = this.fields[name];
    const box = $(`compose-${name}-error`);
    if (!field) return;
    if (message) {
      field.setAttribute("aria-invalid", "true");
      if (box) {
        box.textContent = message;
        box.hidden = false;
      }
    } else {
      field.removeAttribute("aria-invalid");
      if (box) {
        box.textContent = "";
        box.hidden = true;
      }
    }
  }

  clearFieldErrors() {
    for (const name of Object.keys(this.fields)) this.fieldError(name, null);
    this.composeError("");
  }

  composeError(message) {
    this.el.composeError.textContent = message || "";
    this.el.composeError.hidden = !message;
  }

  setSending(sending) {
    this.el.send.disabled = sending;
    this.el.send.textContent = sending ? "Sending…" : "Send";
    this.el.composeStatus.textContent = sending ? "Sending…" : "";
    this.el.compose.setAttribute("aria-busy", sending ? "true" : "false");
  }

  showSuggestions(name, items, active) {
    const box = $(`compose-${name}-suggestions`);
    const field = this.fields[name];
    if (!items.length) {
      this.hideSuggestions(name);
      return;
    }
    box.replaceChildren(...items.map((address, i) => h("li", {
      id: `compose-${name}-option-${i}`,
      role: "option",
      class: i === active ? "active" : "",
      "aria-selected": i === active ? "true" : "false",
      "data-address": address,
    }, address)));
    box.hidden = false;
    field.setAttribute("aria-expanded", "true");
    if (active >= 0) field.setAttribute("aria-activedescendant", `compose-${name}-option-${active}`);
    else field.removeAttribute("aria-activedescendant");
  }

  hideSuggestions(name) {
    const box = $(`compose-${name}-suggestions`);
    const field = this.fields[name];
    if (!box) return;
    box.hidden = true;
    box.replaceChildren();
    field.setAttribute("aria-expanded", "false");
    field.removeAttribute("aria-activedescendant");
  }
}
