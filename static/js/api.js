// Shared by every page: the REST client, the signed-in user, money and safe DOM building.
// User text (titles, chat, names) only ever reaches the page through text nodes: h() never parses HTML.
import { mountBell } from "./bell.js";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

// JSON in and out. `body` may also be a string or Blob sent with `contentType` (the CSV import).
// Errors come back in the contract's shape {error: {code, message, details}} and are thrown as ApiError.
// An admin's money action needs a current code from the authenticator app: when the server asks for one,
// a dialog does, and the request goes again with it (unless `stepUp` is false: the code is in the body).
export async function api(method, path, body, { contentType, headers = {}, stepUp = true } = {}) {
  try {
    return await request(method, path, body, { contentType, headers });
  } catch (err) {
    if (!stepUp || err.status !== 403 || !err.details.two_factor_code_required) throw err;
    const code = await askCode(err.message);
    if (!code) throw err;
    return api(method, path, body, { contentType, headers: { ...headers, "X-Two-Factor-Code": code } });
  }
}

async function request(method, path, body, { contentType, headers }) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    if (contentType) {
      init.headers["Content-Type"] = contentType;
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.", {});
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code || "error", e.message || res.statusText, e.details);
  }
  return data;
}

// A modal asking for the authenticator app's code; the code, or null when cancelled.
function askCode(message) {
  return new Promise((resolve) => {
    const input = h("input", {
      id: "step-up-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "9", required: true,
    });
    const dialog = h("dialog", { "aria-labelledby": "step-up-title", class: "card" });
    dialog.append(h("form", { method: "dialog", class: "stack" },
      h("h2", { id: "step-up-title" }, "Confirm with your authenticator app"),
      h("p", { class: "muted" }, message),
      h("label", { for: "step-up-code" }, "Code from your authenticator app"),
      input,
      h("div", { class: "row" },
        h("button", { type: "submit", class: "primary", value: "ok" }, "Confirm"),
        h("button", { type: "button", onclick: () => dialog.close("") }, "Cancel"))));
    dialog.addEventListener("close", () => {
      const code = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      resolve(code || null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

let mePromise = null;
// The signed-in user ({id, email, display_name, roles, seller_id, ...}) or null; asked once per page.
export function currentUser({ refresh = false } = {}) {
  if (!mePromise || refresh) {
    mePromise = api("GET", "/api/me").then((r) => r.user, (e) => {
      if (e.status === 401) return null;
      throw e;
    });
  }
  return mePromise;
}

export async function signOut() {
  await api("POST", "/api/auth/logout").catch(() => null);
  mePromise = null;
  location.href = "/";
}

// A fresh Idempotency-Key per deliberate action: a retried request is never applied twice.
export function newKey() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// "12.50" (or "-3" when `signed`) in the currency's units -> integer cents.
export function toCents(value, { signed = false } = {}) {
  const n = Number(value);
  if (value === "" || !Number.isFinite(n) || (!signed && n < 0)) throw new Error("Enter an amount such as 12.50");
  return Math.round(n * 100);
}

const formatters = new Map();
export function money(cents, currency = "USD") {
  if (!formatters.has(currency)) {
    formatters.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency }));
  }
  return formatters.get(currency).format(cents / 100);
}

// h("button", {class: "primary", onclick: f, "aria-label": "Buy"}, "Buy") -> element.
// Strings and numbers become text nodes; null/undefined/false children are skipped.
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...flatten(children));
  return el;
}

function flatten(children) {
  const out = [];
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) out.push(...flatten(c));
    else out.push(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return out;
}

export function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

// A short message at the bottom of the screen, read out by screen readers.
export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = h("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

// The top bar of every page: brand, links for the user's roles, the notifications bell (bell.js), sign in / out.
export async function renderHeader() {
  const top = document.getElementById("top");
  if (!top) return null;
  const user = await currentUser().catch(() => null);
  const links = [h("a", { href: "/", class: "brand" }, "LiveHub")];
  const nav = h("nav", { "aria-label": "Main" });
  if (user) {
    if (user.roles.includes("seller")) {
      nav.append(h("a", { href: "/studio" }, "Studio"), h("a", { href: "/seller" }, "My shop"));
    } else {
      // No approved shop yet: /seller shows the application (or where it stands).
      nav.append(h("a", { href: "/seller" }, user.seller_id ? "My shop" : "Start selling"));
    }
    if (user.roles.includes("admin")) nav.append(h("a", { href: "/admin" }, "Admin"));
    nav.append(h("a", { href: "/security" }, "Security"));
    mountBell(nav);
    nav.append(
      h("span", { class: "who" }, user.display_name),
      h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
    );
  } else {
    const next = encodeURIComponent(location.pathname + location.search);
    nav.append(h("a", { href: `/signin?next=${next}`, class: "button" }, "Sign in"));
  }
  top.replaceChildren(...links, nav);
  return user;
}

export function showError(err) {
  toast(err instanceof Error ? err.message : String(err), "error");
}

// Tabbed pages: `.tabs a[href="#panel-id"]` links over `.tab-panel` sections. Shows the panel the URL's
// hash names (else the first), marks its link, and runs its loader from `loaders` (id -> async function).
// A tab's loader gets `fresh()`: false once the tab has been opened again, so a slow earlier load that
// finishes last does not redraw over the newer one (and over what the user began typing into it).
const tabLoads = {};
export function showTab(loaders) {
  const panels = [...document.querySelectorAll(".tab-panel")];
  const wanted = location.hash.slice(1);
  const current = panels.some((p) => p.id === wanted) ? wanted : panels[0].id;
  for (const panel of panels) panel.hidden = panel.id !== current;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.getAttribute("href") === `#${current}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const load = (tabLoads[current] = (tabLoads[current] || 0) + 1);
  loaders[current](() => tabLoads[current] === load).catch(showError);
}

// Disable a form's controls while `work` runs, and show its error: the reason for each field next to it
// (showFormError), and a summary in the form's `.form-error`.
export async function submitting(form, work) {
  const controls = [...form.querySelectorAll("button, input, select, textarea")];
  controls.forEach((c) => (c.disabled = true));
  clearFormError(form);
  try {
    return await work();
  } catch (err) {
    showFormError(form, err);
    throw err;
  } finally {
    controls.forEach((c) => (c.disabled = false));
  }
}

// ---- form errors: the server's reasons next to the fields they are about ------------------------------

// A form's control answers for a field of the request by its name, or by the names in its `data-field`
// (space-separated) where the form's names differ from the API's ("price" for `price_cents`).
function answersTo(control, key) {
  return control.name === key || (control.dataset.field || "").split(/\s+/).includes(key);
}

// The control for a validation error's `loc`, the field's path in the request (["variants", "0",
// "price_cents"]): the one named after the whole path, else after its last name that one answers to (the
// nth of them when the path has an index, as in a list of rows).
function controlFor(form, loc) {
  const parts = loc.map(String).filter((p) => p !== "body");
  const controls = [...form.elements].filter((c) => c.name || c.dataset.field);
  const exact = controls.find((c) => answersTo(c, parts.join(".")));
  if (exact) return exact;
  const index = Number(parts.find((p) => /^\d+$/.test(p)));
  for (const key of parts.filter((p) => !/^\d+$/.test(p)).reverse()) {
    const found = controls.filter((c) => answersTo(c, key));
    if (found.length) return found[index] || found[0];
  }
  return null;
}

function labelOf(control) {
  const text = control.labels?.[0]?.textContent || control.getAttribute("aria-label") || control.name || "";
  return text.trim();
}

// What the server said about one field, as a sentence. A pattern the field did not match is told in the
// field's own words (its `title`) rather than as a regular expression.
function reasonText(error, control) {
  if (error.type === "string_pattern_mismatch" && control?.title) return control.title;
  const msg = String(error.msg || "").replace(/^Value error, /, "");
  return msg.charAt(0).toUpperCase() + msg.slice(1);
}

// The errors of an ApiError (or a websocket `error` frame) that name a field: a validation_error's
// `details.errors`, or a conflict's `details.field` or unique `details.constraint` ("variants_sku_key").
function fieldProblems(form, err) {
  const details = err.details || {};
  if (Array.isArray(details.errors)) {
    return details.errors.map((e) => {
      const control = controlFor(form, Array.isArray(e.loc) ? e.loc : []);
      return { control, text: reasonText(e, control), where: (e.loc || []).join(" ") };
    });
  }
  const keys = details.field ? [details.field] : String(details.constraint || "").split("_");
  const control = [...form.elements].find((c) => keys.some((k) => k && answersTo(c, k)));
  return control ? [{ control, text: reasonText({ msg: err.message }, control) }] : [];
}

let fieldErrorCount = 0;

function markField(control, text) {
  const id = `field-error-${++fieldErrorCount}`;
  const note = h("span", { class: "field-error", id }, text);
  // A checkbox's label follows it: the reason goes after the label.
  const next = control.nextElementSibling;
  (next && next.tagName === "LABEL" && next.htmlFor === control.id ? next : control).after(note);
  control.setAttribute("aria-invalid", "true");
  const described = (control.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
  control.setAttribute("aria-describedby", [...described, id].join(" "));
  const clear = () => clearField(control);
  control.addEventListener("input", clear, { once: true });
  control.addEventListener("change", clear, { once: true });
}

function clearField(control) {
  const described = (control.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
  const mine = described.filter((id) => id.startsWith("field-error-"));
  for (const id of mine) document.getElementById(id)?.remove();
  const rest = described.filter((id) => !mine.includes(id));
  if (rest.length) control.setAttribute("aria-describedby", rest.join(" "));
  else control.removeAttribute("aria-describedby");
  control.removeAttribute("aria-invalid");
}

export function clearFormError(form) {
  for (const control of form.querySelectorAll("[aria-invalid]")) clearField(control);
  const slot = form.querySelector(".form-error");
  if (slot) slot.textContent = "";
}

// Shows why the server refused a form: each field's reason next to it (aria-invalid, aria-describedby),
// and in the form's `.form-error` which fields, or the message when no field is named.
export function showFormError(form, err) {
  clearFormError(form);
  const slot = form.querySelector(".form-error") || form.appendChild(h("p", { class: "form-error", role: "alert" }));
  const problems = fieldProblems(form, err);
  for (const p of problems) if (p.control) markField(p.control, p.text);
  const lines = problems.map((p) => {
    const name = p.control ? labelOf(p.control) : p.where;
    return name ? `${name}: ${p.text}` : p.text;
  });
  slot.textContent = lines.length ? lines.join(" · ") : err.message;
}
