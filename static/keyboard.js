// Single-key shortcuts, as Gmail and Fastmail have them. The keyboard module
// only maps keys to the controller's actions; it decides nothing else.
//
//   c compose · / search · j k (↓ ↑ in the list) move · Enter open · Esc close
//   r reply · a reply all · f forward · e archive · # or Delete: to Trash
//   u mark read · U (Shift+U) mark unread · x tick the row · z undo

// key → action name (the handlers object given to bindKeyboard has them).
const KEYS = {
  c: "compose",
  "/": "search",
  j: "next",
  k: "previous",
  r: "reply",
  a: "replyAll",
  f: "forward",
  e: "archive",
  "#": "trash",
  Delete: "trash",
  u: "markRead",
  U: "markUnread",
  x: "toggleCheck",
  z: "undo",
  Enter: "open",
  Escape: "escape",
};
// Keys that work only when the focus is in the message list.
const LIST_ONLY = { ArrowDown: "next", ArrowUp: "previous" };

function isTyping(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  if (target.tagName !== "INPUT") return false;
  return !["button", "checkbox", "radio", "submit", "reset", "range", "color", "file"]
    .includes(target.type);
}

/**
 * Listen for shortcuts. `active()` says whether the app is showing;
 * `handlers[action](event)` returns false when it did nothing (so the key
 * keeps its usual meaning); `onTypingEscape(target)` handles Esc in a field.
 */
export function bindKeyboard(handlers, { active, onTypingEscape = () => {} }) {
  document.addEventListener("keydown", (event) => {
    if (!active() || event.defaultPrevented || event.isComposing) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (isTyping(target)) {
      if (event.key === "Escape") onTypingEscape(target);
      return;
    }
    let action = KEYS[event.key];
    if (!action && target instanceof Element && target.closest("#message-list")) {
      action = LIST_ONLY[event.key];
    }
    if (!action || !handlers[action]) return;
    // On a button or link, Enter presses it; in a checkbox, x and Enter are its own.
    if (event.key === "Enter" && (target instanceof HTMLButtonElement ||
        target instanceof HTMLAnchorElement || target instanceof HTMLInputElement)) return;
    if (handlers[action](event) === false) return;
    event.preventDefault();
  });
}
