// Buying on the viewer page, apart from the room: where goods ship (the default saved address, or another
// the viewer picks), an address asked for inline when there is none (the show keeps playing), and a
// confirmation step for buys dearer than a threshold the viewer sets (kept in this browser).
import { api, h, money, submitting } from "./api.js";

const $ = (id) => document.getElementById(id);

const CONFIRM_KEY = "livehub.confirmOverCents";
export const DEFAULT_CONFIRM_OVER_CENTS = 5000;

// "Viewer 1, Lisbon, PT"
export function addressLabel(a) {
  return `${a.name}, ${a.city}, ${a.country}`;
}

export class Buying {
  constructor() {
    this.addresses = [];
    this.chosenId = null;
    this.pendingAddress = null; // resolves the inline address form's promise
    this.pendingConfirm = null;
    this.choosing = false;

    $("address-form").addEventListener("submit", (e) => this.saveAddress(e));
    $("address-cancel").addEventListener("click", () => this.closeAddress(null));
    $("confirm-yes").addEventListener("click", () => this.closeConfirm(true));
    $("confirm-no").addEventListener("click", () => this.closeConfirm(false));
    const over = $("confirm-over");
    over.value = String(this.confirmOverCents() / 100);
    over.addEventListener("change", () => {
      const n = Number(over.value);
      if (over.value === "" || !Number.isFinite(n) || n < 0) {
        over.value = String(this.confirmOverCents() / 100);
        return;
      }
      localStorage.setItem(CONFIRM_KEY, String(Math.round(n * 100)));
    });
  }

  // Buys above this many cents are confirmed first; below it, one tap buys.
  confirmOverCents() {
    const stored = Number(localStorage.getItem(CONFIRM_KEY));
    return localStorage.getItem(CONFIRM_KEY) !== null && Number.isFinite(stored) && stored >= 0
      ? stored
      : DEFAULT_CONFIRM_OVER_CENTS;
  }

  async load() {
    $("buying").hidden = false;
    try {
      this.addresses = (await api("GET", "/api/me/addresses")).items;
    } catch {
      this.addresses = [];
    }
    this.chosenId = (this.addresses.find((a) => a.is_default) || this.addresses[0])?.id ?? null;
    this.renderShipTo();
  }

  shipTo() {
    return this.addresses.find((a) => a.id === this.chosenId) || null;
  }

  // Whether a variant of the stream's line-up ships: digital goods (codes) need no address.
  ships(variant) {
    return !variant.digital;
  }

  renderShipTo() {
    const line = $("ship-to");
    const a = this.shipTo();
    if (this.choosing && this.addresses.length) {
      const select = h(
        "select",
        {
          id: "ship-to-choice",
          onchange: async (e) => {
            if (e.target.value === "new") {
              this.choosing = false;
              this.renderShipTo();
              await this.askAddress("Add an address to ship to.", "Save address");
              return;
            }
            this.chosenId = e.target.value;
            this.choosing = false;
            this.renderShipTo();
            $("ship-to-change")?.focus();
          },
        },
        this.addresses.map((x) => h("option", { value: x.id, selected: x.id === this.chosenId }, addressLabel(x))),
        h("option", { value: "new" }, "A new address…"),
      );
      line.replaceChildren(h("label", { for: "ship-to-choice" }, "Ship to "), select);
      return;
    }
    if (!a) {
      line.replaceChildren(
        h("span", { class: "muted" }, "No shipping address yet: the first buy of goods that ship asks for one here."),
      );
      return;
    }
    line.replaceChildren(
      h("span", { id: "ship-to-text" }, `Ships to ${addressLabel(a)}`),
      " · ",
      h(
        "button",
        {
          type: "button",
          class: "link",
          id: "ship-to-change",
          "aria-label": "Change the shipping address",
          onclick: () => {
            this.choosing = true;
            this.renderShipTo();
            $("ship-to-choice")?.focus();
          },
        },
        "change",
      ),
    );
  }

  // Shows the inline address form and resolves with the saved address, or null when cancelled.
  askAddress(why, submitLabel = "Save and buy") {
    this.closeAddress(null);
    const form = $("address-form");
    $("address-why").textContent = why;
    form.querySelector("button[type=submit]").textContent = submitLabel;
    form.hidden = false;
    form.elements.name.focus();
    return new Promise((resolve) => (this.pendingAddress = resolve));
  }

  async saveAddress(e) {
    e.preventDefault();
    const form = e.target;
    const body = Object.fromEntries(
      [...new FormData(form)].map(([k, v]) => [k, v.trim()]).filter(([k, v]) => v !== "" || k !== "postal_code"),
    );
    body.country = (body.country || "").toUpperCase();
    body.is_default = this.addresses.length === 0;
    try {
      const { address } = await submitting(form, () => api("POST", "/api/me/addresses", body));
      this.addresses.push(address);
      this.chosenId = address.id;
      form.reset();
      this.closeAddress(address);
    } catch {
      /* the form shows why */
    }
  }

  closeAddress(address) {
    $("address-form").hidden = true;
    this.renderShipTo();
    const resolve = this.pendingAddress;
    this.pendingAddress = null;
    resolve?.(address);
  }

  // Asks to confirm a buy inline; resolves true or false.
  confirm(text) {
    this.closeConfirm(false);
    $("confirm-text").textContent = text;
    $("confirm-box").hidden = false;
    $("confirm-yes").focus();
    return new Promise((resolve) => (this.pendingConfirm = resolve));
  }

  closeConfirm(yes) {
    $("confirm-box").hidden = true;
    const resolve = this.pendingConfirm;
    this.pendingConfirm = null;
    resolve?.(yes);
  }
}

export function priceText(cents, ships) {
  return ships ? `${money(cents)} plus shipping` : money(cents);
}
