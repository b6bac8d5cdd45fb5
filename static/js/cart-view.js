// What the cart and the checkout page both show of a quote (GET /api/cart?address_id=): each shop's
// subtotal and shipping, and the totals.
import { h, money } from "./api.js";

export function shopLines(cart) {
  return cart.sellers.map((s) => {
    let shipping;
    if (s.ships_to_address === false) shipping = h("span", { class: "bad-text" }, "does not ship to this address");
    else if (s.shipping_cents === null && s.ships_to_address === null && !cart.address) shipping = "shipping once you choose an address";
    else if (s.shipping_cents === null) shipping = "no shipping (nothing of it ships)";
    else shipping = s.shipping_cents === 0 ? "free shipping" : `shipping ${money(s.shipping_cents)}`;
    return h("li", { class: "row spread", dataset: { seller: s.seller_id } },
      h("span", {}, h("a", { href: `/shops/${s.seller_id}` }, s.shop_name), ": items ", money(s.subtotal_cents)),
      h("span", { class: "shipping" }, shipping));
  });
}

export function totals(cart) {
  const row = (label, value, cls) => [h("dt", { class: cls }, label), h("dd", { class: cls, dataset: { total: label.toLowerCase() } }, value)];
  return [
    ...row("Subtotal", money(cart.subtotal_cents)),
    ...row("Shipping", cart.shipping_cents === null ? "—" : money(cart.shipping_cents)),
    ...row("Total", cart.total_cents === null ? "—" : money(cart.total_cents), "grand"),
  ];
}

// Why the cart cannot be checked out as it is, or "" when it can.
export function blocker(cart) {
  if (!cart.items.length) return "Your cart is empty.";
  if (cart.items.some((l) => !l.purchasable)) return "Some items are not available in that quantity any more: change or remove them.";
  if (cart.address_required) return "Some items ship: choose or add an address.";
  const refused = cart.sellers.filter((s) => s.ships_to_address === false).map((s) => s.shop_name);
  if (refused.length) return `${refused.join(", ")} does not ship to this address: choose another, or remove its items.`;
  return "";
}
