// The cart (/cart): its lines at today's price and stock (change the quantity, remove), where it ships
// (a saved address, or one added here), each shop's shipping and the totals; then on to /checkout.
import { api, h, money, showError, submitting, toast } from "./api.js";
import { blocker, shopLines, totals } from "./cart-view.js";
import { addressBody, addressFields, addressLine, picture, refreshCartCount, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
const state = { addresses: [], addressId: new URLSearchParams(location.search).get("address_id") || null };
// Each line's product, for its picture: asked once per product while the page is open.
const products = new Map();

async function loadProducts(lines) {
  const missing = [...new Set(lines.map((l) => l.product_id))].filter((id) => !products.has(id));
  await Promise.all(missing.map((id) =>
    api("GET", `/api/products/${id}`).then((r) => products.set(id, r.product), () => products.set(id, null))));
}

function optionText(line) {
  const opts = Object.entries(line.options || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  return opts || line.sku;
}

function lineItem(line) {
  const qty = h("input", {
    type: "number", min: "1", max: "1000", value: String(line.quantity), class: "narrow", name: "quantity",
    "aria-label": `Quantity of ${line.title}`,
  });
  qty.addEventListener("change", () => change(line, Number(qty.value)));
  return h(
    "li",
    { class: "cart-line", dataset: { variant: line.variant_id } },
    picture(products.get(line.product_id) || { title: line.title }, { width: 64 }),
    h("div", {},
      h("a", { href: `/products/${line.product_id}` }, line.title),
      h("p", { class: "muted small" }, `${optionText(line)} · ${money(line.unit_price_cents)} each · ${line.available} in stock`),
      line.purchasable ? null : h("p", { class: "bad-text small" }, line.available ? `Only ${line.available} left` : "Sold out or no longer for sale")),
    h("div", { class: "row compact" },
      qty,
      h("strong", {}, money(line.unit_price_cents * line.quantity)),
      h("button", { type: "button", class: "link", onclick: () => remove(line), "aria-label": `Remove ${line.title}` }, "Remove")),
  );
}

async function change(line, quantity) {
  if (!Number.isInteger(quantity) || quantity < 1) return remove(line);
  await api("PATCH", `/api/cart/items/${line.variant_id}`, { quantity }).catch(showError);
  await load();
}

async function remove(line) {
  await api("DELETE", `/api/cart/items/${line.variant_id}`).catch(showError);
  toast(`Removed ${line.title}.`, "ok");
  await load();
}

function addressChoice(cart) {
  const chosen = cart.address?.id;
  const box = $("address-choice");
  if (!state.addresses.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No saved address yet: add one below."));
    $("new-address").open = true;
    return;
  }
  box.replaceChildren(
    ...state.addresses.map((a) => {
      const id = `ship-${a.id}`;
      return h("div", { class: "check" },
        h("input", { type: "radio", name: "ship_to", id, value: a.id, checked: a.id === chosen, onchange: () => choose(a.id) }),
        h("label", { for: id }, addressLine(a) + (a.is_default ? " (default)" : "")));
    }),
  );
}

async function choose(addressId) {
  state.addressId = addressId;
  history.replaceState(null, "", `/cart?address_id=${addressId}`);
  await load();
}

async function load() {
  const query = state.addressId ? `?address_id=${state.addressId}` : "";
  const [cart, addresses] = await Promise.all([api("GET", `/api/cart${query}`), api("GET", "/api/me/addresses")]);
  state.addresses = addresses.items;
  $("loading").hidden = true;
  refreshCartCount(cart).catch(() => null);
  const empty = cart.items.length === 0;
  $("cart-empty").hidden = !empty;
  for (const id of ["lines-section", "address-section", "summary-section"]) $(id).hidden = empty;
  if (empty) return;
  await loadProducts(cart.items);
  $("lines").replaceChildren(...cart.items.map(lineItem));
  addressChoice(cart);
  $("shops").replaceChildren(...shopLines(cart));
  $("totals").replaceChildren(...totals(cart));
  const why = blocker(cart);
  $("summary-note").textContent = why;
  const link = $("to-checkout");
  link.href = cart.address ? `/checkout?address_id=${cart.address.id}` : "/checkout";
  link.hidden = !!why;
}

$("address-fields").replaceChildren(...addressFields("new-address"));
$("address-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = addressBody(form); // read before submitting() disables the controls (FormData skips those)
  const result = await submitting(form, () => api("POST", "/api/me/addresses", body)).catch(() => null);
  if (result) {
    form.reset();
    $("new-address").open = false;
    toast("Address saved.", "ok");
    await choose(result.address.id);
  }
});

requireUser().then(() => {
  shopHeader();
  return load();
}).catch(showError);
