// The controller: wires the page's events to the model, the connection and
// the view. Mail data never passes through innerHTML (see view.js).

import { ApiError, Connection, NetworkError, randomKey } from "./connection.js";
import {
  EMPTY_DRAFT,
  FOLDERS,
  MailModel,
  appendAddresses,
  checkAddressList,
  draftIsEmpty,
  forwardDraft,
  replaceToken,
  replyDraft,
  suggest,
  tokenAt,
} from "./mailmodel.js";
import { View, formatSize } from "./view.js";

const GEO_TIMEOUT_MS = 5000;
const PROVIDERS_POLL_MS = 5000;
const GEOLISTS_REFRESH_MS = 60000;
const RECIPIENT_FIELDS = ["to", "cc", "bcc"];
const FIELD_ALIASES = { message: "text", body: "text", html: "text", recipients: "to" };
// The server's max_message_size (text and attachments together), as /api/me
// and the login answer give it; the default until then.
let MAX_MESSAGE_BYTES = 25 * 1024 * 1024;

const model = new MailModel();
const view = new View();
const conn = new Connection({
  onEvent: handleEvent,
  onState: handleConnectionState,
  onUnauthorized: () => sessionEnded("Your session has ended. Please log in again."),
});

let providersTimer = null;
let geoTimer = null;
let sending = false;
let sendKey = null; // Idempotency-Key of the draft as it is now
let searchTimer = null;
let draftTimer = null;
const suggestState = { field: null, items: [], active: -1 };
// The draft's files: {key, filename, content_type, size, blob, state, pending}.
// Their contents live in this page only; a saved draft keeps just the names.
let attachments = [];
let missingNames = []; // files of a draft from before a reload, to be chosen again
let attachSeq = 0;

// ---- model → view ------------------------------------------------------------

model.subscribe((topic) => {
  switch (topic) {
    case "user":
      view.renderUser(model.user);
      break;
    case "view":
      view.renderView(model);
      view.renderList(model);
      break;
    case "folder":
    case "selection":
      view.renderList(model);
      break;
    case "open":
      view.renderReader(model, (id, i) => conn.attachmentUrl(id, i));
      view.renderList(model);
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

/** Where the browser says we are, or null (refused, unavailable, too slow). */
function currentLocation() {
  if (!("geolocation" in navigator)) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), GEO_TIMEOUT_MS);
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        clearTimeout(timer);
        resolve({ lat: pos.coords.latitude, lon: pos.coords.longitude });
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
      { enableHighAccuracy: false, maximumAge: 10 * 60 * 1000, timeout: GEO_TIMEOUT_MS },
    );
  });
}

async function login(event) {
  event.preventDefault();
  const username = view.el.loginUser.value.trim();
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
    const me = await conn.login(username, password, location);
    await enterApp(me);
    if (me.created) view.toast(`Welcome! Your address is ${me.address}`);
  } catch (err) {
    view.setLoginBusy(false);
    if (err instanceof NetworkError) view.loginError("BitMail cannot be reached right now.");
    else view.loginError(err.message, err.field);
    (err.field === "username" ? view.el.loginUser : view.el.loginPass).focus();
  }
}

async function enterApp(me) {
  if (Number.isFinite(me.max_message_size)) MAX_MESSAGE_BYTES = me.max_message_size;
  model.reset();
  model.setUser(me);
  view.showApp();
  view.setSending(false);
  model.setView("inbox");
  view.renderReader(model, () => "");
  view.renderGeolists(model);
  restoreDraft();
  conn.startEvents();
  loadFolder("inbox");
  loadContacts();
  loadGeolists();
  clearInterval(geoTimer);
  geoTimer = setInterval(loadGeolists, GEOLISTS_REFRESH_MS);
  // Focus leaves the (now hidden) login form for the page, where the
  // single-key shortcuts work.
  if (!view.composeOpen) document.activeElement?.blur?.();
}

async function logout() {
  try {
    await conn.logout();
  } catch {
    // Logged out locally all the same; the cookie dies with the session.
  }
  // A draft left in this browser would be readable by the next person.
  if (model.user) localStorage.removeItem(draftKey());
  leaveApp();
  view.showLogin();
}

function sessionEnded(message) {
  leaveApp();
  view.showLogin(message);
}

function leaveApp() {
  conn.stopEvents();
  clearInterval(geoTimer);
  stopProvidersPolling();
  view.closeCompose();
  view.fillDraft(EMPTY_DRAFT);
  view.clearFieldErrors();
  setAttachments([]);
  model.reset();
  view.banner("idle");
}

// ---- folders ------------------------------------------------------------------------

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

function showView(name) {
  if (name === model.view) {
    if (FOLDERS.includes(name)) loadFolder(name);
    return;
  }
  model.close();
  model.setView(name);
  if (name === "providers") {
    startProvidersPolling();
    return;
  }
  stopProvidersPolling();
  loadFolder(name);
  if (model.queryText) searchServer();
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
    model.setProviders(body.providers || []);
  } catch (err) {
    if (!(err instanceof NetworkError)) view.el.providersNote.textContent = err.message;
  }
}

async function loadContacts() {
  try {
    const body = await conn.contacts();
    model.setContacts(body.contacts || []);
  } catch (err) {
    // Without the endpoint, addresses seen in the loaded folders still help.
    if (!(err instanceof ApiError)) return;
    model.setContacts(null);
  }
}

async function loadGeolists() {
  try {
    const body = await conn.geolists();
    model.setGeolists({ lists: body.lists || [], located: body.located });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) model.setGeolists({ lists: [] });
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

// ---- reading ----------------------------------------------------------------------------

async function openMessage(id) {
  if (!id) return;
  model.select(id);
  model.openLoading(id);
  const summary = model.findSummary(id);
  try {
    const message = await conn.message(id);
    if (!model.openLoaded(id, message)) return;
    view.focusReader();
    if ((summary && summary.unread) || message.unread) {
      model.markRead(id, false);
      conn.markRead(id, false).catch((err) => {
        // A server without PATCH (404/405) just keeps its own idea of "unread".
        if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return;
      });
    }
  } catch (err) {
    model.openFailed(id, err instanceof NetworkError
      ? "Could not load this message — the connection is down."
      : `Could not open this message: ${err.message}`);
  }
}

function closeMessage() {
  const id = model.open && model.open.id;
  model.close();
  if (id) view.focusRow(id);
}

function move(delta) {
  if (!FOLDERS.includes(model.view)) return;
  const id = model.move(delta);
  if (!id) return;
  view.focusRow(id);
  if (model.open) openMessage(id);
}

// ---- live events --------------------------------------------------------------------

function handleEvent(type, data) {
  if (type === "message") {
    if (!data || !data.id) return;
    const known = model.findSummary(data.id);
    model.addLive(data);
    if (!known && data.folder === "inbox") {
      view.announce(`New message from ${data.from || "someone"}: ${data.subject || "(no subject)"}`);
    }
  } else if (type === "status") {
    if (data && data.id) model.applyStatus(data);
  } else if (type === "providers") {
    if (data && Array.isArray(data.providers)) model.setProviders(data.providers);
  }
}

function handleConnectionState(state, { recovered }) {
  model.setConnection(state);
  if (state === "live" && recovered) {
    // Whatever happened while we were away: fetch it again.
    for (const name of FOLDERS) if (model.folders[name].loaded) loadFolder(name);
    if (model.open && model.open.id) refreshOpen(model.open.id);
    if (model.view === "providers") loadProviders();
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

// ---- compose -------------------------------------------------------------------------

function draftKey() {
  return `bitmail:draft:${model.user ? model.user.username : ""}`;
}

function saveDraftSoon() {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(saveDraft, 250);
}

function saveDraft() {
  clearTimeout(draftTimer);
  if (!model.user) return;
  const draft = view.readDraft();
  const names = [...new Set([...attachments.map((a) => a.filename), ...missingNames])];
  try {
    if (draftIsEmpty(draft) && !names.length) localStorage.removeItem(draftKey());
    else {
      localStorage.setItem(draftKey(), JSON.stringify({
        ...draft, attachments: names, open: view.composeOpen,
      }));
    }
  } catch {
    // Storage full or refused: the draft lives on in the open page.
  }
}

function restoreDraft() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(draftKey()) || "null");
  } catch {
    saved = null;
  }
  const names = saved && Array.isArray(saved.attachments)
    ? saved.attachments.filter((n) => typeof n === "string")
    : [];
  view.fillDraft(saved || EMPTY_DRAFT);
  view.clearFieldErrors();
  setAttachments([], names);
  sendKey = null;
  if (saved && (!draftIsEmpty(saved) || names.length) && saved.open !== false) {
    view.openCompose("to");
  }
}

/** Open compose; with a draft, replace the current one. False: the user kept theirs. */
function openCompose(draft = null, focus = "to") {
  if (draft) {
    const current = view.readDraft();
    const busy = !draftIsEmpty(current) || attachments.length > 0;
    if (busy && !window.confirm("Replace the draft you are writing?")) {
      view.openCompose();
      return false;
    }
    view.fillDraft(draft);
    view.clearFieldErrors();
    setAttachments([]);
    sendKey = null;
  }
  view.openCompose(focus);
  saveDraft();
  return true;
}

function closeCompose() {
  view.closeCompose();
  saveDraft();
  document.getElementById("compose-button").focus();
}

function discardDraft() {
  view.fillDraft(EMPTY_DRAFT);
  view.clearFieldErrors();
  setAttachments([]);
  sendKey = null;
  view.closeCompose();
  try {
    localStorage.removeItem(draftKey());
  } catch {
    // nothing to remove
  }
  document.getElementById("compose-button").focus();
}

// ---- attachments ----------------------------------------------------------------------

function attachmentBytes() {
  return attachments.reduce((n, a) => n + (a.size || 0), 0);
}

function renderAttachments() {
  view.renderAttachments(attachments, {
    total: attachmentBytes(), limit: MAX_MESSAGE_BYTES, missing: missingNames,
  });
}

function setAttachments(list, missing = []) {
  attachments = list;
  missingNames = missing;
  renderAttachments();
}

/** A MIME type the server takes ("type/subtype"), else the generic one. */
function cleanType(type) {
  const t = String(type || "").split(";")[0].trim().toLowerCase();
  return /^[\w.+-]+\/[\w.+-]+$/.test(t) ? t : "application/octet-stream";
}

function onFilesChosen() {
  const input = view.el.files;
  const files = [...(input.files || [])];
  input.value = ""; // so the same file can be chosen again after a remove
  if (!files.length) return;
  for (const file of files) {
    attachments.push({
      key: ++attachSeq, filename: file.name || "attachment", content_type: cleanType(file.type),
      size: file.size, blob: file, state: "ready", pending: null,
    });
  }
  const chosen = new Set(files.map((f) => f.name));
  missingNames = missingNames.filter((n) => !chosen.has(n));
  sendKey = null;
  view.composeError("");
  renderAttachments();
  view.el.filesList.scrollIntoView({ block: "nearest" });
  saveDraft();
  view.announce(`Attached ${files.map((f) => f.name).join(", ")}`);
}

function removeAttachment(key) {
  const i = attachments.findIndex((a) => a.key === key);
  if (i < 0) return;
  const [gone] = attachments.splice(i, 1);
  sendKey = null;
  renderAttachments();
  saveDraft();
  const buttons = view.el.filesList.querySelectorAll("[data-remove]");
  (buttons[i] || buttons[i - 1] || view.el.files).focus();
  view.announce(`Removed ${gone.filename}`);
}

/** A forward carries the message's attachments: fetch their bytes into the draft. */
function forwardAttachments(m) {
  setAttachments((m.attachments || []).map((a) => {
    const item = {
      key: ++attachSeq, filename: a.filename || "attachment", content_type: cleanType(a.content_type),
      size: a.size || 0, blob: null, state: "fetching", pending: null,
    };
    item.pending = conn.attachment(m.id, a.index).then((blob) => {
      item.blob = blob;
      item.size = blob.size;
      item.state = "ready";
    }, () => {
      item.state = "failed";
    }).finally(renderAttachments);
    return item;
  }));
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

/** Check one recipients field; `typing` leaves the part being written alone. */
function validateRecipients(name, { typing = false } = {}) {
  const { problems } = checkAddressList(view.fields[name].value, { typing });
  view.fieldError(name, problems.length ? problems.join(" · ") : null);
  return problems.length === 0;
}

async function send(event) {
  event.preventDefault();
  if (sending) return;
  hideAllSuggestions();
  view.composeError("");
  let ok = true;
  for (const name of RECIPIENT_FIELDS) ok = validateRecipients(name) && ok;
  const draft = view.readDraft();
  const counts = RECIPIENT_FIELDS.map((n) => checkAddressList(draft[n]).addresses.length);
  if (ok && counts.every((n) => n === 0)) {
    view.fieldError("to", "Add at least one recipient.");
    ok = false;
  }
  if (!ok) {
    const bad = RECIPIENT_FIELDS.find((n) => view.fields[n].getAttribute("aria-invalid"));
    view.fields[bad || "to"].focus();
    return;
  }
  const size = draft.subject.length + draft.text.length + attachmentBytes();
  if (size > MAX_MESSAGE_BYTES) {
    view.composeError(`Not sent: with its attachments the message is ${formatSize(size)}, ` +
      `over the ${formatSize(MAX_MESSAGE_BYTES)} limit. Remove some files.`);
    view.el.files.focus();
    return;
  }
  sending = true;
  view.setSending(true);
  const files = attachments.slice();
  await Promise.all(files.map((a) => a.pending));
  const failed = files.filter((a) => a.state !== "ready");
  if (failed.length) {
    sending = false;
    view.setSending(false);
    view.composeError(`Not sent: ${failed.map((a) => a.filename).join(", ")} could not be ` +
      "fetched from the original message. Remove it to send without it.");
    return;
  }
  sendKey = sendKey || randomKey();
  const payload = {
    to: draft.to,
    cc: draft.cc,
    bcc: draft.bcc,
    subject: draft.subject,
    text: draft.text,
  };
  try {
    if (files.length) {
      payload.attachments = await Promise.all(files.map(async (a) => ({
        filename: a.filename, content_type: a.content_type, content: await base64Of(a.blob),
      })));
    }
    await conn.send(payload, sendKey);
    sending = false;
    view.setSending(false);
    view.fillDraft(EMPTY_DRAFT);
    view.clearFieldErrors();
    setAttachments([]);
    sendKey = null;
    view.closeCompose();
    saveDraft();
    view.toast("Message sent.");
    view.announce("Message sent.");
    document.getElementById("compose-button").focus();
  } catch (err) {
    sending = false;
    view.setSending(false);
    if (err instanceof NetworkError) {
      view.composeError("Not sent: BitMail cannot be reached. Your draft is kept — try again when the connection is back.");
      return;
    }
    if (!(err instanceof ApiError)) {
      view.composeError(`Not sent: a file could not be read (${err.message || err}).`);
      return;
    }
    if (err.status === 413) {
      view.composeError(`Not sent: the message is too large for the server (${err.message}). ` +
        "Remove some files.");
      return;
    }
    const field = FIELD_ALIASES[err.field] || err.field;
    if (field && view.fields[field]) {
      view.fieldError(field, err.message);
      view.composeError(`Not sent: ${err.message}`);
      view.fields[field].focus();
    } else {
      view.composeError(`Not sent: ${err.message}`);
    }
  }
}

function onComposeInput(event) {
  const name = event.target.name;
  sendKey = null; // a changed draft is a new message
  if (RECIPIENT_FIELDS.includes(name)) {
    validateRecipients(name, { typing: true });
    updateSuggestions(name);
  } else if (name && view.fields[name]) {
    view.fieldError(name, null);
  }
  saveDraftSoon();
}

// ---- address suggestions ----------------------------------------------------------

function updateSuggestions(name) {
  const field = view.fields[name];
  const caret = field.selectionStart ?? field.value.length;
  const { text } = tokenAt(field.value, caret);
  const others = checkAddressList(field.value).addresses;
  const items = suggest(model.contacts(), text, others);
  suggestState.field = name;
  suggestState.items = items;
  suggestState.active = items.length ? 0 : -1;
  view.showSuggestions(name, items, suggestState.active);
}

function hideAllSuggestions() {
  for (const name of RECIPIENT_FIELDS) view.hideSuggestions(name);
  suggestState.field = null;
  suggestState.items = [];
  suggestState.active = -1;
}

function pickSuggestion(name, address) {
  const field = view.fields[name];
  const caret = field.selectionStart ?? field.value.length;
  const next = replaceToken(field.value, caret, address);
  field.value = next.value;
  field.setSelectionRange(next.caret, next.caret);
  hideAllSuggestions();
  validateRecipients(name, { typing: true });
  sendKey = null;
  saveDraftSoon();
}

function onRecipientKeydown(event) {
  const name = event.target.name;
  const open = suggestState.field === name && suggestState.items.length > 0;
  if (!open) {
    if (event.key === "ArrowDown" && !event.altKey) {
      updateSuggestions(name);
      if (suggestState.items.length) event.preventDefault();
    }
    return;
  }
  const n = suggestState.items.length;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    suggestState.active = (suggestState.active + step + n) % n;
    view.showSuggestions(name, suggestState.items, suggestState.active);
  } else if ((event.key === "Enter" || event.key === "Tab") && suggestState.active >= 0) {
    if (event.key === "Tab" && event.shiftKey) return;
    event.preventDefault();
    pickSuggestion(name, suggestState.items[suggestState.active]);
  } else if (event.key === "Escape") {
    event.preventDefault();
    event.stopPropagation();
    hideAllSuggestions();
  }
}

// ---- keyboard -------------------------------------------------------------------------

function isTyping(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  if (target.tagName !== "INPUT") return false;
  return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"]
    .includes(target.type);
}

function onKeydown(event) {
  if (view.el.app.hidden || event.defaultPrevented) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (isTyping(target)) {
    if (event.key === "Escape" && target === view.el.search && view.el.search.value) {
      view.el.search.value = "";
      onSearchInput();
    }
    return;
  }
  const inCompose = target instanceof Element && target.closest("#compose");
  switch (event.key) {
    case "j":
    case "ArrowDown":
      if (event.key === "ArrowDown" && !target.closest?.("#message-list")) return;
      event.preventDefault();
      move(1);
      break;
    case "k":
    case "ArrowUp":
      if (event.key === "ArrowUp" && !target.closest?.("#message-list")) return;
      event.preventDefault();
      move(-1);
      break;
    case "Enter": {
      // On a button, Enter already presses it.
      if (target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement) return;
      if (model.selectedId) {
        event.preventDefault();
        openMessage(model.selectedId);
      } else {
        const first = model.visibleMessages()[0];
        if (first) {
          event.preventDefault();
          openMessage(first.id);
        }
      }
      break;
    }
    case "Escape":
      if (inCompose || (view.composeOpen && !model.open)) {
        event.preventDefault();
        closeCompose();
      } else if (model.open) {
        event.preventDefault();
        closeMessage();
      }
      break;
    case "c":
      event.preventDefault();
      openCompose();
      break;
    case "/":
      event.preventDefault();
      view.el.search.focus();
      break;
    default:
      break;
  }
}

// ---- wiring ------------------------------------------------------------------------------

function bindEvents() {
  view.el.loginForm.addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("compose-button").addEventListener("click", () => openCompose());
  document.getElementById("compose-close").addEventListener("click", closeCompose);
  document.getElementById("discard").addEventListener("click", discardDraft);
  view.el.composeForm.addEventListener("submit", send);
  view.el.composeForm.addEventListener("input", onComposeInput);
  view.el.files.addEventListener("change", onFilesChosen);
  view.el.filesList.addEventListener("click", (e) => {
    const button = e.target.closest("[data-remove]");
    if (button) removeAttachment(Number(button.dataset.remove));
  });
  view.fields.text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      view.el.composeForm.requestSubmit();
    }
  });
  for (const name of RECIPIENT_FIELDS) {
    const field = view.fields[name];
    field.addEventListener("keydown", onRecipientKeydown);
    field.addEventListener("blur", () => {
      // Let a click on a suggestion land before the list goes away.
      setTimeout(() => {
        if (document.activeElement !== field) view.hideSuggestions(name);
      }, 150);
      validateRecipients(name);
    });
    const box = document.getElementById(`compose-${name}-suggestions`);
    box.addEventListener("mousedown", (e) => e.preventDefault());
    box.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-address]");
      if (li) {
        pickSuggestion(name, li.dataset.address);
        field.focus();
      }
    });
  }
  for (const button of view.el.folders) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  view.el.list.addEventListener("click", (e) => {
    const row = e.target.closest(".row");
    if (row) openMessage(row.dataset.id);
  });
  view.el.list.addEventListener("focusin", (e) => {
    const row = e.target.closest(".row");
    if (row && row.dataset.id !== model.selectedId) model.select(row.dataset.id);
  });
  view.el.loadMore.addEventListener("click", () => loadFolder(model.view, { more: true }));
  view.el.search.addEventListener("input", onSearchInput);
  document.addEventListener("keydown", onKeydown);
  addEventListener("pagehide", saveDraft);
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
    observer.observe(view.el.loadMore);
  }
  view.handlers = {
    close: closeMessage,
    reply: () => {
      const m = model.open && model.open.message;
      if (m) openCompose(replyDraft(m, model.user && model.user.address), "text");
    },
    forward: () => {
      const m = model.open && model.open.message;
      if (m && openCompose(forwardDraft(m), "to")) forwardAttachments(m);
    },
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
      const field = view.fields.to;
      field.value = appendAddresses(field.value, g.addresses || []);
      sendKey = null;
      validateRecipients("to");
      openCompose(null, "subject");
    },
  };
}

boot();
