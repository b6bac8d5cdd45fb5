// Checkout (/checkout?address_id=): what the cart will cost, shipped where, then one press places it
// (one order per shop), paid from the wallet, and by card for what it lacks when the buyer chooses so.
import { api, h, money, newKey, showError, submitting } from "./api.js";
import { offerDifference } from "./card-payment.js";
import { blocker, shopLines, totals } from "./cart-view.js";
import { addressLine, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
const addressId = new URLSearchParams(location.search).get("address_id");
// One key for this page's order: pressing twice, or a retry after a lost answer, places it once.
const key = newKey();
const cardKey = newKey();
let cart = null;

async function load() {
  // An address deleted since the cart page named it: quote to the default one instead.
  cart = await api("GET", "/api/cart" + (addressId ? `?address_id=${encodeURIComponent(addressId)}` : "")).catch((err) => {
    if (err.status !== 404 || !addressId) throw err;
    return api("GET", "/api/cart");
  });
  $("loading").hidden = true;
  if (!cart.items.length) {
    $("cart-empty").hidden = false;
    return;
  }
  $("lines").replaceChildren(
    ...cart.items.map((l) =>
      h("li", { class: "row spread" },
        h("span", {}, `${l.quantity} × ${l.title}`, h("span", { class: "muted small" }, ` (${l.sku})`)),
        h("span", {}, money(l.unit_price_cents * l.quantity)))),
  );
  $("ship-to").textContent = cart.address ? addressLine(cart.address) : "Nothing to ship (digital items only).";
  if (!cart.address && cart.address_required) $("ship-to").textContent = "No address yet.";
  $("shops").replaceChildren(...shopLines(cart));
  $("totals").replaceChildren(...totals(cart));
  const why = blocker(cart);
  $("place-order").disabled = !!why;
  $("place").querySelector(".form-error").textContent = why;
  $("review").hidden = false;
}

$("place").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = cart.address ? { address_id: cart.address.id } : {};
  // Paying the difference by card is another request (its own key): the first one was refused.
  const send = (byCard = false) => byCard
    ? api("POST", "/api/cart/checkout", { ...body, pay_difference_by_card: true }, { headers: { "Idempotency-Key": cardKey } })
    : api("POST", "/api/cart/checkout", body, { headers: { "Idempotency-Key": key } });
  const result = await submitting(form, () => send()).catch((err) => {
    explain(form, err, send);
    return null;
  });
  if (!result) return;
  placed(result.orders.map((o) => o.id));
});

function placed(orderIds) {
  location.assign(orderIds.length === 1 ? `/orders/${orderIds[0]}` : "/orders");
}

// The refusals the buyer can do something about, each with where to go.
function explain(form, err, send) {
  const slot = form.querySelector(".form-error");
  if (err.code === "insufficient_funds") {
    slot.replaceChildren(`Your wallet's balance is too low for ${money(cart.total_cents ?? cart.subtotal_cents)}. `,
      h("a", { href: "/wallet" }, "Top up your wallet"), ", then come back.");
    // With card payments: pay what the wallet lacks, the orders placed when the card money arrives.
    offerDifference(form, slot, err, send, placed);
  } else if (err.details?.reason === "not_shipped") {
    slot.replaceChildren(`${err.message}. `, h("a", { href: "/cart" }, "Choose another address"), ".");
  } else if (err.details?.reason === "address_required") {
    slot.replaceChildren("Some items ship: ", h("a", { href: "/cart" }, "choose or add an address"), ".");
  } else if (err.code === "out_of_stock") {
    slot.replaceChildren(`${err.message}. `, h("a", { href: "/cart" }, "Change your cart"), ".");
  }
}

requireUser().then(() => {
  shopHeader();
  return load();
}).catch(showError);
