// The controller: wires the page's parts together. The model (mailmodel.js)
// holds what the page knows; views draw it (view.js, listview.js,
// composeview.js); compose.js owns the draft, actions.js moving and marking
// messages, settings.js the settings pane, keyboard.js the shortcuts;
// connection.js talks to the server.

import { Actions } from "./actions.js";
import { Compose, openDraftKey } from "./compose.js";
import { ComposeView } from "./composeview.js";
import { ApiError, Connection, NetworkError } from "./connection.js";
import { bindKeyboard } from "./keyboard.js";
import { ListView } from "./listview.js";
import { currentLocation } from "./location.js";
import {
  FOLDERS,
  MailModel,
  appendAddresses,
  forwardDraft,
  replyDraft,
} from "./mailmodel.js";
import { Settings, notificationsOn } from "./settings.js";
import { View } from "./view.js";

const PROVIDERS_POLL_MS = 5000;
const GEOLISTS_REFRESH_MS = 60000;
const COUNTS_AFTER_MS = 250;
// The server's max_message_size (text and attachments together), as /api/me
// and the login answer give it; the default until then.
let maxMessageBytes = 25 * 1024 * 1024;

const model = new MailModel();
const view = new View();
const list = new ListView();
const cv = new ComposeView();
const conn = new Connection({
  onEvent: handleEvent,
  onState: handleConnectionState,
  // A logout in another tab or on another device, or the session expired.
  onUnauthorized: () => sessionEnded("You were signed out. Log in again to go on."),
});
const compose = new Compose({ conn, model, view, cv, maxBytes: () => maxMessageBytes });
const actions = new Actions({ model, view, list, conn, compose, loadCounts });
const settings = new Settings({
  conn, model, view,
  onProfile: (me) => {
    model.setUser({ ...model.user, ...me });
    loadGeolists();
  },
});

let providersTimer = null;
let geoTimer = null;
let searchTimer = null;
let countsTimer = null;

// ---- model → views -------------------------------------------------------------

model.subscribe((topic) => {
  switch (topic) {
    case "user":
      view.renderUser(model.user);
      break;
    case "view":
      view.renderView(model);
      list.reset(model);
      list.render(model);
      break;
    case "folder":
    case "selection":
      list.render(model);
      break;
    case "counts":
      list.renderCounts(model);
      list.render(model);
      break;
    case "open":
      view.renderReader(model, (id, i) => conn.attachmentUrl(id, i));
      list.render(model);
      break;
    case "status":
      view.renderStatus(model);
      break;
    case "providers":
      view.renderProviders(model);
      break;
    case "geolists":
      view.renderGeolists(model);
      break;
    case "connection":
      view.banner(model.connection);
      break;
    default:
      break;
  }
});

// ---- session -------------------------------------------------------------------

async function boot() {
  bindEvents();
  try {
    view.el.loginShareLocation.checked = localStorage.getItem("bitmail.geolists") === "1";
  } catch {
    // no storage: unticked
  }
  try {
    const me = await conn.me();
    conn.csrf = me.csrf_token || null;
    await enterApp(me);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) view.showLogin();
    else if (err instanceof NetworkError) view.showLogin("BitMail cannot be reached right now.");
    else view.showLogin(err.message);
  }
}

// The name the page asked "Create it?" about; the Create button makes this
// one, whatever the field says by then.
let nameToCreate = null;

function login(event) {
  event.preventDefault();
  return logIn(view.el.loginUser.value.trim());
}

/** The question's answer: make the account asked about, with the password typed. */
function createAccount() {
  if (nameToCreate) return logIn(nameToCreate, { create: true });
}

/** Back from the question to the username, to correct it. */
function changeUsername() {
  nameToCreate = null;
  view.hideCreateQuestion();
  view.el.loginUser.focus();
  view.el.loginUser.select();
}

/** The name as the server reads it: `Bob@ourdomain` is bob (another domain is
 * refused before any account is looked up). */
function accountName(typed) {
  const at = typed.lastIndexOf("@");
  return (at < 0 ? typed : typed.slice(0, at)).trim().toLowerCase();
}

async function logIn(username, { create = false } = {}) {
  const password = view.el.loginPass.value;
  if (!username) {
    view.loginError("Enter a username.", "username");
    view.el.loginUser.focus();
    return;
  }
  if (!password) {
    view.loginError("Enter a password.", "password");
    view.el.loginPass.focus();
    return;
  }
  view.loginError("");
  view.setLoginBusy(true);
  // GeoLists are opt-in: the browser is asked only when the box is ticked.
  const share = view.el.loginShareLocation?.checked;
  try {
    localStorage.setItem("bitmail.geolists", share ? "1" : "");
  } catch {
    // storage refused (private mode): the box just starts unticked next time
  }
  const location = share ? await currentLocation() : null;
  try {
    const me = await conn.login(username, password, location, { create });
    nameToCreate = null;
    view.hideCreateQuestion();
    await enterApp(me);
    if (me.created) view.toast(`Welcome! Your address is ${me.address}`);
  } catch (err) {
    view.setLoginBusy(false);
    if (err instanceof ApiError && err.code === "no_such_account") {
      // Nothing was made: ask, rather than turn a typo into an account.
      nameToCreate = username;
      view.askToCreate(accountName(username));
      return;
    }
    // A password the sign-up refuses (too short, say): the question stays,
    // to be answered again with a better one.
    if (!(create && err.field === "password")) {
      nameToCreate = null;
      view.hideCreateQuestion();
    }
    if (err instanceof NetworkError) view.loginError("BitMail cannot be reached right now.");
    else view.loginError(err.message, err.field);
    (err.field === "username" ? view.el.loginUser : view.el.loginPass).focus();
  }
}

async function enterApp(me) {
  if (Number.isFinite(me.max_message_size)) maxMessageBytes = me.max_message_size;
  model.reset();
  model.setUser(me);
  view.showApp();
  cv.setSending(false);
  model.setView("inbox");
  view.renderReader(model, () => "");
  view.renderGeolists(model);
  conn.startEvents();
  reopenDraft();
  loadFolder("inbox");
  loadCounts();
  loadContacts();
  loadGeolists();
  clearInterval(geoTimer);
  geoTimer = setInterval(loadGeolists, GEOLISTS_REFRESH_MS);
  // Focus leaves the (now hidden) login form for the page, where the
  // single-key shortcuts work.
  if (!cv.composeOpen) document.activeElement?.blur?.();
}

async function logout() {
  await compose.leave();
  try {
    await conn.logout();
  } catch {
    // Logged out locally all the same; the cookie dies with the session.
  }
  leaveApp();
  view.showLogin();
}

function sessionEnded(message) {
  leaveApp();
  view.showLogin(message);
}

/** Nobody is logged in now: nothing of the last user stays in the page for the next. */
function leaveApp() {
  conn.stopEvents();
  clearInterval(geoTimer);
  clearTimeout(searchTimer);
  stopProvidersPolling();
  compose.clear();
  view.el.search.value = "";
  model.reset();
  view.hideToast();
  view.banner("idle");
}

// ---- folders ---------------------------------------------------------------------

async function loadFolder(name, { more = false } = {}) {
  const f = model.folders[name];
  if (f.loading) return;
  model.setLoading(name, true);
  try {
    const page = await conn.folder(name, { before: more ? f.next : null });
    model.addPage(name, page, more ? "more" : "first");
  } catch (err) {
    model.setLoading(name, false, err instanceof NetworkError
      ? "Could not load — will retry when the connection is back."
      : `Could not load: ${err.message}`);
  }
}

/** The folder counts, from the server (soon after a change, not on every one). */
function loadCounts() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(async () => {
    try {
      model.setCounts(await conn.folders());
    } catch {
      // Keep the last numbers; the next change asks again.
    }
  }, COUNTS_AFTER_MS);
}

function showView(name) {
  if (name === model.view) {
    if (FOLDERS.includes(name)) loadFolder(name);
    return;
  }
  model.close();
  // Settings and Providers take the reading pane's place too: compose folds.
  if (!FOLDERS.includes(name)) compose.minimise();
  model.setView(name);
  stopProvidersPolling();
  if (name === "providers") {
    startProvidersPolling();
  } else if (name === "settings") {
    settings.show();
  } else {
    loadFolder(name);
    if (model.queryText) searchServer();
  }
}

function startProvidersPolling() {
  view.renderProviders(model);
  loadProviders();
  clearInterval(providersTimer);
  providersTimer = setInterval(loadProviders, PROVIDERS_POLL_MS);
}

function stopProvidersPolling() {
  clearInterval(providersTimer);
  providersTimer = null;
}

async function loadProviders() {
  try {
    const body = await conn.providers();
    model.setProviders(body.providers);
  } catch (err) {
    if (!(err instanceof NetworkError)) view.el.providersNote.textContent = err.message;
  }
}

async function loadContacts() {
  try {
    const body = await conn.contacts();
    model.setContacts(body.contacts);
  } catch {
    // Addresses seen in the loaded folders still help.
  }
}

async function loadGeolists() {
  try {
    const body = await conn.geolists();
    model.setGeolists({ lists: body.lists, located: body.located });
  } catch {
    // Keep what is shown.
  }
}

// Search: filter what is loaded at once; also ask the server (q=), whose
// answers are merged in as they come.
function onSearchInput() {
  model.setQuery(view.el.search.value);
  clearTimeout(searchTimer);
  searchTimer = setTimeout(searchServer, 300);
}

async function searchServer() {
  const q = model.queryText.trim();
  const name = model.view;
  if (!q || !FOLDERS.includes(name)) return;
  try {
    const page = await conn.folder(name, { q });
    if (model.queryText.trim() === q) model.addPage(name, page, "search");
  } catch {
    // The local filter still answers.
  }
}

// ---- reading -----------------------------------------------------------------------

async function openMessage(id) {
  if (!id) return;
  if (model.view === "drafts") {
    editDraft(id);
    return;
  }
  // On a laptop compose sits where the message shows: it folds to its bar
  // (the draft kept and saved) rather than hide what was asked for.
  compose.minimise();
  model.select(id);
  model.openLoading(id);
  // A conversation opens whole: its earlier messages above the newest.
  const ids = model.conversationOf(id);
  const unread = ids.filter((i) => model.findSummary(i)?.unread);
  try {
    const [message, ...earlier] = await Promise.all(ids.map((i) => conn.message(i)));
    if (!model.openLoaded(id, message, earlier.reverse())) return;
    view.focusReader();
    if (unread.length || message.unread) actions.setUnread(unread.length ? unread : [id], false, { quiet: true });
  } catch (err) {
    model.openFailed(id, err instanceof NetworkError
      ? "Could not load this message — the connection is down."
      : `Could not open this message: ${err.message}`);
  }
}

/** The draft that was open in this browser before a reload, open again. */
function reopenDraft() {
  let id = null;
  try {
    id = localStorage.getItem(openDraftKey(model));
  } catch {
    return;
  }
  if (id) editDraft(id, { quiet: true });
}

/** Open a server draft (from any device) in compose. */
async function editDraft(id, { quiet = false } = {}) {
  try {
    const m = await conn.message(id);
    if (!m.draft) return;
    model.close();
    compose.open({ ...m.draft, mode: m.draft.mode || "new" }, { id, focus: "to" });
  } catch (err) {
    if (quiet) localStorage.removeItem(openDraftKey(model)); // sent or removed meanwhile
    else view.toast(`Could not open the draft: ${err.message}`, { alert: true });
  }
}

function closeMessage() {
  const id = model.open && model.open.id;
  model.close();
  if (id) list.focusRow(id);
}

function move(delta) {
  if (!FOLDERS.includes(model.view)) return false;
  const id = model.move(delta);
  if (!id) return false;
  list.focusRow(id);
  if (model.open) openMessage(id);
  return true;
}

/** Do `fn` with the open message; one with HTML only is quoted from the server's text form of it. */
function openMessageOr(fn) {
  const m = model.open && model.open.message;
  if (!m || m.folder === "drafts") return false;
  fn(m.text || !m.html_text ? m : { ...m, text: m.html_text });
  return true;
}

const reply = () => openMessageOr((m) => compose.open(replyDraft(m, model.user.address), { focus: "text" }));
const replyAll = () => openMessageOr((m) => compose.open(
  replyDraft(m, model.user.address, { all: true }), { focus: "text" }));
const forward = () => openMessageOr(async (m) => {
  if (await compose.open(forwardDraft(m), { focus: "to" })) compose.forwardAttachments(m);
});

// ---- live events ---------------------------------------------------------------------

function handleEvent(type, data) {
  if (type === "geolists") {
    loadGeolists(); // somebody near or far moved, joined or left
    return;
  }
  if (!data || (type !== "providers" && !data.id)) return;
  if (type === "message") {
    const known = model.findSummary(data.id);
    model.addLive(data);
    if (data.notice) {
      const n = data.notice;
      view.toast(`Not delivered to ${n.recipient}: ${n.reason || "refused"}`, { alert: true, ms: 8000 });
    } else if (!known && data.folder === "inbox") {
      view.announce(`New message from ${data.from || "someone"}: ${data.subject || "(no subject)"}`);
      notify(data);
    }
    loadCounts();
  } else if (type === "moved" || type === "draft") {
    model.addLive(data, { fresh: false });
    loadCounts();
  } else if (type === "deleted") {
    model.removeRows([data.id]);
    if (model.open && model.open.id === data.id) model.close();
    if (data.folder === "drafts") compose.goneElsewhere(data.id);
    loadCounts();
  } else if (type === "status") {
    model.applyStatus(data);
  } else if (type === "providers") {
    if (Array.isArray(data.providers)) model.setProviders(data.providers);
  }
}

/** A desktop notification for new mail, when the user asked for them and is elsewhere. */
function notify(m) {
  if (!notificationsOn() || document.visibilityState === "visible") return;
  const note = new Notification(`New mail from ${m.from || "someone"}`, {
    body: m.subject || "(no subject)", tag: `bitmail-${m.id}`,
  });
  note.onclick = () => {
    window.focus();
    showView("inbox");
    openMessage(m.id);
  };
}

function handleConnectionState(state, { recovered }) {
  model.setConnection(state);
  if (state === "live" && recovered) {
    // Whatever happened while we were away: fetch it again.
    for (const name of FOLDERS) if (model.folders[name].loaded) loadFolder(name);
    if (model.open && model.open.id) refreshOpen(model.open.id);
    if (model.view === "providers") loadProviders();
    loadCounts();
    loadGeolists();
    view.announce("Connection restored.");
  }
}

async function refreshOpen(id) {
  try {
    const message = await conn.message(id);
    if (model.open && model.open.id === id && model.open.message) {
      model.open.message = message;
      model.emit("status");
    }
  } catch {
    // Keep showing what we have.
  }
}

// ---- wiring ----------------------------------------------------------------------------

function bindEvents() {
  view.el.loginForm.addEventListener("submit", login);
  view.el.loginCreateButton.addEventListener("click", createAccount);
  view.el.loginCreateBack.addEventListener("click", changeUsername);
  // The question is about the name typed then: another name is a new login.
  view.el.loginUser.addEventListener("input", () => {
    if (nameToCreate === null) return;
    nameToCreate = null;
    view.hideCreateQuestion();
  });
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("compose-button").addEventListener("click", () => compose.open());
  compose.bind();
  settings.bind();
  for (const button of document.querySelectorAll(".folder[data-view]")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  const listEl = list.el.list;
  listEl.addEventListener("click", (e) => {
    const box = e.target.closest(".tick");
    if (box) {
      model.check(box.dataset.id, box.checked, { range: e.shiftKey });
      return;
    }
    const row = e.target.closest(".row");
    if (!row) return;
    if (e.shiftKey || e.ctrlKey || e.metaKey) {
      // Shift+click ticks a range, Ctrl/⌘+click one more row, as in a file list.
      e.preventDefault();
      model.check(row.dataset.id, !model.checked.has(row.dataset.id), { range: e.shiftKey });
      return;
    }
    openMessage(row.dataset.id);
  });
  listEl.addEventListener("focusin", (e) => {
    const row = e.target.closest(".row");
    if (row && row.dataset.id !== model.selectedId) model.select(row.dataset.id);
  });
  list.el.all.addEventListener("change", () => model.checkAll(list.el.all.checked));
  const barActions = {
    archive: () => actions.moveTo("archive"),
    trash: () => actions.moveTo("trash"),
    restore: () => actions.restore(),
    forever: () => actions.deleteForever(),
    discard: () => actions.discardDrafts(),
    read: () => actions.setUnread(model.targets(), false),
    unread: () => actions.setUnread(model.targets(), true),
  };
  list.el.bar.addEventListener("click", (e) => {
    const button = e.target.closest("[data-action]");
    if (button) barActions[button.dataset.action]();
  });
  document.getElementById("discard").addEventListener("click", () => actions.discardOpen());
  document.getElementById("mark-all-read").addEventListener("click", () => actions.markAllRead());
  list.el.loadMore.addEventListener("click", () => loadFolder(model.view, { more: true }));
  view.el.search.addEventListener("input", onSearchInput);
  bindKeyboard({
    compose: () => compose.open(),
    search: () => view.el.search.focus(),
    next: () => move(1),
    previous: () => move(-1),
    open: () => {
      const id = model.selectedId || model.visibleMessages()[0]?.id;
      if (!id || !FOLDERS.includes(model.view)) return false;
      openMessage(id);
      return true;
    },
    escape: (event) => {
      const inCompose = event.target instanceof Element && event.target.closest("#compose");
      if (inCompose || (cv.composeOpen && !model.open)) compose.close();
      else if (model.open) closeMessage();
      else if (model.checked.size) model.checkAll(false);
      else return false;
      return true;
    },
    reply,
    replyAll,
    forward,
    archive: () => actions.archive(),
    trash: () => actions.trash(),
    markRead: () => actions.setUnread(model.targets(), false),
    markUnread: () => actions.setUnread(model.targets(), true),
    toggleCheck: () => {
      const id = model.selectedId;
      if (!id || !FOLDERS.includes(model.view)) return false;
      model.check(id, !model.checked.has(id));
      return true;
    },
    undo: () => {
      if (!actions.lastUndo) return false;
      view.hideToast();
      actions.lastUndo();
      return true;
    },
  }, {
    active: () => !view.el.app.hidden,
    onTypingEscape: (target) => {
      if (target === view.el.search && view.el.search.value) {
        view.el.search.value = "";
        onSearchInput();
      } else if (target.closest("#compose")) {
        compose.close(); // the draft is kept; the focus goes back to Compose
      }
    },
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && model.user) loadGeolists();
  });
  // Endless scroll: the "Load more" button loads itself when it comes into view.
  if ("IntersectionObserver" in window) {
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && FOLDERS.includes(model.view)) {
        const f = model.folder;
        if (f && f.next && !f.loading) loadFolder(model.view, { more: true });
      }
    }, { root: view.el.listPane, rootMargin: "200px" });
    observer.observe(list.el.loadMore);
  }
  view.handlers = {
    close: closeMessage,
    reply,
    replyAll,
    forward,
    archive: () => actions.moveTo("archive"),
    trash: () => actions.trash(),
    restore: () => actions.restore(),
    forever: () => actions.deleteForever(),
    markUnread: () => actions.setUnread(model.targets(), true),
    editDraft: () => model.open && editDraft(model.open.id),
    toggleHtml: () => model.toggleHtml(),
    leaveGeolists: async () => {
      try {
        await conn.leaveGeolists();
        localStorage.removeItem("bitmail.geolists");
        if (view.el.loginShareLocation) view.el.loginShareLocation.checked = false;
      } catch (err) {
        view.toast(err.message);
      }
      loadGeolists();
    },
    geolist: (g) => {
      compose.open(null, { focus: "subject" });
      compose.addTo(appendAddresses(cv.fields.to.value, g.addresses || []));
      cv.fields.subject.focus();
    },
  };
}

boot();
