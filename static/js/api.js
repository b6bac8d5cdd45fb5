// Shared by every page: the REST client, the signed-in user, money and safe DOM building.
// User text (titles, chat, names) only ever reaches the page through text nodes: h() never parses HTML.

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

// The top bar of every page: brand, links for the user's roles, sign in / out.
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
    nav.append(
      h("a", { href: "/security" }, "Security"),
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
export function showTab(loaders) {
  const panels = [...document.querySelectorAll(".tab-panel")];
  const wanted = location.hash.slice(1);
  const current = panels.some((p) => p.id === wanted) ? wanted : panels[0].id;
  for (const panel of panels) panel.hidden = panel.id !== current;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.getAttribute("href") === `#${current}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  loaders[current]().catch(showError);
}

// Disable a form's controls while `work` runs, and show its error next to the form.
export async function submitting(form, work) {
  const controls = [...form.querySelectorAll("button, input, select, textarea")];
  controls.forEach((c) => (c.disabled = true));
  const slot = form.querySelector(".form-error") || form.appendChild(h("p", { class: "form-error", role: "alert" }));
  slot.textContent = "";
  try {
    return await work();
  } catch (err) {
    slot.textContent = err.message;
    throw err;
  } finally {
    controls.forEach((c) => (c.disabled = false));
  }
}
