// Shared by the buyer's shop pages (product, storefront, cart, checkout, orders, wallet, account): the
// header's shop links with the cart count, the sign-in gate, product pictures and the address form.
import { api, currentUser, h, renderHeader } from "./api.js";

// The common header, plus the buyer's own pages. The cart count costs one request, so it is asked only
// for a signed-in user, and `refreshCartCount` updates it after the page changes the cart.
export async function shopHeader() {
  const user = await renderHeader();
  const nav = document.querySelector("#top nav");
  if (!user || !nav) return user;
  const count = h("span", { id: "cart-count", class: "badge", "aria-label": "items in your cart" }, "");
  const links = h(
    "span",
    { class: "shop-links" },
    h("a", { href: "/cart" }, "Cart ", count),
    h("a", { href: "/orders" }, "Orders"),
    h("a", { href: "/wallet" }, "Wallet"),
    h("a", { href: "/account" }, "Account"),
    h("a", { href: "/support" }, "Support"),
  );
  nav.prepend(links);
  refreshCartCount().catch(() => null);
  return user;
}

export async function refreshCartCount(cart) {
  const el = document.getElementById("cart-count");
  if (!el) return;
  const data = cart || (await api("GET", "/api/cart"));
  const n = data.items.reduce((sum, line) => sum + line.quantity, 0);
  el.textContent = n ? String(n) : "";
  el.hidden = n === 0;
}

// The signed-in user, or off to sign in (and back here afterwards).
export async function requireUser() {
  const user = await currentUser().catch(() => null);
  if (!user) {
    location.replace(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
    return new Promise(() => {}); // the page is going away: nothing after this runs
  }
  return user;
}

// The last path segment: the id of /products/{id}, /shops/{id}, /orders/{id}.
export function pathId() {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
}

// A product's picture (its first image, in the size that fits `width` CSS pixels) or a placeholder
// with the title's initial when it has none.
export function picture(product, { width = 320, cls = "thumb" } = {}) {
  const image = (product.images || [])[0];
  if (!image) {
    return h("span", { class: `${cls} placeholder`, role: "img", "aria-label": `No picture of ${product.title}` },
      (product.title || "?").slice(0, 1).toUpperCase());
  }
  return imageTag(image, product.title, width, cls);
}

export function imageTag(image, alt, width, cls) {
  const sizes = image.sizes || [];
  return h("img", {
    class: cls,
    src: image.url,
    alt,
    width: String(image.width),
    height: String(image.height),
    loading: "lazy",
    srcset: sizes.length ? sizes.map((s) => `${s.url} ${s.width}w`).join(", ") : undefined,
    sizes: sizes.length ? `${width}px` : undefined,
  });
}

// "Ada Lovelace, 1 Test Street, Springfield 12345, US"
export function addressLine(a) {
  if (!a) return "";
  return [a.name, a.line1, a.line2, a.city, a.region, [a.postal_code, a.country].filter(Boolean).join(" ")]
    .filter(Boolean)
    .join(", ");
}

// The fields of an address form; names are the API's, so the server's reasons land by their field.
// `prefix` keeps ids unique when a page has several of these forms.
export function addressFields(prefix, a = {}) {
  const field = (name, label, attrs = {}) => {
    const id = `${prefix}-${name}`;
    return [
      h("label", { for: id }, label),
      h("input", { id, name, value: a[name] || "", ...attrs }),
    ];
  };
  return [
    ...field("name", "Full name", { required: true, maxlength: "200", autocomplete: "name" }),
    ...field("line1", "Address line 1", { required: true, maxlength: "200", autocomplete: "address-line1" }),
    ...field("line2", "Address line 2 (optional)", { maxlength: "200", autocomplete: "address-line2" }),
    ...field("city", "City", { required: true, maxlength: "200", autocomplete: "address-level2" }),
    ...field("region", "State or region (optional)", { maxlength: "200", autocomplete: "address-level1" }),
    ...field("postal_code", "Postal code", { maxlength: "20", autocomplete: "postal-code" }),
    ...field("country", "Country (2 letters, e.g. US)", {
      required: true, maxlength: "2", minlength: "2", autocomplete: "country", title: "Two letters, such as US or FR",
    }),
    ...field("phone", "Phone for the carrier (optional)", { type: "tel", autocomplete: "tel" }),
  ];
}

// An address form's values as the API takes them (empty optional fields are null).
export function addressBody(form) {
  const data = Object.fromEntries(new FormData(form));
  const body = {};
  for (const key of ["name", "line1", "line2", "city", "region", "postal_code", "country", "phone"]) {
    const value = (data[key] || "").trim();
    body[key] = value || null;
  }
  return body;
}

export const STATUS_WORDS = {
  paid: "Paid",
  shipped: "Shipped",
  delivered: "Delivered",
  cancelled: "Cancelled",
  refunded: "Refunded",
  partially_refunded: "Partly refunded",
};

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, STATUS_WORDS[status] || status);
}

export const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
