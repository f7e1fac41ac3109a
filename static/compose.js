// The compose controller: the draft being written, its attachments, the
// address suggestions, autosave to the server and sending. Every change to
// the draft goes through one path, changed(): it makes a new Idempotency-Key
// necessary and schedules the save.

import { ApiError, NetworkError, randomKey } from "./connection.js";
import { formatSize } from "./dom.js";
import {
  EMPTY_DRAFT,
  bareAddress,
  checkAddressList,
  draftIsEmpty,
  replaceToken,
  sendWarnings,
  suggest,
  tokenAt,
  wireAddressList,
} from "./mailmodel.js";

export const RECIPIENT_FIELDS = ["to", "cc", "bcc"];
// The server's `field` of an error (to, to[2], attachments[0].filename, ...)
// as the form labels it.
const FIELD_LABELS = {
  to: "To", cc: "Cc", bcc: "Bcc", subject: "Subject", text: "Message", attachments: "Attachments",
};

/**
 * The compose field a server error is about ("to" for "to[2]"), or null, and
 * its message naming that field: the server words its reasons to follow a
 * field's name ("is longer than 998 characters"), which alone say nothing.
 */
export function fieldError(err) {
  const field = String((err && err.field) || "").split(/[[.]/)[0];
  const message = String((err && err.message) || "");
  if (!Object.hasOwn(FIELD_LABELS, field)) return { field: null, message };
  const label = FIELD_LABELS[field];
  // "is longer than…", "must be a string", "at most…": the label starts the
  // sentence; anything else ("'x' is not a valid address") follows a colon.
  const joined = /^(is|are|must|has|have|needs|at (most|least)|contains)\b/.test(message)
    ? `${label} ${message}` : `${label}: ${message}`;
  return { field, message: joined };
}

export function openDraftKey(model) {
  return `bitmail:open-draft:${model.user ? model.user.username : ""}`;
}
const SAVE_AFTER_MS = 700;

/** A MIME type the server takes ("type/subtype"), else the generic one. */
function cleanType(type) {
  const t = String(type || "").split(";")[0].trim().toLowerCase();
  return /^[\w.+-]+\/[\w.+-]+$/.test(t) ? t : "application/octet-stream";
}

/** Bytes of `n` bytes in base64, in lines of 76 characters and CRLF (RFC 2045 §6.8). */
function base64Size(n) {
  const chars = Math.ceil(n / 3) * 4;
  return chars + Math.ceil(chars / 76) * 2;
}

// What a message adds around its fields as it goes out: its headers (From,
// Date, Message-ID, MIME), and with each attachment its part's headers and
// boundary (the first also makes the text a part).
const MESSAGE_OVERHEAD = 300;
const PART_OVERHEAD = 350;

/**
 * About how many bytes the message is as the server counts it against
 * max_message_size: as it goes out, attachments in base64 (a third larger
 * than the files), the text in quoted-printable or, with other scripts, in
 * base64, a header in another script as encoded-words. Within a hundred
 * bytes or so of the server's count.
 */
export function messageSize(draft, files) {
  const utf8 = (t) => new TextEncoder().encode(String(t || "")).length;
  const ascii = (t) => /^[\x00-\x7f]*$/.test(String(t || ""));
  const text = String(draft.text || "");
  const textBytes = utf8(text);
  const body = ascii(text) ? textBytes + Math.ceil(textBytes / 76) * 3 : base64Size(textBytes);
  const heads = ["to", "cc", "bcc", "subject"].reduce(
    (n, k) => n + utf8(draft[k]) * (ascii(draft[k]) ? 1 : 2), 0);
  return MESSAGE_OVERHEAD + heads + body + files.reduce((n, f) => n + PART_OVERHEAD +
    utf8(f.filename) * (ascii(f.filename) ? 1 : 3) + base64Size(f.size || 0), 0);
}

/** Before sending: the files a draft names that are not in this tab. */
function missingWarning(names) {
  if (!names.length) return [];
  const one = names.length === 1;
  return [`${names.join(", ")} ${one ? "is" : "are"} not attached: files stay only in the ` +
    `browser tab where they were chosen. Choose ${one ? "it" : "them"} again, or send without.`];
}

/** The file's bytes in base64 (read by the browser, no size-sized strings built here). */
function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      resolve(url.slice(url.indexOf(",") + 1));
    };
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export class Compose {
  constructor({ conn, model, view, cv, maxBytes }) {
    this.known = new Map(); // an address at our domain → whether a user has it
    this.conn = conn;
    this.model = model;
    this.view = view; // toasts and announcements
    this.cv = cv; // the compose view
    this.maxBytes = maxBytes;
    // The files of drafts put aside in this tab (draft id → attachments):
    // a draft on the server keeps only their names.
    this.kept = new Map();
    this.reset();
    this.suggest = { field: null, items: [], active: -1 };
    this.attachSeq = 0;
  }

  reset() {
    this.draftId = null; // the server draft's id, made on first save
    this.mode = "new";
    this.inReplyTo = null;
    this.sendKey = null; // Idempotency-Key of the draft as it is now
    this.attachments = []; // {key, filename, content_type, size, blob, state, pending}
    this.missing = []; // files a saved draft had, to be chosen again (files stay in one page)
    this.sending = false;
    this.saved = true;
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    this.saving = null;
  }

  // ---- the one path for every change ---------------------------------------

  changed({ save = true } = {}) {
    this.sendKey = null; // a changed draft is a new message
    this.saved = false;
    this.cv.showWarning([]);
    if (save) {
      clearTimeout(this.saveTimer);
      this.saveTimer = setTimeout(() => this.save(), SAVE_AFTER_MS);
    }
  }

  /** The draft as the server is sent it (saved or sent): addresses as it splits them. */
  draft() {
    const attachments = [...new Set([...this.attachments.map((a) => a.filename), ...this.missing])];
    const fields = this.cv.readFields();
    for (const name of RECIPIENT_FIELDS) fields[name] = wireAddressList(fields[name]);
    return { ...fields, mode: this.mode, in_reply_to: this.inReplyTo, attachments };
  }

  /** Which server draft is open in this browser, so a reload opens it again. */
  remember() {
    const key = openDraftKey(this.model);
    try {
      if (this.draftId && this.cv.composeOpen) localStorage.setItem(key, this.draftId);
      else localStorage.removeItem(key);
    } catch {
      // Storage refused: a reload shows the draft in Drafts all the same.
    }
  }

  /** Save the draft on the server now (an empty one is removed instead). */
  async save({ keepalive = false } = {}) {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (this.saved || this.sending || !this.model.user) return;
    const draft = this.draft();
    if (draftIsEmpty(draft) && !draft.attachments.length) {
      this.saved = true;
      if (this.draftId) await this.conn.deleteDraft(this.draftId).catch(() => {});
      this.draftId = null;
      this.cv.setSaved("");
      return;
    }
    this.draftId = this.draftId || randomKey();
    const body = { ...draft };
    if (!body.in_reply_to) delete body.in_reply_to;
    this.saved = true;
    this.cv.setSaved("Saving…");
    try {
      this.saving = this.conn.saveDraft(this.draftId, body, { keepalive });
      this.remember();
      await this.saving;
      if (this.saved) this.cv.setSaved("Draft saved");
    } catch (err) {
      this.saved = false;
      if (err instanceof NetworkError) {
        this.cv.setSaved("Not saved (offline) — kept here");
      } else {
        // Marked, not focused: a save happens while the user types elsewhere.
        const named = fieldError(err);
        if (named.field) this.cv.fieldError(named.field, named.message);
        this.cv.setSaved(`Not saved: ${named.message}`);
      }
    } finally {
      this.saving = null;
    }
  }

  // ---- opening and closing ---------------------------------------------------

  /** Put the draft being written aside: its files stay here, under its id. */
  keepFiles() {
    if (this.draftId && this.attachments.length) this.kept.set(this.draftId, this.attachments);
  }

  /** Draft `id`, opened again: the files kept for it that it still names. */
  takeFiles(id, names) {
    const kept = (id && this.kept.get(id)) || [];
    this.kept.delete(id);
    return kept.filter((a) => names.includes(a.filename));
  }

  /** Draft `id` is sent or gone: its files are no longer needed. */
  forgetFiles(id) {
    if (id) this.kept.delete(id);
  }

  /**
   * Open compose. With `draft` ({to, cc, bcc, subject, text, mode,
   * in_reply_to, attachments?}), it takes the place of the one being written
   * (which is saved to Drafts first). `id`: an existing server draft.
   */
  async open(draft = null, { focus = "to", id = null } = {}) {
    if (draft) {
      // What was being written stays in Drafts (saved now); a reply nobody
      // typed into yet is simply dropped.
      await this.save();
      this.keepFiles();
      this.reset();
      this.draftId = id;
      this.mode = draft.mode || "new";
      this.inReplyTo = draft.in_reply_to || null;
      const sig = this.model.user && this.model.user.signature;
      const text = this.mode === "new" && !id && sig && !draft.text ? `\n\n-- \n${sig}` : draft.text;
      this.cv.fillFields({ ...draft, text });
      const names = Array.isArray(draft.attachments) ? draft.attachments : [];
      this.attachments = this.takeFiles(id, names);
      const here = new Set(this.attachments.map((a) => a.filename));
      this.missing = names.filter((n) => !here.has(n));
      this.cv.clearFieldErrors();
      this.cv.setSaved(id ? "Draft saved" : "");
      this.renderAttachments();
    } else if (!this.cv.composeOpen && draftIsEmpty(this.cv.readFields()) &&
               !this.attachments.length && !this.missing.length) {
      this.reset();
      this.cv.fillFields({ ...EMPTY_DRAFT, text: this.signatureText() });
      this.cv.clearFieldErrors();
      this.cv.setSaved("");
      this.renderAttachments();
    }
    this.cv.setTitle(this.mode);
    this.cv.openCompose(focus);
    this.remember();
    return true;
  }

  signatureText() {
    const sig = this.model.user && this.model.user.signature;
    return sig ? `\n\n-- \n${sig}` : "";
  }

  /**
   * Fold compose to its bar, so what it covers can be read (a message
   * opened, Settings): the draft stays open here and is saved now.
   */
  minimise() {
    if (!this.cv.composeOpen || this.cv.minimised) return;
    this.cv.setMinimised(true);
    this.save();
  }

  /** The bar's button: fold compose, or bring it back as it was. */
  toggleMinimised() {
    if (this.cv.minimised) this.cv.setMinimised(false);
    else this.minimise();
  }

  close() {
    this.cv.closeCompose();
    this.remember();
    this.save();
    document.getElementById("compose-button").focus();
  }

  /**
   * Throw the draft being written away. Returns what it was, for Undo:
   * {id, draft, files, gone} (`gone`: the server's delete), or null when
   * there was nothing in it.
   */
  discard() {
    const id = this.draftId;
    const draft = this.draft();
    const files = this.attachments;
    const empty = draftIsEmpty(draft) && !draft.attachments.length;
    clearTimeout(this.saveTimer);
    this.cv.fillFields(EMPTY_DRAFT);
    this.cv.clearFieldErrors();
    this.reset();
    this.forgetFiles(id);
    this.renderAttachments();
    this.cv.closeCompose();
    this.remember();
    this.cv.setSaved("");
    document.getElementById("compose-button").focus();
    const gone = id ? this.conn.deleteDraft(id) : Promise.resolve();
    return empty ? null : { id, draft, files, gone };
  }

  /** A discarded draft back (Undo): on the server under its id, and open here. */
  async restore({ id, draft, files }) {
    const body = { ...draft };
    if (!body.in_reply_to) delete body.in_reply_to;
    if (id) await this.conn.saveDraft(id, body);
    if (id && files.length) this.kept.set(id, files);
    await this.open(draft, { id });
    if (!id) this.changed(); // never saved before: it is now
  }

  /** Logging out: what was typed is on the server (or lost with a dead connection). */
  async leave() {
    await this.save().catch(() => {});
    try {
      localStorage.removeItem(openDraftKey(this.model));
    } catch {
      // nothing stored
    }
    this.clear();
  }

  /** Nobody is logged in: nothing of the draft, nor of any files, stays in the page. */
  clear() {
    this.cv.closeCompose();
    this.cv.fillFields(EMPTY_DRAFT);
    this.cv.clearFieldErrors();
    this.cv.setSaved("");
    this.reset();
    this.kept.clear();
    this.renderAttachments();
  }

  /** Another device sent or removed the draft open here. */
  goneElsewhere(id) {
    this.forgetFiles(id);
    if (id && id === this.draftId && this.saved) {
      this.cv.fillFields(EMPTY_DRAFT);
      this.reset();
      this.renderAttachments();
      this.cv.closeCompose();
      this.view.toast("The draft was sent or removed on another device.");
    }
  }

  // ---- attachments -----------------------------------------------------------

  attachmentBytes() {
    return this.attachments.reduce((n, a) => n + (a.size || 0), 0);
  }

  /** The message's size as the server will count it (about). */
  messageSize() {
    return messageSize(this.cv.readFields(), this.attachments);
  }

  renderAttachments() {
    this.cv.renderAttachments(this.attachments, {
      total: this.attachmentBytes(), size: this.messageSize(), limit: this.maxBytes(),
      missing: this.missing,
    });
  }

  addFiles(files) {
    for (const file of files) {
      this.attachments.push({
        key: ++this.attachSeq, filename: file.name || "attachment",
        content_type: cleanType(file.type), size: file.size, blob: file, state: "ready",
        pending: null,
      });
    }
    const chosen = new Set(files.map((f) => f.name));
    this.missing = this.missing.filter((n) => !chosen.has(n));
    this.cv.composeError("");
    this.cv.fieldError("attachments", null);
    this.renderAttachments();
    this.cv.el.filesList.scrollIntoView({ block: "nearest" });
    this.changed(); // the files stay in this page; the draft keeps their names
    this.view.announce(`Attached ${files.map((f) => f.name).join(", ")}`);
  }

  removeAttachment(key) {
    const i = this.attachments.findIndex((a) => a.key === key);
    if (i < 0) return;
    const [gone] = this.attachments.splice(i, 1);
    this.cv.fieldError("attachments", null);
    this.renderAttachments();
    this.changed();
    const buttons = this.cv.el.filesList.querySelectorAll("[data-remove]");
    (buttons[i] || buttons[i - 1] || this.cv.el.files).focus();
    this.view.announce(`Removed ${gone.filename}`);
  }

  /** A forward carries the message's attachments: fetch their bytes into the draft. */
  forwardAttachments(m) {
    this.attachments = (m.attachments || []).map((a) => {
      const item = {
        key: ++this.attachSeq, filename: a.filename || "attachment",
        content_type: cleanType(a.content_type), size: a.size || 0, blob: null,
        state: "fetching", pending: null,
      };
      item.pending = this.conn.attachment(m.id, a.index).then((blob) => {
        item.blob = blob;
        item.size = blob.size;
        item.state = "ready";
      }, () => {
        item.state = "failed";
      }).finally(() => this.renderAttachments());
      return item;
    });
    this.renderAttachments();
  }

  // ---- checking and sending --------------------------------------------------

  /** Check one recipients field; `typing` leaves the part being written alone. */
  validateRecipients(name, { typing = false } = {}) {
    const { addresses, problems } = checkAddressList(this.cv.fields[name].value, { typing });
    const local = this.localAddresses(addresses);
    for (const a of local) {
      if (this.known.get(a.toLowerCase()) === false) problems.push(`There is no user ${a} here.`);
    }
    this.cv.fieldError(name, problems.length ? problems.join(" · ") : null);
    if (local.some((a) => !this.known.has(a.toLowerCase()))) {
      // Ask the server about names not seen yet, then judge the field again.
      this.checkLocal(local).then((asked) => {
        if (asked) this.validateRecipients(name, { typing });
      }, () => {});
    }
    return problems.length === 0;
  }

  /** The addresses at this service's own domain. */
  localAddresses(addresses) {
    const domain = this.model.user ? this.model.user.address.split("@")[1].toLowerCase() : "";
    return addresses.map(bareAddress).filter((a) => a.toLowerCase().endsWith(`@${domain}`));
  }

  /** Learn which of these local addresses name a user; true when it asked. */
  async checkLocal(addresses) {
    const ask = [...new Set(addresses.map((a) => a.toLowerCase()))]
      .filter((a) => !this.known.has(a)).slice(0, 20);
    if (!ask.length) return false;
    const { unknown } = await this.conn.checkRecipients(ask);
    const missing = new Set(unknown.map((a) => a.toLowerCase()));
    for (const a of ask) this.known.set(a, !missing.has(a));
    return true;
  }

  async send({ force = false } = {}) {
    if (this.sending) return;
    this.hideAllSuggestions();
    const cv = this.cv;
    cv.composeError("");
    const typed = RECIPIENT_FIELDS.flatMap((n) => checkAddressList(cv.fields[n].value).addresses);
    await this.checkLocal(this.localAddresses(typed)).catch(() => {}); // the server judges anyway
    let ok = true;
    for (const name of RECIPIENT_FIELDS) ok = this.validateRecipients(name) && ok;
    const draft = this.draft();
    const counts = RECIPIENT_FIELDS.map((n) => checkAddressList(draft[n]).addresses.length);
    if (ok && counts.every((n) => n === 0)) {
      cv.fieldError("to", "Add at least one recipient.");
      ok = false;
    }
    if (!ok) {
      const bad = RECIPIENT_FIELDS.find((n) => cv.fields[n].getAttribute("aria-invalid"));
      cv.fields[bad || "to"].focus();
      return;
    }
    const size = messageSize(draft, this.attachments);
    if (size > this.maxBytes()) {
      // The files go out in base64, a third larger than they are.
      cv.composeError(`Not sent: with its attachments the message is about ${formatSize(size)} ` +
        `as it goes out, over the ${formatSize(this.maxBytes())} limit. Remove some files.`);
      this.renderAttachments();
      cv.el.files.focus();
      return;
    }
    const warnings = force ? [] : [
      ...missingWarning(this.missing), ...sendWarnings(draft, this.attachments.length)];
    if (warnings.length) {
      cv.showWarning(warnings);
      return;
    }
    cv.showWarning([]);
    if (this.saving) await this.saving.catch(() => {});
    this.sending = true;
    cv.setSending(true);
    const files = this.attachments.slice();
    await Promise.all(files.map((a) => a.pending));
    const failed = files.filter((a) => a.state !== "ready");
    if (failed.length) {
      this.sending = false;
      cv.setSending(false);
      cv.composeError(`Not sent: ${failed.map((a) => a.filename).join(", ")} could not be ` +
        "fetched from the original message. Remove it to send without it.");
      return;
    }
    this.sendKey = this.sendKey || randomKey();
    const payload = { to: draft.to, cc: draft.cc, bcc: draft.bcc, subject: draft.subject,
      text: draft.text };
    if (this.inReplyTo) payload.in_reply_to = this.inReplyTo;
    if (this.draftId) payload.draft = this.draftId; // the server removes it once sent
    try {
      if (files.length) {
        payload.attachments = await Promise.all(files.map(async (a) => ({
          filename: a.filename, content_type: a.content_type, content: await base64Of(a.blob),
        })));
      }
      await this.conn.send(payload, this.sendKey);
      this.forgetFiles(this.draftId);
      this.sending = false;
      cv.setSending(false);
      cv.fillFields(EMPTY_DRAFT);
      cv.clearFieldErrors();
      this.reset();
      this.renderAttachments();
      cv.closeCompose();
      this.remember();
      cv.setSaved("");
      this.view.toast("Message sent.");
      this.view.announce("Message sent.");
      document.getElementById("compose-button").focus();
    } catch (err) {
      this.sending = false;
      cv.setSending(false);
      this.sendFailed(err);
      if (!this.saved) this.save(); // not sent: keep it as a draft
    }
  }

  sendFailed(err) {
    const cv = this.cv;
    if (err instanceof NetworkError) {
      cv.composeError("Not sent: BitMail cannot be reached. Your draft is kept — try again when the connection is back.");
    } else if (!(err instanceof ApiError)) {
      cv.composeError(`Not sent: a file could not be read (${err.message || err}).`);
    } else if (err.status === 413) {
      cv.composeError(`Not sent: the message is too large for the server (${err.message}). ` +
        "Remove some files.");
    } else {
      const named = fieldError(err);
      cv.composeError(`Not sent: ${named.message}`);
      if (named.field) {
        cv.fieldError(named.field, named.message);
        cv.control(named.field).focus();
      }
    }
  }

  onInput(event) {
    const name = event.target.name;
    if (RECIPIENT_FIELDS.includes(name)) {
      this.validateRecipients(name, { typing: true });
      this.updateSuggestions(name);
    } else if (name && this.cv.fields[name]) {
      this.cv.fieldError(name, null);
    }
    this.changed();
  }

  // ---- address suggestions -----------------------------------------------------

  updateSuggestions(name) {
    const field = this.cv.fields[name];
    const caret = field.selectionStart ?? field.value.length;
    const { text } = tokenAt(field.value, caret);
    const others = checkAddressList(field.value).addresses;
    const items = suggest(this.model.contacts(), text, others);
    this.suggest = { field: name, items, active: items.length ? 0 : -1 };
    this.cv.showSuggestions(name, items, this.suggest.active);
  }

  hideAllSuggestions() {
    for (const name of RECIPIENT_FIELDS) this.cv.hideSuggestions(name);
    this.suggest = { field: null, items: [], active: -1 };
  }

  pick(name, address) {
    const field = this.cv.fields[name];
    const caret = field.selectionStart ?? field.value.length;
    const next = replaceToken(field.value, caret, address);
    field.value = next.value;
    field.setSelectionRange(next.caret, next.caret);
    this.hideAllSuggestions();
    this.validateRecipients(name, { typing: true });
    this.changed();
  }

  /**
   * A list pasted into a recipients field, one address a line or a tab
   * apart (a spreadsheet's column or row): a one-line field would join the
   * lines with spaces, so the paste is put in with `; ` between addresses
   * (and after them, at the end of the field, so all are judged at once).
   */
  onPaste(event) {
    const pasted = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
    if (!/[\r\n\t]/.test(pasted.trim())) return; // one address, or part of one: as it is
    event.preventDefault();
    const field = event.target;
    const start = field.selectionStart ?? field.value.length;
    const end = field.selectionEnd ?? start;
    const head = field.value.slice(0, start);
    const tail = field.value.slice(end);
    const before = head.trim() && !/[;,]\s*$/.test(head) ? "; " : "";
    const after = tail.trim() ? (/^\s*[;,]/.test(tail) ? "" : "; ") : "; ";
    field.setRangeText(`${before}${wireAddressList(pasted.trim())}${after}`, start, end, "end");
    // The form's input listener: judge the field, offer nothing, save.
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  /** Add addresses to To (a GeoList) and open compose at the subject. */
  addTo(text) {
    this.cv.fields.to.value = text;
    this.validateRecipients("to");
    this.changed();
  }

  onRecipientKeydown(event) {
    const name = event.target.name;
    const s = this.suggest;
    const open = s.field === name && s.items.length > 0;
    if (!open) {
      if (event.key === "ArrowDown" && !event.altKey) {
        this.updateSuggestions(name);
        if (this.suggest.items.length) event.preventDefault();
      }
      return;
    }
    const n = s.items.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      s.active = (s.active + (event.key === "ArrowDown" ? 1 : -1) + n) % n;
      this.cv.showSuggestions(name, s.items, s.active);
    } else if ((event.key === "Enter" || event.key === "Tab") && s.active >= 0) {
      if (event.key === "Tab" && event.shiftKey) return;
      event.preventDefault();
      this.pick(name, s.items[s.active]);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.hideAllSuggestions();
    }
  }

  /** Enter in compose: Ctrl/⌘+Enter sends; in Subject it goes on to the message. */
  onEnter(event) {
    if (event.key !== "Enter" || event.isComposing || event.defaultPrevented) return;
    if (event.ctrlKey || event.metaKey) {
      event.preventDefault();
      this.send();
      return;
    }
    const target = event.target;
    if (!(target instanceof HTMLInputElement) || target.type === "file") return;
    event.preventDefault(); // a suggestion picked with Enter was handled before
    if (target === this.cv.fields.subject) this.cv.caretToStart();
  }

  /** Wire the compose form's own events. */
  bind() {
    const cv = this.cv;
    document.getElementById("compose-close").addEventListener("click", () => this.close());
    cv.el.minimise.addEventListener("click", () => this.toggleMinimised());
    // Only the Send button and Ctrl/⌘+Enter send: Enter in a one-line field
    // (To, Subject) must never send a half-written message. The form has no
    // submit button, so the browser never submits it on Enter either.
    cv.el.send.addEventListener("click", () => this.send());
    cv.el.form.addEventListener("submit", (e) => e.preventDefault());
    cv.el.form.addEventListener("keydown", (e) => this.onEnter(e));
    cv.el.sendAnyway.addEventListener("click", () => this.send({ force: true }));
    cv.el.form.addEventListener("input", (e) => {
      if (e.target !== cv.el.files) this.onInput(e);
    });
    cv.el.files.addEventListener("change", () => {
      const files = [...(cv.el.files.files || [])];
      cv.el.files.value = ""; // so the same file can be chosen again after a remove
      if (files.length) this.addFiles(files);
    });
    cv.el.filesList.addEventListener("click", (e) => {
      const button = e.target.closest("[data-remove]");
      if (button) this.removeAttachment(Number(button.dataset.remove));
    });
    for (const name of RECIPIENT_FIELDS) {
      const field = cv.fields[name];
      field.addEventListener("keydown", (e) => this.onRecipientKeydown(e));
      field.addEventListener("paste", (e) => this.onPaste(e));
      field.addEventListener("blur", () => {
        // Let a click on a suggestion land before the list goes away.
        setTimeout(() => {
          if (document.activeElement !== field) cv.hideSuggestions(name);
        }, 150);
        this.validateRecipients(name);
      });
      const box = document.getElementById(`compose-${name}-suggestions`);
      box.addEventListener("mousedown", (e) => e.preventDefault());
      box.addEventListener("click", (e) => {
        const li = e.target.closest("li[data-address]");
        if (li) {
          this.pick(name, li.dataset.address);
          field.focus();
        }
      });
    }
    addEventListener("pagehide", () => this.save({ keepalive: true }));
  }
}
