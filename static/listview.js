// The folder list: one row per message (or per conversation), each with a
// box to tick for bulk actions, the bar of those actions, and the folder
// buttons' counts. It owns #list-pane and the sidebar's counts.

import { icon } from "./icons.js";
import {
  BAD_STATUSES,
  FOLDER_TITLES,
  FOLDERS,
  STATUS_LABELS,
  formatDateLong,
  formatDateShort,
  isEmptyQuery,
  statusCounts,
} from "./mailmodel.js";
import { h } from "./dom.js";

const $ = (id) => document.getElementById(id);

const EMPTY = {
  inbox: "Your Inbox is empty.",
  sent: "Nothing sent yet.",
  archive: "Nothing archived. Archive a message with e to keep it out of the Inbox.",
  trash: "Trash is empty. Deleted mail stays here for 30 days.",
  drafts: "No drafts. What you write is saved here as you type.",
};

function listText(value) {
  return Array.isArray(value) ? value.join(", ") : String(value || "");
}

// A row names at most this many recipients, each with its status; a longer
// list is summed up (the first two, "+N more", how many are in each status),
// so a message to 150 people is one row high like any other.
const ROW_RECIPIENTS = 3;

/** "a, b +149 more" for a long list, else the whole list. */
function shortList(value) {
  const all = Array.isArray(value) ? value : value ? [String(value)] : [];
  if (all.length <= ROW_RECIPIENTS) return all.join(", ");
  return `${all.slice(0, ROW_RECIPIENTS - 1).join(", ")} +${all.length - ROW_RECIPIENTS + 1} more`;
}

/** A chip per status with how many are in it: "148 Sent", "3 Failed". */
export function statusSummary(recipients) {
  return statusCounts(recipients).map(([status, n]) =>
    statusChip(status, `${n} ${STATUS_LABELS[status] || status}`));
}

export function statusChip(status, label = null) {
  const known = Object.hasOwn(STATUS_LABELS, status);
  const cls = `chip status-${known ? status : "unknown"}${BAD_STATUSES.has(status) ? " bad" : ""}`;
  return h("span", { class: cls }, label ?? (known ? STATUS_LABELS[status] : String(status || "")));
}

export class ListView {
  constructor() {
    this.el = {
      pane: $("list-pane"),
      title: $("list-title"),
      info: $("list-info"),
      list: $("message-list"),
      empty: $("list-empty"),
      loadMore: $("load-more"),
      status: $("list-status"),
      bar: $("bulk-bar"),
      all: $("check-all"),
      checkedInfo: $("checked-info"),
      folders: [...document.querySelectorAll(".folder[data-view]")],
    };
    this.rows = new Map(); // id → {li, sig}
  }

  /** A new folder is shown: start from an empty list. */
  reset(model) {
    this.rows.clear();
    this.el.list.replaceChildren();
    this.el.title.textContent = FOLDER_TITLES[model.view] || model.view;
    for (const button of this.el.folders) {
      if (button.dataset.view === model.view) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
    this.renderCounts(model);
  }

  /** Counts beside the folder names, and the window title: the server's numbers. */
  renderCounts(model) {
    for (const name of FOLDERS) {
      const box = $(`${name}-count`);
      if (!box) continue;
      const c = model.counts && model.counts[name];
      // Unread for mail that arrives; how many there are for Drafts.
      const n = name === "drafts" ? (c ? c.total : 0) : model.unreadCount(name);
      box.replaceChildren();
      if (n) {
        box.append(String(n), h("span", { class: "visually-hidden" },
          name === "drafts" ? " drafts" : " unread"));
      }
    }
    const unread = model.unreadCount("inbox");
    const where = FOLDER_TITLES[model.view] || "";
    document.title = `${unread ? `(${unread}) ` : ""}${where} — BitMail`;
  }

  rowSignature(m, folder) {
    const rec = (m.recipients || []).map((r) => `${r.address}:${r.status}`).join(",");
    return [m.from, listText(m.to), m.subject, m.preview, m.date, m.status, m.unread, rec,
      m.has_attachments, folder, m.count, m.thread_unread].join("|");
  }

  /** Selection changes only attributes: the row a click is landing on must stay. */
  mark(li, { selected, tabStop, checked }) {
    const button = li.querySelector(".row");
    const box = li.querySelector("input[type=checkbox]");
    li.classList.toggle("selected", selected);
    li.classList.toggle("checked", checked);
    button.tabIndex = tabStop ? 0 : -1;
    if (selected) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    if (box.checked !== checked) box.checked = checked;
  }

  buildRow(m, folder, fresh) {
    const toSide = folder === "sent" || folder === "drafts" || Array.isArray(m.recipients);
    const who = toSide ? `To: ${shortList(m.to) || "(no recipients)"}` : m.from || "";
    const subject = m.subject || "(no subject)";
    const parts = [];
    if (m.unread) parts.push(h("span", { class: "visually-hidden" }, "Unread, "));
    parts.push(
      h("span", { class: "row-top" },
        m.unread ? h("span", { class: "dot", "aria-hidden": "true" }) : null,
        h("span", { class: "who" }, who),
        m.count > 1 ? h("span", { class: "thread-count", title: `${m.count} messages` },
          String(m.count), h("span", { class: "visually-hidden" }, " messages")) : null,
        m.has_attachments ? h("span", { class: "clip", title: "Has attachments" }, icon("clip", { size: 14 }),
          h("span", { class: "visually-hidden" }, "Has attachments")) : null,
        h("time", {
          class: "when",
          datetime: typeof m.date === "number" ? new Date(m.date * 1000).toISOString() : null,
          title: formatDateLong(m.date),
        }, formatDateShort(m.date))),
      // Subject and preview each in their own direction (dir=auto isolates
      // them): an Arabic subject reads right to left inside an English list.
      h("span", { class: "row-subject" }, h("span", { dir: "auto" }, subject),
        m.preview ? h("span", { class: "preview" }, " — ", h("span", { dir: "auto" }, m.preview))
          : null),
    );
    if (folder === "sent" || (folder !== "drafts" && Array.isArray(m.recipients))) {
      const statuses = h("span", { class: "row-status" });
      if (m.recipients && m.recipients.length > ROW_RECIPIENTS) {
        statuses.append(...statusSummary(m.recipients));
      } else if (m.recipients && m.recipients.length) {
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
    const box = h("input", {
      type: "checkbox", class: "tick", "data-id": m.id, tabindex: "-1",
      "aria-label": `Select “${subject}”`,
    });
    return h("li", { "data-id": m.id }, h("label", { class: "tick-box" }, box), button);
  }

  render(model) {
    const folderName = model.view;
    const f = model.folder;
    if (!f) return;
    const rows = model.visibleMessages();
    const focused = document.activeElement?.closest?.("#message-list li")?.dataset.id ?? null;
    const focusedBox = document.activeElement?.matches?.("#message-list .tick") ?? false;
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
      this.mark(entry.li, {
        selected: m.id === selectedId, tabStop: m.id === tabStopId,
        checked: model.checked.has(m.id),
      });
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
    if (focused && this.rows.has(focused)) {
      const li = this.rows.get(focused).li;
      const target = focusedBox ? li.querySelector(".tick") : li.querySelector(".row");
      if (document.activeElement !== target) target.focus({ preventScroll: true });
    }
    const searching = !isEmptyQuery(model.query);
    this.el.empty.hidden = !(f.loaded && rows.length === 0);
    this.el.empty.textContent = searching ? "Nothing loaded matches this search."
      : EMPTY[folderName] || "Nothing here.";
    this.el.loadMore.hidden = !f.next;
    this.el.loadMore.disabled = f.loading;
    this.el.loadMore.textContent = f.loading && f.loaded ? "Loading…" : "Load more";
    let status = "";
    if (f.loading && !f.loaded) status = "Loading…";
    else if (f.error) status = f.error;
    this.el.status.textContent = status;
    const c = model.counts && model.counts[folderName];
    this.el.info.textContent = searching && f.loaded
      ? `${rows.length} found${f.next ? " in what is loaded" : ""}`
      : c ? `${c.total} ${c.total === 1 ? "message" : "messages"}` : "";
    this.renderBar(model, rows);
    this.renderCounts(model);
  }

  /** The bulk bar: which actions fit this folder, and how many rows are ticked. */
  renderBar(model, rows = model.visibleMessages()) {
    const n = model.checked.size;
    const view = model.view;
    this.el.bar.dataset.folder = view;
    this.el.all.checked = n > 0 && n === rows.length;
    this.el.all.indeterminate = n > 0 && n < rows.length;
    this.el.all.disabled = rows.length === 0;
    this.el.checkedInfo.textContent = n ? `${n} selected` : "";
    for (const button of this.el.bar.querySelectorAll("[data-action]")) {
      const action = button.dataset.action;
      const fits = {
        archive: view !== "archive" && view !== "drafts",
        trash: view !== "trash" && view !== "drafts",
        restore: view === "trash" || view === "archive",
        forever: view === "trash",
        discard: view === "drafts", // drafts are discarded (with Undo), not put in Trash
        read: view !== "drafts",
        unread: view !== "drafts",
      }[action];
      button.hidden = !fits;
      button.disabled = n === 0;
    }
  }

  focusRow(id) {
    const entry = this.rows.get(id);
    if (!entry) return;
    const button = entry.li.querySelector(".row");
    button.focus();
    button.scrollIntoView({ block: "nearest" });
  }
}
