// The compose view: the draft's fields, their errors, attachments, address
// suggestions and the title. It owns #compose; compose.js decides.

import { $, formatSize, h } from "./dom.js";
import { icon } from "./icons.js";
import { COMPOSE_TITLES, DRAFT_FIELDS } from "./mailmodel.js";

// Where compose covers the whole screen (app.css, the phone layout).
const FULL_SCREEN = matchMedia("(max-width: 760px)");
// What may take the focus in compose, when it is shown.
const FOCUSABLE = "button, input, textarea, select, a[href], [tabindex]";

export class ComposeView {
  constructor() {
    this.el = {
      app: $("app"),
      compose: $("compose"),
      form: $("compose-form"),
      title: $("compose-title"),
      status: $("compose-status"),
      saved: $("compose-saved"),
      error: $("compose-error"),
      warning: $("compose-warning"),
      warningText: $("compose-warning-text"),
      sendAnyway: $("send-anyway"),
      send: $("send"),
      minimise: $("compose-minimise"),
      files: $("compose-files"),
      filesList: $("compose-files-list"),
      filesTotal: $("compose-files-total"),
      filesNote: $("compose-files-note"),
    };
    this.fields = Object.fromEntries(DRAFT_FIELDS.map((n) => [n, $(`compose-${n}`)]));
    // An SVG cross: the text glyph needs a font that has it.
    $("compose-close").replaceChildren(icon("close"));
    this.minimised = false;
    this.setMinimised(false);
    FULL_SCREEN.addEventListener("change", () => this.updateModal());
    this.el.compose.addEventListener("keydown", (e) => this.keepTab(e));
  }

  /**
   * Compose covering the screen (a phone) is a modal dialog: what lies under
   * it is inert (no Tab, no screen reader cursor, no tap), and Tab goes round
   * inside it. Beside the list (a laptop) it is not modal.
   */
  updateModal() {
    const modal = this.composeOpen && !this.minimised && FULL_SCREEN.matches;
    for (const el of this.el.app.children) {
      // The toast and the live region keep speaking (and Undo keeps working).
      if (el !== this.el.compose && el.id !== "toast" && el.id !== "live") el.inert = modal;
    }
    if (modal) this.el.compose.setAttribute("aria-modal", "true");
    else this.el.compose.removeAttribute("aria-modal");
  }

  /** Tab from the last control goes to the first, Shift+Tab the other way round. */
  keepTab(event) {
    if (event.key !== "Tab" || !this.el.compose.hasAttribute("aria-modal")) return;
    const items = [...this.el.compose.querySelectorAll(FOCUSABLE)].filter((el) =>
      !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const here = document.activeElement;
    if (event.shiftKey ? here === first || !this.el.compose.contains(here) : here === last) {
      event.preventDefault();
      (event.shiftKey ? last : first).focus();
    }
  }

  setTitle(mode) {
    this.el.title.textContent = COMPOSE_TITLES[mode] || COMPOSE_TITLES.new;
  }

  /** "Saved" / "Saving…" / "Not saved: …" beside Send. */
  setSaved(text) {
    this.el.saved.textContent = text;
  }

  /** Ask before sending: the reasons, and a "Send anyway" button. */
  showWarning(reasons) {
    this.el.warningText.textContent = reasons.join(" ");
    this.el.warning.hidden = !reasons.length;
    if (reasons.length) this.el.sendAnyway.focus();
  }

  /**
   * Compose folded to its title bar (or back): the draft stays as it is,
   * while the message or the pane it covered is read. The one button swaps
   * between Minimise and Restore, and keeps the focus.
   */
  setMinimised(on) {
    this.minimised = on;
    this.el.compose.classList.toggle("minimised", on);
    this.el.app.classList.toggle("compose-minimised", on && this.composeOpen);
    const label = on ? "Restore the draft" : "Minimise";
    this.el.minimise.setAttribute("aria-label", label);
    this.el.minimise.title = label;
    this.el.minimise.replaceChildren(icon(on ? "restore" : "minimise"));
    if (on) for (const name of ["to", "cc", "bcc"]) this.hideSuggestions(name);
    this.updateModal();
  }

  openCompose(focus = "to") {
    this.el.compose.hidden = false;
    this.setMinimised(false);
    this.el.app.classList.add("composing");
    this.updateModal();
    const field = this.fields[focus] || this.fields.to;
    if (focus === "text") this.caretToStart(field);
    else field.focus();
  }

  /**
   * The caret at the start of the message (a reply is written above the
   * quote), and the box scrolled to show it: setting the caret alone leaves
   * the box where filling it put it, at the end of the quote.
   */
  caretToStart(field = this.fields.text) {
    field.setSelectionRange(0, 0);
    field.focus();
    field.scrollTop = 0;
  }

  closeCompose() {
    this.el.compose.hidden = true;
    this.setMinimised(false);
    this.el.app.classList.remove("composing");
    this.updateModal();
    for (const name of ["to", "cc", "bcc"]) this.hideSuggestions(name);
  }

  get composeOpen() {
    return !this.el.compose.hidden;
  }

  readFields() {
    const out = {};
    for (const [name, field] of Object.entries(this.fields)) out[name] = field.value;
    return out;
  }

  fillFields(draft) {
    for (const [name, field] of Object.entries(this.fields)) field.value = draft[name] || "";
    this.showWarning([]);
  }

  /**
   * The draft's attachments: [{key, filename, size, state: "ready"|"fetching"|"failed"}],
   * their `total`, the message's `size` as it goes out against `limit`, and the
   * names of files the draft has that are not in this tab (`missing`).
   */
  renderAttachments(items, { total = 0, size = total, limit = 0, missing = [] } = {}) {
    const list = this.el.filesList;
    list.replaceChildren(...items.map((a) => h("li", { "data-key": a.key },
      h("span", { class: "attach-name" }, a.filename),
      h("span", { class: "muted" }, formatSize(a.size)),
      a.state === "fetching" ? h("span", { class: "muted" }, "fetching…") : null,
      a.state === "failed" ? h("span", { class: "field-error" }, "could not be fetched") : null,
      h("button", {
        type: "button", class: "icon small", "aria-label": `Remove ${a.filename}`,
        title: "Remove", "data-remove": a.key,
      }, icon("close", { size: 14 })))));
    list.hidden = items.length === 0;
    // The files go out in base64, a third larger: the limit is on that.
    const over = limit && size > limit;
    this.el.filesTotal.textContent = items.length
      ? `${items.length} ${items.length === 1 ? "file" : "files"}, ${formatSize(total)}` +
        (over ? ` — about ${formatSize(size)} as sent, over the ${formatSize(limit)} limit` : "")
      : "";
    this.el.filesTotal.classList.toggle("field-error", !!over);
    this.el.filesNote.textContent = missing.length
      ? "Attached files stay only in the browser tab where they were chosen, until it " +
        `reloads or closes — choose again: ${missing.join(", ")}`
      : "";
    this.el.filesNote.hidden = !missing.length;
  }

  /** The control of a field: a draft field's, or the attachments' file picker. */
  control(name) {
    return name === "attachments" ? this.el.files : this.fields[name];
  }

  fieldError(name, message) {
    const field = this.control(name);
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
    for (const name of [...Object.keys(this.fields), "attachments"]) this.fieldError(name, null);
    this.composeError("");
    this.showWarning([]);
  }

  composeError(message) {
    this.el.error.textContent = message || "";
    this.el.error.hidden = !message;
  }

  setSending(sending) {
    this.el.send.disabled = sending;
    this.el.send.textContent = sending ? "Sending…" : "Send";
    this.el.status.textContent = sending ? "Sending…" : "";
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
