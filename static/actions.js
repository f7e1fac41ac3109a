// Actions on messages: move (with Undo), delete for good, mark read or
// unread, discard drafts. They change the page at once and tell the server;
// when the server refuses, the page is put back.

import { FOLDERS, FOLDER_TITLES, homeFolder } from "./mailmodel.js";

export class Actions {
  constructor({ model, view, list, conn, compose, loadCounts }) {
    this.model = model;
    this.view = view;
    this.list = list;
    this.conn = conn;
    this.compose = compose;
    this.loadCounts = loadCounts; // ask the server for the folder counts again
    this.lastUndo = null; // the Undo of the last move, while its toast may still be up
  }

  /** After the open or selected message leaves the list, select the next one. */
  nextAfter(ids) {
    const rows = this.model.visibleMessages().map((m) => m.id);
    const last = Math.max(...ids.map((id) => rows.indexOf(id)));
    return rows.slice(last + 1).find((id) => !ids.includes(id))
      ?? [...rows].reverse().find((id) => !ids.includes(id)) ?? null;
  }

  /**
   * Move messages to a folder, with Undo for a few seconds. `folder` is a
   * folder's name, or a function giving each id's (one request per folder).
   */
  async moveTo(folder, ids = this.model.targets()) {
    if (!ids.length) return false;
    const where = typeof folder === "function" ? folder : () => folder;
    const groups = {};
    for (const id of ids) (groups[where(id)] ||= []).push(id);
    const names = FOLDERS.filter((n) => groups[n]); // in the sidebar's order
    const wasOpen = this.model.open && ids.includes(this.model.open.id);
    const next = this.nextAfter(ids);
    const rows = ids.map((id) => this.model.findSummary(id)).filter(Boolean);
    const back = Object.fromEntries(rows.map((r) => [r.id, r.folder || this.model.view]));
    this.model.removeRows(ids);
    if (wasOpen) this.model.close();
    if (next) {
      this.model.select(next);
      this.list.focusRow(next);
    }
    const what = ids.length === 1 ? "Message" : `${ids.length} messages`;
    const message = names.length > 1 ? `${what} moved back to ${names.map((n) => FOLDER_TITLES[n]).join(" and ")}.`
      : names[0] === "trash" ? `${what} deleted.` : `${what} moved to ${FOLDER_TITLES[names[0]]}.`;
    // One request per folder; a folder whose request fails gets its rows back.
    const requests = names.map((to) => this.conn.bulk(groups[to], { folder: to }).catch((err) => {
      for (const r of rows) if (groups[to].includes(r.id)) this.model.addLive(r, { fresh: false });
      throw err;
    }));
    const moving = Promise.all(requests);
    // Undo is there at once; it waits for the move to land before moving back.
    const undo = async () => {
      if (this.lastUndo === undo) this.lastUndo = null;
      try {
        await moving;
        const homes = {};
        for (const id of ids) (homes[back[id]] ||= []).push(id);
        for (const [to, group] of Object.entries(homes)) await this.conn.bulk(group, { folder: to });
        for (const r of rows) this.model.addLive({ ...r, folder: back[r.id] }, { fresh: false });
        this.view.toast("Undone.");
      } catch (err) {
        this.view.toast(`Could not undo: ${err.message}`, { alert: true });
      }
      this.loadCounts();
    };
    this.offerUndo(message, undo);
    moving.then(this.loadCounts, (err) => {
      if (this.lastUndo === undo) this.lastUndo = null;
      this.view.toast(`Not moved: ${err.message}`, { alert: true });
      this.loadCounts();
    });
    return true;
  }

  /** The toast with Undo (its button, or z) for the last thing done. */
  offerUndo(message, undo) {
    this.lastUndo = undo;
    this.view.toast(message, { undo });
    this.view.announce(`${message} Press z to undo.`);
  }

  async setUnread(ids, unread, { quiet = false } = {}) {
    if (!ids.length) return false;
    for (const id of ids) this.model.markRead(id, unread);
    if (this.model.open && ids.includes(this.model.open.id) && this.model.open.message) {
      this.model.open.message.unread = unread;
    }
    try {
      await this.conn.bulk(ids, { unread });
      if (!quiet) this.view.announce(`Marked ${unread ? "unread" : "read"}.`);
    } catch (err) {
      if (!quiet) this.view.toast(`Not marked: ${err.message}`, { alert: true });
    }
    this.loadCounts();
    return true;
  }

  async deleteForever(ids = this.model.targets()) {
    if (!ids.length) return false;
    const n = ids.length;
    if (!window.confirm(`Delete ${n === 1 ? "this message" : `${n} messages`} for good? This cannot be undone.`)) {
      return true;
    }
    const rows = ids.map((id) => this.model.findSummary(id)).filter(Boolean);
    if (this.model.open && ids.includes(this.model.open.id)) this.model.close();
    this.model.removeRows(ids);
    try {
      await this.conn.bulk(ids, { delete: true });
      this.view.toast(`${n === 1 ? "Message" : `${n} messages`} deleted for good.`);
    } catch (err) {
      for (const r of rows) this.model.addLive(r, { fresh: false });
      this.view.toast(`Not deleted: ${err.message}`, { alert: true });
    }
    this.loadCounts();
    return true;
  }

  /**
   * Discard drafts, with Undo as for a move. The server keeps nothing of a
   * discarded draft, so the page reads each one's fields first and Undo
   * saves them again under the same id (the files of one stay in this tab).
   */
  async discardDrafts(ids = this.model.targets()) {
    if (!ids.length) return false;
    const rows = ids.map((id) => this.model.findSummary(id)).filter(Boolean);
    this.model.removeRows(ids);
    const read = await Promise.all(ids.map((id) => this.conn.message(id).then(
      (m) => (m.draft ? { id, draft: m.draft, files: this.compose.kept.get(id) || [] } : null),
      (err) => ({ id, err }))));
    const failed = read.filter((r) => r && r.err);
    for (const r of rows) if (failed.some((f) => f.id === r.id)) this.model.addLive(r, { fresh: false });
    const kept = read.filter((r) => r && !r.err);
    const deleting = Promise.all(kept.map(async ({ id }) => {
      await this.conn.deleteDraft(id);
      this.compose.goneElsewhere(id);
    }));
    const undo = async () => {
      if (this.lastUndo === undo) this.lastUndo = null;
      try {
        await deleting;
        for (const { id, draft, files } of kept) {
          const body = { ...draft };
          for (const k of ["in_reply_to", "forward_of"]) if (!body[k]) delete body[k];
          const row = await this.conn.saveDraft(id, body);
          if (files.length) this.compose.kept.set(id, files);
          this.model.addLive({ ...row, folder: "drafts" }, { fresh: false });
        }
        this.view.toast("Undone.");
      } catch (err) {
        this.view.toast(`Could not undo: ${err.message}`, { alert: true });
      }
      this.loadCounts();
    };
    if (failed.length) {
      this.view.toast(`Not discarded: ${failed[0].err.message}`, { alert: true });
    } else if (kept.length) {
      this.offerUndo(kept.length === 1 ? "Draft discarded." : `${kept.length} drafts discarded.`,
        undo);
    }
    deleting.then(this.loadCounts, (err) => {
      if (this.lastUndo === undo) this.lastUndo = null;
      for (const r of rows) this.model.addLive(r, { fresh: false }); // the server has them
      this.view.toast(`Not discarded: ${err.message}`, { alert: true });
      this.loadCounts();
    });
    return true;
  }

  /** Discard in compose: the draft goes, with Undo that opens it again. */
  async discardOpen() {
    const gone = this.compose.discard();
    if (!gone) return;
    const undo = async () => {
      if (this.lastUndo === undo) this.lastUndo = null;
      try {
        await gone.gone;
        await this.compose.restore(gone);
        this.view.announce("Undone: the draft is open again.");
      } catch (err) {
        this.view.toast(`Could not undo: ${err.message}`, { alert: true });
      }
      this.loadCounts();
    };
    this.offerUndo("Draft discarded.", undo);
    gone.gone.then(this.loadCounts, (err) => {
      if (this.lastUndo === undo) this.lastUndo = null;
      this.view.toast(`Not discarded: ${err.message}`, { alert: true });
      this.loadCounts();
    });
  }

  /** The Delete key and button: to Trash; in Trash, for good; a draft is discarded. */
  trash() {
    if (this.model.view === "trash") return this.deleteForever();
    if (this.model.view === "drafts") return this.discardDrafts();
    return this.moveTo("trash");
  }

  archive() {
    if (this.model.view === "archive" || this.model.view === "drafts") return false;
    return this.moveTo("archive");
  }

  /** Back from Trash or Archive, each message to its own home (Inbox or Sent). */
  restore() {
    const ids = this.model.targets();
    if (!ids.length) return false;
    const open = this.model.open && this.model.open.message;
    return this.moveTo((id) => homeFolder(this.model.findSummary(id) ||
      (open && open.id === id ? open : {})), ids);
  }

  async markAllRead() {
    const name = this.model.view;
    try {
      const out = await this.conn.markAllRead(name);
      for (const m of this.model.folders[name].byId.values()) m.unread = false;
      this.model.emit("folder");
      this.view.toast(out.marked ? `Marked ${out.marked} read.` : "Nothing was unread.");
    } catch (err) {
      this.view.toast(`Not marked: ${err.message}`, { alert: true });
    }
    this.loadCounts();
  }
}
