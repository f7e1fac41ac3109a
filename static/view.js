// The view: the screens, the reading pane, providers and GeoLists. Mail data
// only ever goes in through textContent and attributes, and mail HTML only
// through its own sandboxed document (/api/messages/{id}/html) — never
// innerHTML. The list is listview.js, compose is composeview.js, settings
// settings.js.

import { $, formatSize, h } from "./dom.js";
import { icon } from "./icons.js";
import { statusChip, statusSummary } from "./listview.js";
import { FOLDERS, formatDateLong } from "./mailmodel.js";

export { formatSize, h };

function listText(value) {
  if (Array.isArray(value)) return value.join(", ");
  return String(value || "");
}

// The reader's To, Cc and Bcc name this many and fold the rest behind a
// "N more" button, so a message to 150 people starts within the screen.
const READER_RECIPIENTS = 3;
// A delivery table longer than this starts folded (its summary counts).
const DELIVERY_OPEN_ROWS = 10;

/** A To/Cc/Bcc line: the whole list, or its first names and a "N more" button. */
function recipientLine(value, id) {
  const all = Array.isArray(value) ? value : value ? [String(value)] : [];
  if (all.length <= READER_RECIPIENTS + 1) return h("dd", {}, all.join(", "));
  const n = all.length - READER_RECIPIENTS;
  const rest = h("span", { id, hidden: true }, `, ${all.slice(READER_RECIPIENTS).join(", ")}`);
  const more = h("button", {
    type: "button", class: "link more", "aria-expanded": "false", "aria-controls": id,
    onclick: () => {
      rest.hidden = !rest.hidden;
      more.setAttribute("aria-expanded", String(!rest.hidden));
      more.replaceChildren(...moreLabel(rest.hidden ? `${n} more` : "show fewer"));
    },
  }, ...moreLabel(`${n} more`));
  return h("dd", {}, all.slice(0, READER_RECIPIENTS).join(", "), rest, " ", more);
}

/** "148 more" read as "148 more recipients" (the name keeps the words shown). */
function moreLabel(shown) {
  return [shown, h("span", { class: "visually-hidden" }, " recipients")];
}

/** How received mail arrived (issue 10): from outside BitMail (a provider's
 * name in received_via), whether its From claims an address of this service
 * anyway, and the provider's spam/virus findings worth a warning. */
function provenance(m, ownAddress) {
  const outside = m.folder !== "sent" && !!m.received_via && m.received_via !== "local-domain";
  const domain = String(ownAddress || "").split("@").pop().toLowerCase();
  const from = String(m.from_address || "").toLowerCase();
  const claimsLocal = outside && !!domain && from.endsWith(`@${domain}`);
  const v = m.verdicts || {};
  const flagged = ["spam", "virus"].filter((k) => String(v[k] || "").toUpperCase() === "FAIL");
  return { outside, claimsLocal, flagged, via: m.received_via };
}

/** A toolbar button with an icon and its words (shown, or for screen readers). */
export function toolButton(name, label, onclick, { short = label, keys = null, cls = "" } = {}) {
  return h("button", {
    type: "button", class: `ghost tool ${cls}`.trim(), onclick, title: label,
    "aria-label": short === label ? null : label, "aria-keyshortcuts": keys,
  }, icon(name), h("span", { class: "tool-label" }, short));
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
      loginCreate: $("login-create"),
      loginCreateQuestion: $("login-create-question"),
      loginCreateButton: $("login-create-button"),
      loginCreateBack: $("login-create-back"),
      loginShareLocation: $("login-share-location"),
      app: $("app"),
      me: $("me-address"),
      search: $("search"),
      listPane: $("list-pane"),
      reader: $("reader"),
      providersPane: $("providers-pane"),
      providersBody: $("providers-body"),
      providersNote: $("providers-note"),
      providersButton: $("providers-button"),
      settingsPane: $("settings-pane"),
      geolists: $("geolists"),
      toast: $("toast"),
      toastText: $("toast-text"),
      toastAction: $("toast-action"),
      live: $("live"),
    };
    this.handlers = {};
    this.toastTimer = null;
    this.toastUndo = null;
    this.el.toastAction.addEventListener("click", () => {
      const undo = this.toastUndo;
      this.hideToast();
      if (undo) undo();
    });
  }

  // ---- screens ------------------------------------------------------------

  showLogin(message = "") {
    this.el.app.hidden = true;
    this.el.login.hidden = false;
    this.el.banner.hidden = true;
    this.setLoginBusy(false);
    this.hideCreateQuestion();
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
    this.el.loginCreateButton.disabled = busy;
    this.el.loginCreateBack.disabled = busy;
  }

  /** "There is no account ‘name’. Create it?": the one way a new account is made
   * here. Focus goes to the username, where a typo is fixed; the Log in button
   * steps aside so the choice is create, or change the name. */
  askToCreate(name) {
    this.loginError("");
    this.el.loginCreateQuestion.textContent = `There is no account ‘${name}’. Create it?`;
    this.el.loginCreateButton.textContent = `Create account ${name}`;
    this.el.loginCreate.hidden = false;
    this.el.loginButton.hidden = true;
    this.el.loginUser.focus();
    this.el.loginUser.select();
  }

  hideCreateQuestion() {
    this.el.loginCreate.hidden = true;
    this.el.loginCreateQuestion.textContent = "";
    this.el.loginButton.hidden = false;
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
    const shown = user ? (user.display_name ? `${user.display_name} <${user.address}>` : user.address) : "";
    this.el.me.textContent = user ? user.address : "";
    this.el.me.title = user ? `Logged in as ${shown}` : "";
    // The operations panel is for the service's operators only.
    this.el.providersButton.closest("li").hidden = !(user && user.operator);
  }

  banner(state) {
    this.el.banner.hidden = state !== "lost";
  }

  /** A short note at the bottom; with `undo`, an Undo button for a few seconds. */
  toast(message, { undo = null, ms = undo ? 6000 : 3500, alert = false } = {}) {
    this.el.toastText.textContent = message;
    this.el.toast.classList.toggle("bad", alert);
    this.toastUndo = undo;
    this.el.toastAction.hidden = !undo;
    this.el.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => this.hideToast(), ms);
  }

  hideToast() {
    clearTimeout(this.toastTimer);
    this.el.toast.hidden = true;
    this.toastUndo = null;
  }

  announce(message) {
    this.el.live.textContent = "";
    // A fresh text node makes screen readers speak it even when repeated.
    setTimeout(() => {
      this.el.live.textContent = message;
    }, 50);
  }

  /** Which pane shows: a folder (list and reader), providers, or settings. */
  renderView(model) {
    const view = model.view;
    const isFolder = FOLDERS.includes(view);
    this.el.listPane.hidden = !isFolder;
    this.el.reader.hidden = !isFolder;
    this.el.providersPane.hidden = view !== "providers";
    this.el.settingsPane.hidden = view !== "settings";
    this.el.app.classList.toggle("show-providers", view === "providers");
    this.el.app.classList.toggle("show-settings", view === "settings");
    this.el.search.disabled = !isFolder;
    for (const button of document.querySelectorAll("[data-view]")) {
      if (button.dataset.view === view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
  }

  // ---- the reading pane ----------------------------------------------------

  renderReader(model, attachmentUrl) {
    const reader = this.el.reader;
    const open = model.open;
    this.el.app.classList.toggle("reading", !!open);
    if (!open) {
      reader.replaceChildren(h("div", { class: "reader-empty" },
        h("p", {}, "Select a message to read it."),
        h("p", { class: "muted" }, "Shortcuts: c compose · j / k move · Enter open · r reply · a reply all · f forward · e archive · # delete · u / U read / unread · x select · z undo · / search")));
      return;
    }
    const toolbar = h("div", { class: "reader-bar" },
      h("button", {
        type: "button", class: "ghost back", onclick: () => this.handlers.close?.(),
        "aria-keyshortcuts": "Escape",
      }, h("span", { class: "only-phone" }, icon("back"), "Back"),
      h("span", { class: "only-laptop" }, icon("close"), h("span", { class: "visually-hidden" }, "Close"))));
    if (open.loading) {
      reader.replaceChildren(toolbar, h("p", { class: "muted pad" }, "Loading…"));
      return;
    }
    if (open.error) {
      reader.replaceChildren(toolbar, h("p", { class: "form-error pad", role: "alert" }, open.error));
      return;
    }
    const m = open.message;
    const act = (name) => () => this.handlers[name]?.();
    const draft = m.folder === "drafts";
    toolbar.append(...[
      draft ? toolButton("forward", "Edit draft", act("editDraft")) : [
        toolButton("reply", "Reply", act("reply"), { keys: "r" }),
        toolButton("replyAll", "Reply all", act("replyAll"), { keys: "a" }),
        toolButton("forward", "Forward", act("forward"), { keys: "f" }),
      ],
      h("span", { class: "spacer" }),
      m.folder === "archive" || m.folder === "trash"
        ? toolButton("inbox", `Move to ${m.folder === "trash" && m.recipients ? "Sent" : "Inbox"}`,
          act("restore"), { short: "Restore" })
        : draft ? null : toolButton("archive", "Archive", act("archive"), { keys: "e" }),
      m.folder === "trash"
        ? toolButton("trash", "Delete forever", act("forever"), { short: "Delete forever" })
        : toolButton("trash", draft ? "Discard draft" : "Delete", act("trash"),
          { keys: draft ? null : "# Delete" }),
      draft ? null : toolButton("unread", "Mark unread", act("markUnread"),
        { short: "Unread", keys: "Shift+U" }),
    ].flat().filter(Boolean));
    if (m.html) {
      toolbar.append(h("button", {
        type: "button", class: "ghost", "aria-pressed": model.showHtml ? "true" : "false",
        onclick: () => this.handlers.toggleHtml?.(),
      }, model.showHtml ? "Show text" : "Show HTML"));
    }
    const seen = provenance(m, model.user?.address);
    const head = h("header", { class: "reader-head" },
      h("h2", { class: "reader-subject", tabindex: "-1", id: "reader-subject", dir: "auto" },
        m.subject || "(no subject)"),
      h("dl", { class: "meta" },
        h("dt", {}, "From"), h("dd", {}, m.from || ""),
        h("dt", {}, "To"), recipientLine(m.to, "reader-to-more"),
        m.cc && m.cc.length ? [h("dt", {}, "Cc"), recipientLine(m.cc, "reader-cc-more")] : null,
        m.bcc && m.bcc.length ? [h("dt", {}, "Bcc"), recipientLine(m.bcc, "reader-bcc-more")]
          : null,
        h("dt", {}, "Date"), h("dd", {}, formatDateLong(m.date)),
        seen.outside ? [h("dt", {}, "Via"),
          h("dd", { class: "via" }, `From outside BitMail, through ${seen.via}`)] : null));
    const parts = [toolbar];
    if (seen.claimsLocal) {
      parts.push(h("p", { class: "warning", role: "alert" },
        `This message came from outside BitMail, yet its From says ${m.from_address}, ` +
        "an address here. It may not be from them."));
    }
    if (seen.flagged.length) {
      parts.push(h("p", { class: "warning", role: "alert" },
        `${seen.via} marked this message as ${seen.flagged.join(" and ")}.`));
    }
    const earlier = open.earlier || [];
    if (earlier.length) {
      // The conversation so far, each message folded to a line; a click opens it.
      parts.push(h("section", { class: "thread", "aria-label": `Earlier in this conversation (${earlier.length})` },
        earlier.map((e) => h("details", { class: "thread-message" },
          h("summary", {},
            h("strong", {}, e.from || ""),
            h("span", { class: "muted" }, formatDateLong(e.date)),
            h("span", { class: "muted preview" }, (e.text || "").split("\n").find((l) => l.trim()) || "")),
          h("div", { class: "reader-head" },
            h("p", { class: "reader-subject small", dir: "auto" }, e.subject || "(no subject)"),
            h("dl", { class: "meta" },
              h("dt", {}, "From"), h("dd", {}, e.from || ""),
              h("dt", {}, "To"), h("dd", {}, listText(e.to)),
              h("dt", {}, "Date"), h("dd", {}, formatDateLong(e.date)))),
          this.buildBody(e, false)))));
    }
    parts.push(head);
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
    const body = this.shownBody(m, model.showHtml) || this.buildBody(m, model.showHtml);
    parts.push(body);
    if (m.events && m.events.length) parts.push(this.buildEvents(m));
    this.placeArticle(parts, body);
  }

  /** The body on show, when drawing `m` now would draw the same frame (the
   * same HTML document, shown as HTML); a text body is drawn anew. */
  shownBody(m, showHtml) {
    if (!showHtml || !m.html) return null;
    const body = this.el.reader.querySelector(":scope > article > .body.html");
    const frame = body?.querySelector(":scope > iframe.html-frame");
    return frame && frame.getAttribute("src") === m.html_url ? body : null;
  }

  /** The reader shows an article of `parts`. When `body` is the one on show,
   * it stays in the document and so do its ancestors, and only the nodes
   * around it are replaced: a frame taken out of the document, even to be
   * put back at once, loads its page again (it flickers, and its scroll is
   * lost). */
  placeArticle(parts, body) {
    const reader = this.el.reader;
    const article = body.isConnected ? body.parentElement : null;
    if (!article) {
      reader.replaceChildren(h("article", { class: "message", "aria-labelledby": "reader-subject" },
        parts));
      return;
    }
    for (const node of [...reader.childNodes]) if (node !== article) node.remove();
    for (const node of [...article.childNodes]) if (node !== body) node.remove();
    const at = parts.indexOf(body);
    body.before(...parts.slice(0, at));
    body.after(...parts.slice(at + 1));
  }

  buildBody(m, showHtml) {
    if (showHtml && m.html) {
      const frame = h("iframe", {
        class: "html-frame",
        title: "Message (HTML)",
        sandbox: "allow-popups allow-popups-to-escape-sandbox",
        referrerpolicy: "no-referrer",
      });
      // The sandbox: no scripts, no forms, no navigating this page, an opaque
      // origin; only links, each opening a new tab (the server adds <base
      // target="_blank"> and drops links' own targets) as an ordinary page,
      // without window.opener (this page's Cross-Origin-Opener-Policy) or a
      // Referer. The body is its own document with its own policy (see
      // api.py), so the mail's inline styles apply while nothing in it may
      // run or load.
      frame.src = m.html_url;
      return h("div", { class: "body html" }, frame);
    }
    const text = m.text || (m.html ? "This message has only an HTML version: use “Show HTML”." : "");
    return h("div", { class: "body text" }, text || h("span", { class: "muted" }, "(empty message)"));
  }

  /**
   * The Delivery table, each recipient's status. A long one is folded under
   * a summary that counts the statuses; `open` keeps it as the user left it
   * when a live update redraws it.
   */
  buildRecipients(m, open = false) {
    const rows = m.recipients.map((r) => h("tr", {},
      h("td", { class: "addr" }, r.address),
      h("td", {}, statusChip(r.status)),
      h("td", { class: "muted" }, r.provider || ""),
      h("td", { class: "muted detail" }, r.detail || "")));
    const long = m.recipients.length > DELIVERY_OPEN_ROWS;
    const table = h("table", {},
      long ? null : h("caption", {}, "Delivery"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Recipient"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Provider"), h("th", { scope: "col" }, "Detail"))),
      h("tbody", {}, rows));
    return h("section", { class: "recipients", id: "recipients", "aria-label": "Delivery status" },
      long ? h("details", { open },
        h("summary", {}, h("span", { class: "caption" }, "Delivery"),
          ` ${m.recipients.length} recipients `, statusSummary(m.recipients)),
        table) : table);
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
    if (old && m.recipients) {
      const fresh = this.buildRecipients(m, !!old.querySelector("details[open]"));
      const focused = old.contains(document.activeElement);
      old.replaceWith(fresh);
      // The summary the user was on stays focused (else the focus falls to the page).
      if (focused) fresh.querySelector("summary")?.focus({ preventScroll: true });
    }
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
    // Last in the DOM as on screen (at the row's end), so Tab meets it last (WCAG 2.4.3).
    box.replaceChildren(...lists.map((g) => {
      const n = g.count ?? (g.addresses || []).length;
      const label = `${g.name} (${n} ${n === 1 ? "Friend" : "Friends"})`;
      return h("button", {
        type: "button", class: "geo", disabled: n === 0,
        onclick: () => this.handlers.geolist?.(g),
      }, label);
    }), leave);
  }
}
