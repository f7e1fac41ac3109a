// Settings: display name and signature, password, GeoLists, desktop
// notifications and API keys. It owns #settings-pane.

import { ApiError, NetworkError } from "./connection.js";
import { $, h } from "./dom.js";
import { currentLocation } from "./location.js";
import { formatDateLong } from "./mailmodel.js";

export const NOTIFY_KEY = "bitmail:notify";

function say(box, message, bad = false) {
  box.textContent = message;
  box.classList.toggle("form-error", bad);
  box.hidden = !message;
}

function problem(err) {
  if (err instanceof NetworkError) return "BitMail cannot be reached right now.";
  return err.message || String(err);
}

export class Settings {
  constructor({ conn, model, view, onProfile }) {
    this.conn = conn;
    this.model = model;
    this.view = view;
    this.onProfile = onProfile; // the user's settings changed
    this.el = {
      profile: $("profile-form"),
      name: $("settings-name"),
      signature: $("settings-signature"),
      profileStatus: $("profile-status"),
      password: $("password-form"),
      current: $("settings-current"),
      fresh: $("settings-new"),
      passwordStatus: $("password-status"),
      geolists: $("settings-geolists"),
      forget: $("forget-location"),
      geoStatus: $("geo-status"),
      notify: $("settings-notify"),
      notifyStatus: $("notify-status"),
      keysBody: $("keys-body"),
      keysEmpty: $("keys-empty"),
      keyForm: $("key-form"),
      keyName: $("key-name"),
      keyStatus: $("key-status"),
      newKey: $("new-key"),
      newKeyValue: $("new-key-value"),
    };
  }

  bind() {
    const el = this.el;
    el.profile.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveProfile();
    });
    el.password.addEventListener("submit", (e) => {
      e.preventDefault();
      this.changePassword();
    });
    el.geolists.addEventListener("change", () => this.setGeolists(el.geolists.checked));
    el.forget.addEventListener("click", () => this.patch({ location: null }, el.geoStatus,
      "Your stored location is forgotten."));
    el.notify.addEventListener("change", () => this.setNotify(el.notify.checked));
    el.keyForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.createKey();
    });
    el.keysBody.addEventListener("click", (e) => {
      const button = e.target.closest("[data-revoke]");
      if (button) this.revokeKey(button.dataset.revoke, button.dataset.name);
    });
  }

  /** Show the pane with the user's current settings, and load the keys. */
  show() {
    const user = this.model.user;
    const el = this.el;
    el.name.value = user.display_name;
    el.signature.value = user.signature;
    el.geolists.checked = user.geolists;
    el.forget.disabled = !user.located;
    el.notify.checked = notificationsOn();
    for (const box of [el.profileStatus, el.passwordStatus, el.geoStatus, el.keyStatus,
      el.notifyStatus]) say(box, "");
    el.newKey.hidden = true;
    this.loadKeys();
  }

  async patch(changes, box, done) {
    try {
      const me = await this.conn.patchMe(changes);
      this.onProfile(me);
      this.el.forget.disabled = !me.located;
      this.el.geolists.checked = me.geolists;
      say(box, done);
    } catch (err) {
      say(box, problem(err), true);
    }
  }

  /** GeoLists on: share where the browser says we are; off: forget it. */
  async setGeolists(on) {
    const el = this.el;
    if (on) {
      say(el.geoStatus, "Asking the browser where you are…");
      const location = await currentLocation();
      if (!location) {
        el.geolists.checked = false;
        say(el.geoStatus, "The browser did not give a location, so GeoLists stay off.", true);
        return;
      }
      await this.patch({ geolists: true, location }, el.geoStatus, "GeoLists are on.");
    } else {
      await this.patch({ geolists: false }, el.geoStatus,
        "GeoLists are off; your location is forgotten.");
    }
    try {
      localStorage.setItem("bitmail.geolists", el.geolists.checked ? "1" : "");
    } catch {
      // the login box just starts as it was
    }
  }

  async saveProfile() {
    await this.patch({ display_name: this.el.name.value, signature: this.el.signature.value },
      this.el.profileStatus, "Saved.");
  }

  async changePassword() {
    const el = this.el;
    if (!el.current.value || !el.fresh.value) {
      say(el.passwordStatus, "Enter your current password and a new one.", true);
      (el.current.value ? el.fresh : el.current).focus();
      return;
    }
    try {
      const out = await this.conn.changePassword(el.current.value, el.fresh.value);
      el.current.value = el.fresh.value = "";
      const n = out.ended_sessions;
      say(el.passwordStatus, `Password changed. ${n ? `${n} other ${n === 1 ? "session was" : "sessions were"} logged out.` : "No other session was open."}`);
    } catch (err) {
      say(el.passwordStatus, problem(err), true);
      if (err instanceof ApiError && err.field === "current") el.current.focus();
    }
  }

  async setNotify(on) {
    const el = this.el;
    if (on && !("Notification" in window)) {
      el.notify.checked = false;
      say(el.notifyStatus, "This browser cannot show notifications.", true);
      return;
    }
    if (on && Notification.permission !== "granted") {
      const answer = await Notification.requestPermission();
      if (answer !== "granted") {
        el.notify.checked = false;
        say(el.notifyStatus, "The browser did not allow notifications.", true);
        return;
      }
    }
    localStorage.setItem(NOTIFY_KEY, on ? "1" : "0");
    say(el.notifyStatus, on ? "New mail will show a desktop notification." : "Notifications are off.");
  }

  // ---- API keys -------------------------------------------------------------

  async loadKeys() {
    try {
      const body = await this.conn.keys();
      this.renderKeys(body.keys);
    } catch (err) {
      say(this.el.keyStatus, problem(err), true);
    }
  }

  renderKeys(keys) {
    this.el.keysEmpty.hidden = keys.length > 0;
    this.el.keysBody.replaceChildren(...keys.map((k) => h("tr", {},
      h("th", { scope: "row" }, k.name || "(no name)"),
      h("td", {}, formatDateLong(k.created)),
      h("td", {}, k.last_used ? formatDateLong(k.last_used) : "never"),
      h("td", {}, h("button", {
        type: "button", class: "ghost danger", "data-revoke": k.id, "data-name": k.name || "",
        "aria-label": `Revoke ${k.name || "key"}`,
      }, "Revoke")))));
  }

  async createKey() {
    const el = this.el;
    const name = el.keyName.value.trim();
    if (!name) {
      say(el.keyStatus, "Give the key a name, such as the program that will use it.", true);
      el.keyName.focus();
      return;
    }
    try {
      const made = await this.conn.createKey(name);
      el.keyName.value = "";
      el.newKeyValue.value = made.key;
      el.newKey.hidden = false;
      say(el.keyStatus, "");
      el.newKeyValue.focus();
      el.newKeyValue.select();
      this.loadKeys();
    } catch (err) {
      say(el.keyStatus, problem(err), true);
    }
  }

  async revokeKey(id, name) {
    if (!window.confirm(`Revoke the key “${name}”? Programs using it stop working.`)) return;
    try {
      await this.conn.deleteKey(id);
      say(this.el.keyStatus, `Revoked “${name}”.`);
      this.loadKeys();
    } catch (err) {
      say(this.el.keyStatus, problem(err), true);
    }
  }
}

export function notificationsOn() {
  return "Notification" in window && Notification.permission === "granted" &&
    localStorage.getItem(NOTIFY_KEY) === "1";
}
