// The model: what the page knows, and the rules about it. No DOM, no network.
//
// The controller changes the model through its methods; every change is
// announced to subscribers with a topic ("folder", "open", "providers", ...),
// and the view redraws only what that topic concerns.

export const FOLDERS = ["inbox", "sent", "archive", "trash", "drafts"];
export const FOLDER_TITLES = {
  inbox: "Inbox", sent: "Sent", archive: "Archive", trash: "Trash", drafts: "Drafts",
  providers: "Providers", settings: "Settings",
};
// Where a message goes back to from Archive or Trash: its home.
export function homeFolder(m) {
  return Array.isArray(m.recipients) ? "sent" : "inbox";
}

// Recipient statuses, and what each means to a person reading the list.
export const STATUS_LABELS = {
  queued: "Queued",
  deferred: "Deferred",
  sent: "Sent",
  delivered: "Delivered",
  failed: "Failed",
  bounced: "Bounced",
  complained: "Complained",
};
export const BAD_STATUSES = new Set(["failed", "bounced", "complained"]);

/** How many recipients are in each status, in STATUS_LABELS' order (unknown
 * ones last): [[status, n], ...] — a message to many people summed up. */
export function statusCounts(recipients) {
  const counts = new Map(Object.keys(STATUS_LABELS).map((s) => [s, 0]));
  for (const r of recipients || []) counts.set(r.status, (counts.get(r.status) || 0) + 1);
  return [...counts].filter(([, n]) => n > 0);
}

// The same address rule as the server's (bitmail/message/addresses.py), for
// ASCII: a domain written in another script is checked as its IDNA A-label,
// and a local part in another script is left to the server (SMTPUTF8).
const ADDRESS_RE = new RegExp(
  "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@" +
    "(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*" +
    "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
);
const LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * The pieces of an address list with where each is: [{start, end, text}].
 * A `;` or `,` separates addresses only outside quoted strings ("Doe, John"),
 * comments and <angle brackets>; a group (`Friends: a@x, b@y;`) is one piece
 * with its closing `;` — as the server splits (addresses.py, `split_list`).
 * A line break or a tab separates too: a column or a row pasted from a
 * spreadsheet. The last piece is what follows the last separator (maybe
 * empty); `colon` is where a group's name ends (-1: not a group).
 *
 * Outlook writes names unquoted (`Smith, Alice <asmith@x>; ...`): a piece
 * with no @ (nor <, nor group) followed by a `Name <addr>` piece with no @
 * before its `<` is that name's first part, and the two are one piece. A
 * name so written goes to the server quoted (wireAddressList), whose
 * splitter knows only quotes.
 */
export function addressPieces(value) {
  const text = String(value || "");
  const out = [];
  let start = 0;
  let quoted = false;
  let escaped = false;
  let angle = 0;
  let comment = 0;
  let group = false;
  let colon = -1; // where a group's name ends
  const cut = (end, next) => {
    out.push({ start, end, text: text.slice(start, end), colon });
    start = next;
    colon = -1;
  };
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (escaped) escaped = false;
    else if (c === "\\" && (quoted || comment)) escaped = true;
    else if (quoted) quoted = c !== '"';
    else if (c === '"' && !comment) quoted = true;
    else if (c === "(") comment += 1;
    else if (c === ")" && comment) comment -= 1;
    else if (comment) continue;
    else if (c === "<") angle += 1;
    else if (c === ">" && angle) angle -= 1;
    else if (angle) continue;
    else if (c === ":" && !group) {
      group = true;
      colon = i;
    }
    else if (c === ";" && group) {
      group = false;
      cut(i + 1, i + 1);
    } else if ((c === ";" || c === "," || c === "\n" || c === "\r" || c === "\t") && !group) {
      cut(i, i + 1);
    }
  }
  cut(text.length, text.length);
  return joinUnquotedNames(text, out);
}

// A piece that can only be the start of a display name, and one that is a
// display name (maybe only begun) and an angle address.
const NAME_ONLY_RE = /^[^@<>:;"]*[^@<>:;"\s][^@<>:;"]*$/;
const NAMED_RE = /^[^@<>]*[^@<>\s][^@<>]*<[^<>]*>?\s*$/;

/** Outlook's `Smith, Alice <a@x>`: join the pieces a comma in a name made. */
function joinUnquotedNames(text, pieces) {
  const out = [];
  for (let i = pieces.length - 1; i >= 0; i -= 1) {
    const piece = pieces[i];
    const next = out[0];
    const between = next ? text.slice(piece.end, next.start) : "";
    if (next && between === "," && piece.colon < 0 && next.colon < 0 &&
        NAME_ONLY_RE.test(piece.text) && NAMED_RE.test(next.text.trim())) {
      out[0] = { start: piece.start, end: next.end, text: text.slice(piece.start, next.end), colon: -1 };
    } else {
      out.unshift(piece);
    }
  }
  return out;
}

/** Text without its (comments), outside quoted strings. */
function withoutComments(text) {
  let out = "";
  let quoted = false;
  let escaped = false;
  let comment = 0;
  for (const c of text) {
    if (escaped) escaped = false;
    else if (c === "\\" && (quoted || comment)) escaped = true;
    else if (quoted) quoted = c !== '"';
    else if (c === '"' && !comment) quoted = true;
    else if (c === "(") comment += 1;
    else if (c === ")" && comment) {
      comment -= 1;
      continue;
    }
    if (!comment) out += c;
  }
  return out;
}

/** The bare address of `a@x`, `Name <a@x>` or `a@x (comment)`. */
export function bareAddress(text) {
  const t = String(text || "").trim();
  const m = /<([^<>]*)>\s*$/.exec(t);
  return (m ? m[1] : withoutComments(t)).trim();
}

/** A group piece (`Friends: a@x, b@y;`, its `:` at `colon`): its member list. */
function groupMembers(piece) {
  return piece.text.slice(piece.colon - piece.start + 1).replace(/;\s*$/, "");
}

/** The domain as ASCII (its IDNA A-label, as the server sends it), or null. */
function asciiDomain(domain) {
  if (/^[\x21-\x7e]*$/.test(domain)) return domain;
  if (/[\s/\\?#@:[\]%]/.test(domain)) return null;
  try {
    return new URL(`http://${domain}`).hostname;
  } catch {
    return null;
  }
}

/** Why one address is not acceptable, or null when it is. */
export function addressProblem(token) {
  const shown = token.trim();
  const addr = bareAddress(shown);
  if (!addr) return `“${shown}” has no address in it`;
  if (/\s/.test(addr)) return `“${shown}” contains a space`;
  const at = addr.lastIndexOf("@");
  if (at < 0) return `“${shown}” is missing an @ and a domain`;
  const local = addr.slice(0, at);
  const domain = addr.slice(at + 1);
  if (!local) return `“${shown}” has nothing before the @`;
  if (!domain) return `“${shown}” has no domain after the @`;
  if (new TextEncoder().encode(local).length > 64) {
    return `“${shown}”: the part before the @ is too long`;
  }
  const ascii = asciiDomain(domain);
  if (ascii === null || !ascii.split(".").every((part) => LABEL_RE.test(part))) {
    return `“${shown}”: “${domain}” is not a valid domain`;
  }
  if (new TextEncoder().encode(`${local}@${ascii}`).length > 254) return `“${shown}” is too long`;
  // A local part in another script is the server's to judge (SMTPUTF8).
  if (/^[\x21-\x7e]*$/.test(local) && !ADDRESS_RE.test(`${local}@${ascii}`)) {
    return `“${shown}” is not a valid e-mail address`;
  }
  return null;
}

// A display name the server's parser takes unquoted: no specials (RFC 5322
// §3.2.3) but for comments, and no quotes (a name partly quoted is left be).
const PLAIN_NAME_RE = /^[^.,;:@[\]\\"]*$/;

/** `Name <addr>` with the name quoted where it must be (`"Smith, Alice" <a@x>`). */
export function namedAddress(name, address) {
  const n = String(name || "").trim();
  if (!n) return address;
  return PLAIN_NAME_RE.test(n) ? `${n} <${address}>`
    : `"${n.replace(/[\\"]/g, "\\$&")}" <${address}>`;
}

/** One piece as the server reads it: an unquoted name with specials in it quoted. */
function wirePiece(piece) {
  const t = piece.text.trim();
  if (piece.colon >= 0) return t;
  const m = /^([^<>"]*?)\s*<([^<>]*)>$/.exec(t);
  return m && m[1] && !PLAIN_NAME_RE.test(m[1]) ? namedAddress(m[1], m[2]) : t;
}

/**
 * A recipients field as it goes to the server: the server splits at `;`
 * and `,` outside quotes only and refuses line breaks, so a list with line
 * breaks or tabs (pasted) is joined with `; `, and an unquoted name with a
 * comma or dot in it (Outlook's `Smith, Alice <a@x>`) is quoted. A field
 * that needs neither goes as typed.
 */
export function wireAddressList(value) {
  const text = String(value || "");
  const pieces = addressPieces(text);
  const wire = pieces.map(wirePiece);
  if (!/[\r\n\t]/.test(text) && wire.every((w, i) => w === pieces[i].text.trim())) return text;
  return wire.filter(Boolean).join("; ");
}

/** The addresses of a recipients field, `a@x; b@y` (commas work too). */
export function splitAddresses(value) {
  return addressPieces(value).map((p) => p.text.trim()).filter(Boolean);
}

/**
 * Check a recipients field. With `typing`, the last part is still being
 * written (no separator after it yet), so it is not judged.
 * Returns {addresses: [...], problems: [reason, ...]}.
 */
export function checkAddressList(value, { typing = false } = {}) {
  let pieces = addressPieces(value);
  if (typing) pieces = pieces.slice(0, -1);
  const addresses = [];
  const problems = [];
  for (const piece of pieces) {
    const members = piece.colon >= 0 ? splitAddresses(groupMembers(piece)) : [piece.text.trim()];
    for (const member of members.filter(Boolean)) {
      const problem = addressProblem(member);
      if (problem) problems.push(problem);
      else addresses.push(member);
    }
  }
  return { addresses, problems };
}

/** The part of a recipients field around the caret: {start, end, text}. */
export function tokenAt(value, caret) {
  const pieces = addressPieces(value);
  const p = pieces.find((x) => caret <= x.end) || pieces[pieces.length - 1];
  return { start: p.start, end: p.end, text: p.text.trim() };
}

/** Replace the part around the caret with `address`; returns {value, caret}. */
export function replaceToken(value, caret, address) {
  const { start, end } = tokenAt(value, caret);
  const head = value.slice(0, start).replace(/\s*$/, "");
  const tail = value.slice(end).replace(/^[;,\s]*/, "");
  const prefix = head ? `${head} ` : "";
  const inserted = `${prefix}${address}; `;
  return { value: inserted + tail, caret: inserted.length };
}

/** Append addresses to a field, skipping ones already there. */
export function appendAddresses(value, addresses) {
  const parts = splitAddresses(value);
  const have = new Set(parts.map((p) => bareAddress(p).toLowerCase()));
  for (const a of addresses) {
    const key = bareAddress(a).toLowerCase();
    if (!have.has(key)) {
      parts.push(a);
      have.add(key);
    }
  }
  return parts.join("; ");
}

/** The display name of `Name <a@x>` or `"Doe, J" <a@x>` (unquoted), else "". */
export function displayName(text) {
  const m = /^(.*?)\s*<[^<>]*>\s*$/.exec(String(text || "").trim());
  if (!m) return "";
  const name = m[1].trim();
  return /^".*"$/.test(name) ? name.slice(1, -1).replace(/\\(.)/g, "$1") : name;
}

/**
 * Suggestions for what is being typed, from contacts (`a@x` or `Name <a@x>`):
 * those whose address, or a word of whose name, starts with it first, then
 * those that have it anywhere.
 */
export function suggest(contacts, typed, exclude = [], limit = 8) {
  const q = typed.trim().toLowerCase();
  if (!q) return [];
  const skip = new Set(exclude.map((a) => bareAddress(a).toLowerCase()));
  const first = [];
  const then = [];
  for (const c of contacts) {
    const addr = bareAddress(c).toLowerCase();
    if (skip.has(addr) || addr === q) continue;
    const name = displayName(c).toLowerCase();
    const local = addr.split("@")[0];
    if (addr.startsWith(q) || local.startsWith(q) || name.startsWith(q) ||
        name.split(/[\s,.]+/).some((word) => word.startsWith(q))) first.push(c);
    else if (addr.includes(q) || name.includes(q)) then.push(c);
  }
  return [...first, ...then].slice(0, limit);
}

// ---- search ---------------------------------------------------------------

/** `from:bob subject:"lunch plans" is:unread hello` → a query object. */
export function parseQuery(text) {
  const query = { from: [], to: [], subject: [], unread: false, words: [] };
  const re = /(\w+):"([^"]*)"|(\w+):(\S+)|"([^"]*)"|(\S+)/g;
  let m;
  while ((m = re.exec(String(text || "")))) {
    const key = (m[1] || m[3] || "").toLowerCase();
    const value = (m[2] ?? m[4] ?? m[5] ?? m[6] ?? "").toLowerCase();
    if (key === "is" && value === "unread") query.unread = true;
    else if (key === "from" || key === "to" || key === "subject") {
      if (value) query[key].push(value);
    } else if (key) query.words.push(`${key}:${value}`);
    else if (value) query.words.push(value);
  }
  return query;
}

export function isEmptyQuery(q) {
  return !q.unread && !q.from.length && !q.to.length && !q.subject.length && !q.words.length;
}

function joinAddresses(value) {
  return Array.isArray(value) ? value.join(", ") : String(value || "");
}

/** Does a folder row match a parsed query? */
export function matchesQuery(msg, q) {
  const from = String(msg.from || "").toLowerCase();
  const to = joinAddresses(msg.to).toLowerCase();
  const subject = String(msg.subject || "").toLowerCase();
  if (q.unread && !msg.unread) return false;
  if (!q.from.every((v) => from.includes(v))) return false;
  if (!q.to.every((v) => to.includes(v))) return false;
  if (!q.subject.every((v) => subject.includes(v))) return false;
  const all = `${from} ${to} ${subject} ${String(msg.preview || "").toLowerCase()}`;
  return q.words.every((w) => all.includes(w));
}

// ---- replies --------------------------------------------------------------

function prefixed(prefix, subject) {
  const s = String(subject || "").trim();
  return new RegExp(`^${prefix}:`, "i").test(s) ? s : `${prefix}: ${s}`.trim();
}

function quote(text) {
  // A message's text ends with a line break (as MIME keeps it): no empty ">" after it.
  return String(text || "").replace(/\s+$/, "")
    .split("\n")
    .map((line) => (line ? `> ${line}` : ">"))
    .join("\n");
}

export function formatDateLong(seconds) {
  if (typeof seconds !== "number") return "";
  return new Date(seconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

/** A short date for a list row: the time today, the day this year, else the date. */
export function formatDateShort(seconds, now = new Date()) {
  if (typeof seconds !== "number") return "";
  const d = new Date(seconds * 1000);
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  if (d.getFullYear() === now.getFullYear()) {
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  }
  return d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function listOf(value) {
  return Array.isArray(value) ? value : splitAddresses(value);
}

function withoutAddresses(list, drop) {
  const seen = new Set(drop.map((a) => bareAddress(a).toLowerCase()));
  const out = [];
  for (const a of list) {
    const key = bareAddress(a).toLowerCase();
    if (key && !seen.has(key)) {
      seen.add(key);
      out.push(a);
    }
  }
  return out;
}

/**
 * A draft answering `msg` (a full message): to its sender, or with `all`
 * to everyone on it too (the other To and Cc), never to `me` itself. A
 * reply to one's own Sent mail goes to its recipients.
 */
export function replyDraft(msg, me, { all = false } = {}) {
  const fromMe = bareAddress(msg.from).toLowerCase() === bareAddress(me).toLowerCase();
  const toList = listOf(msg.to);
  let to = fromMe ? toList : [msg.from];
  let cc = [];
  if (all) {
    if (!fromMe) to = [msg.from, ...toList];
    cc = listOf(msg.cc);
  }
  to = withoutAddresses(to.filter(Boolean), [me]);
  cc = withoutAddresses(cc, [me, ...to]);
  return {
    to: to.join("; "),
    cc: cc.join("; "),
    bcc: "",
    subject: prefixed("Re", msg.subject),
    text: `\n\nOn ${formatDateLong(msg.date)}, ${msg.from} wrote:\n${quote(msg.text)}\n`,
    mode: all ? "reply_all" : "reply",
    in_reply_to: msg.id,
  };
}

/** A draft forwarding `msg` (a full message). */
export function forwardDraft(msg) {
  const lines = [
    "",
    "",
    "---------- Forwarded message ----------",
    `From: ${msg.from}`,
    `Date: ${formatDateLong(msg.date)}`,
    `Subject: ${msg.subject || ""}`,
    `To: ${joinAddresses(msg.to)}`,
  ];
  if (msg.cc && msg.cc.length) lines.push(`Cc: ${joinAddresses(msg.cc)}`);
  return {
    to: "",
    cc: "",
    bcc: "",
    subject: prefixed("Fwd", msg.subject),
    text: `${lines.join("\n")}\n\n${msg.text || ""}`,
    mode: "forward",
    in_reply_to: msg.id,
  };
}

export const DRAFT_FIELDS = ["to", "cc", "bcc", "subject", "text"];
export const EMPTY_DRAFT = Object.freeze({
  to: "", cc: "", bcc: "", subject: "", text: "", mode: "new", in_reply_to: null,
});
export const COMPOSE_TITLES = {
  new: "New message", reply: "Reply", reply_all: "Reply all", forward: "Forward",
};

/** What to ask about before sending: an empty subject, "attached" with nothing attached. */
export function sendWarnings(draft, attachmentCount) {
  const out = [];
  if (!String(draft.subject || "").trim()) out.push("The subject is empty.");
  const own = String(draft.text || "").split("\n").filter((l) => !l.startsWith(">")).join("\n");
  if (!attachmentCount && /\b(attached|attachment|enclosed)\b/i.test(own)) {
    out.push("The message mentions an attachment, but nothing is attached.");
  }
  return out;
}

export function draftIsEmpty(d) {
  return !d || DRAFT_FIELDS.every((k) => !String(d[k] || "").trim());
}

/**
 * Folder rows (newest first) grouped by conversation (`thread`): one row per
 * conversation, the newest message's, with `count`, `unread` (any unread),
 * `unreadCount` and `ids` (its messages, newest first).
 */
export function conversations(rows) {
  const groups = new Map();
  for (const m of rows) {
    const key = m.thread || m.id;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(m);
  }
  return [...groups.values()].map((members) => {
    const unreadCount = members.filter((m) => m.unread).length;
    if (members.length === 1) return members[0];
    return {
      ...members[0], count: members.length, unread: unreadCount > 0, unreadCount,
      ids: members.map((m) => m.id),
    };
  });
}

// ---- the state ------------------------------------------------------------

function newFolder() {
  return { byId: new Map(), next: null, loaded: false, loading: false, error: null };
}

export class MailModel {
  constructor() {
    this.listeners = new Set();
    this.reset();
  }

  reset() {
    this.user = null; // {username, address}
    this.folders = Object.fromEntries(FOLDERS.map((name) => [name, newFolder()]));
    this.counts = null; // {name: {total, unread}} from the server
    this.checked = new Set(); // rows ticked for a bulk action
    this.anchor = null; // the row a Shift+click range starts from
    this.view = "inbox"; // a folder name, "providers" or "settings"
    this.queryText = "";
    this.query = parseQuery("");
    this.selectedId = null;
    this.open = null; // {id, loading, error, message}
    this.showHtml = false;
    this.providers = null;
    this.geolists = null; // {lists, located}
    this.serverContacts = null; // null: not (yet) known from the server
    this.connection = "idle"; // idle | live | lost
    this.fresh = new Set(); // ids that arrived live, highlighted once
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(topic) {
    for (const fn of this.listeners) fn(topic, this);
  }

  setUser(user) {
    this.user = user ? {
      username: user.username, address: user.address, operator: !!user.operator,
      display_name: user.display_name || "", signature: user.signature || "",
      geolists: !!user.geolists, located: !!user.located,
    } : null;
    this.emit("user");
  }

  // -- folders

  get folder() {
    return this.folders[this.view] || null;
  }

  setView(view) {
    this.view = view;
    this.selectedId = null;
    this.checked.clear();
    this.anchor = null;
    this.emit("view");
  }

  setLoading(name, loading, error = null) {
    const f = this.folders[name];
    f.loading = loading;
    f.error = error;
    this.emit("folder");
  }

  /**
   * Merge a page of a folder. `kind` is "first" (the newest page), "more"
   * (the page after the cursor) or "search" (answers to `q=`, which never
   * move the cursor). Refreshing the first page of a folder that is already
   * loaded keeps the cursor: the older pages are still there.
   */
  addPage(name, page, kind = "first") {
    const f = this.folders[name];
    for (const m of page.messages || []) f.byId.set(m.id, { ...f.byId.get(m.id), ...m });
    if (kind === "more" || (kind === "first" && !f.loaded)) f.next = page.next ?? null;
    f.loaded = true;
    f.loading = false;
    f.error = null;
    this.emit("folder");
  }

  /** A message that arrived or changed live (SSE `message`, `moved`, `draft`):
   * it is shown in its folder only, wherever it was before. */
  addLive(summary, { fresh = true } = {}) {
    const name = summary.folder || "inbox";
    let old = null;
    for (const [n, f] of Object.entries(this.folders)) {
      if (f.byId.has(summary.id)) {
        old = f.byId.get(summary.id);
        if (n !== name) f.byId.delete(summary.id);
      }
    }
    const f = this.folders[name];
    if (f && (f.loaded || !old)) {
      f.byId.set(summary.id, { ...old, ...summary });
      if (!old && fresh) this.fresh.add(summary.id);
    }
    this.emit("folder");
  }

  /** Take rows out of every folder (moved away, deleted); returns them. */
  removeRows(ids) {
    const gone = [];
    for (const id of ids) {
      for (const f of Object.values(this.folders)) {
        if (f.byId.has(id)) {
          gone.push(f.byId.get(id));
          f.byId.delete(id);
        }
      }
      this.checked.delete(id);
      if (this.selectedId === id) this.selectedId = null;
    }
    this.emit("folder");
    return gone;
  }

  setCounts(list) {
    this.counts = Object.fromEntries(list.map((f) => [f.name, f]));
    this.emit("counts");
  }

  // -- ticked rows (bulk actions)

  /** Tick or untick a row; with `range`, every row from the last one ticked. */
  check(id, on, { range = false } = {}) {
    const rows = this.visibleMessages().map((m) => m.id);
    let ids = [id];
    if (range && this.anchor && rows.includes(this.anchor)) {
      const [a, b] = [rows.indexOf(this.anchor), rows.indexOf(id)].sort((x, y) => x - y);
      ids = rows.slice(a, b + 1);
    }
    for (const i of ids) {
      if (on) this.checked.add(i);
      else this.checked.delete(i);
    }
    this.anchor = id;
    this.emit("selection");
  }

  checkAll(on) {
    this.checked = new Set(on ? this.visibleMessages().map((m) => m.id) : []);
    this.anchor = null;
    this.emit("selection");
  }

  /** What an action applies to: the ticked rows, else the open or selected one. */
  targets() {
    const rows = this.checked.size ? [...this.checked]
      : [(this.open && this.open.id) || this.selectedId].filter(Boolean);
    return [...new Set(rows.flatMap((id) => this.conversationOf(id)))];
  }

  /** A recipient status change (SSE `status`). */
  applyStatus(update) {
    for (const f of Object.values(this.folders)) {
      const row = f.byId.get(update.id);
      if (row) {
        row.status = update.status ?? row.status;
        if (update.recipients) row.recipients = update.recipients;
      }
    }
    const open = this.open && this.open.message;
    if (open && open.id === update.id) {
      open.status = update.status ?? open.status;
      if (update.recipients) open.recipients = update.recipients;
      if (update.events && update.events.length) {
        open.events = [...(open.events || []), ...update.events];
      }
      this.emit("status");
    }
    this.emit("folder");
  }

  markRead(id, unread = false) {
    for (const f of Object.values(this.folders)) {
      const row = f.byId.get(id);
      if (row) row.unread = unread;
    }
    this.emit("folder");
  }

  /** The current folder's rows, newest first, filtered by the search. */
  visibleMessages() {
    const f = this.folder;
    if (!f) return [];
    let rows = [...f.byId.values()].sort((a, b) => (b.date || 0) - (a.date || 0));
    if (!isEmptyQuery(this.query)) rows = rows.filter((m) => matchesQuery(m, this.query));
    return this.view === "drafts" ? rows : conversations(rows);
  }

  /** The loaded messages of the conversation that row `id` stands for, newest first. */
  conversationOf(id) {
    const row = this.visibleMessages().find((m) => m.id === id);
    return row && row.ids ? row.ids : [id];
  }

  /** Unread in a folder: the server's count, else what is loaded. */
  unreadCount(name = "inbox") {
    if (this.counts && this.counts[name]) return this.counts[name].unread;
    let n = 0;
    for (const m of this.folders[name].byId.values()) if (m.unread) n += 1;
    return n;
  }

  findSummary(id) {
    for (const f of Object.values(this.folders)) if (f.byId.has(id)) return f.byId.get(id);
    return null;
  }

  setQuery(text) {
    this.queryText = text;
    this.query = parseQuery(text);
    this.emit("folder");
  }

  // -- selection and the open message

  select(id) {
    this.selectedId = id;
    this.emit("selection");
  }

  /** Move the selection by `delta` rows; returns the new id (or null). */
  move(delta) {
    const rows = this.visibleMessages();
    if (!rows.length) return null;
    let i = rows.findIndex((m) => m.id === this.selectedId);
    if (i < 0) i = delta > 0 ? -1 : rows.length;
    const j = Math.min(rows.length - 1, Math.max(0, i + delta));
    this.select(rows[j].id);
    return rows[j].id;
  }

  openLoading(id) {
    // The open message opened again (its row clicked, Enter) stays on show
    // while it loads: "Loading…" in its place would take its HTML frame out,
    // and the frame would load its page again.
    if (this.open && this.open.id === id && this.open.message) return;
    this.open = { id, loading: true, error: null, message: null };
    this.showHtml = false;
    this.emit("open");
  }

  /** The open message arrived; `earlier`: the rest of its conversation, oldest first. */
  openLoaded(id, message, earlier = []) {
    if (!this.open || this.open.id !== id) return false;
    const again = !!this.open.message;
    this.open = { id, loading: false, error: null, message, earlier };
    // Loaded again, it keeps the view (HTML or text) its reader chose.
    if (!again) this.showHtml = !message.text && !!message.html;
    this.emit("open");
    return true;
  }

  openFailed(id, error) {
    if (!this.open || this.open.id !== id) return;
    this.open = { id, loading: false, error, message: null };
    this.emit("open");
  }

  close() {
    this.open = null;
    this.showHtml = false;
    this.emit("open");
  }

  toggleHtml() {
    this.showHtml = !this.showHtml;
    this.emit("open");
  }

  // -- side data

  setProviders(list) {
    this.providers = list;
    this.emit("providers");
  }

  setGeolists(data) {
    this.geolists = data;
    this.emit("geolists");
  }

  setContacts(list) {
    this.serverContacts = list;
  }

  /**
   * Addresses to suggest (`a@x`, or `Name <a@x>` where a name is known): the
   * server's, then everyone in the mail loaded here. Not Drafts: what a
   * draft has is as typed, maybe half an address or two run together. Only
   * what is one valid address is suggested.
   */
  contacts() {
    const me = this.user ? this.user.address.toLowerCase() : "";
    const out = new Map(); // bare address, lower-cased → {bare, name}
    const add = (a) => {
      const text = String(a || "").trim();
      if (!text || addressProblem(text)) return;
      const bare = bareAddress(text);
      const key = bare.toLowerCase();
      const name = displayName(text);
      if (key === me || (out.has(key) && (out.get(key).name || !name))) return;
      out.set(key, { bare, name });
    };
    for (const a of this.serverContacts || []) add(a);
    for (const [folder, f] of Object.entries(this.folders)) {
      if (folder === "drafts") continue;
      for (const m of f.byId.values()) {
        add(m.from);
        for (const a of Array.isArray(m.to) ? m.to : splitAddresses(m.to)) add(a);
      }
    }
    return [...out.values()].map(({ bare, name }) => namedAddress(name, bare));
  }

  setConnection(state) {
    if (this.connection === state) return;
    this.connection = state;
    this.emit("connection");
  }
}
