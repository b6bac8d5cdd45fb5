// A product's page (/products/{id}): gallery, options with price and stock, the shop, reviews;
// Add to cart, or Buy now (one order for the chosen option, shipped to the default address).
import { ApiError, api, currentUser, h, money, newKey, showError, submitting, toast } from "./api.js";
import { offerDifference } from "./card-payment.js";
import {
  addressBody, addressFields, addressLine, dateTime, imageTag, pathId, picture, refreshCartCount, shopHeader,
} from "./shop.js";

const $ = (id) => document.getElementById(id);
const productId = pathId();
const state = { product: null, variant: null, reviewsCursor: null, defaultAddress: undefined };

function stars(rating) {
  const n = Math.round(rating);
  return "★".repeat(n) + "☆".repeat(5 - n);
}

function optionText(v) {
  const opts = Object.entries(v.options || {}).map(([k, val]) => `${k}: ${val}`).join(", ");
  return opts || v.sku;
}

function showGallery(product) {
  const images = product.images || [];
  const main = $("gallery-main");
  if (!images.length) {
    main.replaceChildren(picture(product, { width: 600, cls: "main" }));
    $("gallery-thumbs").replaceChildren();
    return;
  }
  const select = (i) => {
    main.replaceChildren(imageTag(images[i], `${product.title}, picture ${i + 1} of ${images.length}`, 600, "main"));
    for (const [j, b] of [...$("gallery-thumbs").querySelectorAll("button")].entries()) {
      b.setAttribute("aria-pressed", String(i === j));
    }
  };
  $("gallery-thumbs").replaceChildren(
    ...images.map((image, i) =>
      h("li", {}, h("button", { type: "button", "aria-label": `Show picture ${i + 1}`, onclick: () => select(i) },
        imageTag(image, "", 64, "thumb")))),
  );
  select(0);
}

function showVariant(v) {
  state.variant = v;
  $("variant-price").textContent = money(v.price_cents);
  $("variant-stock").textContent = v.available > 0 ? `In stock: ${v.available}` : "Out of stock";
  $("quantity").max = String(Math.max(1, Math.min(1000, v.available)));
  const soldOut = v.available < 1;
  $("add-to-cart").disabled = soldOut;
  $("buy-now").disabled = soldOut;
  showShipTo().catch(() => null);
}

// Goods that ship go to the default address; a digital code needs none.
async function showShipTo() {
  const slot = $("ship-to");
  $("buy-address").hidden = true;
  if (!state.variant || state.variant.digital) {
    slot.textContent = state.variant?.digital ? "A digital code: shown on your order as soon as you buy." : "";
    return;
  }
  const user = await currentUser().catch(() => null);
  if (!user) {
    slot.textContent = "";
    return;
  }
  if (state.defaultAddress === undefined) {
    const { items } = await api("GET", "/api/me/addresses");
    state.defaultAddress = items.find((a) => a.is_default) || null;
  }
  slot.replaceChildren(
    state.defaultAddress
      ? `Ships to ${addressLine(state.defaultAddress)} (`
      : "Buy now ships to your default address: you have none yet (",
    h("a", { href: "/account#addresses" }, state.defaultAddress ? "change" : "add one"),
    state.defaultAddress ? "; or use Add to cart to choose another)." : ", or use Add to cart and add one there).",
  );
  // No address yet: ask for it here, so Buy now can ship.
  $("buy-address").hidden = !!state.defaultAddress;
}

$("buy-address-fields").replaceChildren(...addressFields("buy-address"));
$("buy-address-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = { ...addressBody(form), is_default: true }; // read before submitting() disables the fields
  const result = await submitting(form, () => api("POST", "/api/me/addresses", body)).catch(() => null);
  if (result) {
    state.defaultAddress = result.address;
    toast("Address saved: Buy now ships there.", "ok");
    await showShipTo();
  }
});

function showProduct(p) {
  state.product = p;
  document.title = `${p.title} · LiveHub`;
  $("product-title").textContent = p.title;
  $("product-shop").textContent = p.seller.shop_name;
  $("product-shop").href = `/shops/${p.seller.id}`;
  $("product-rating").textContent = p.rating.count
    ? `${stars(p.rating.average)} ${p.rating.average.toFixed(1)} out of 5 · ${p.rating.count} review${p.rating.count === 1 ? "" : "s"}`
    : "No reviews yet";
  $("product-description").textContent = p.description;
  showGallery(p);
  const firstInStock = p.variants.find((v) => v.available > 0) || p.variants[0];
  $("variants").replaceChildren(
    ...p.variants.map((v) => {
      const id = `variant-${v.id}`;
      const input = h("input", {
        type: "radio", name: "variant", id, value: v.id, checked: v === firstInStock,
        onchange: () => showVariant(v),
      });
      return h("label", { for: id }, input,
        `${optionText(v)} · ${money(v.price_cents)} · ${v.available > 0 ? `${v.available} left` : "sold out"}`);
    }),
  );
  if (firstInStock) showVariant(firstInStock);
  $("loading").hidden = true;
  $("product").hidden = false;
}

function reviewItem(r) {
  return h(
    "article",
    { class: "review" },
    h("p", {}, h("span", { class: "stars", "aria-label": `${r.rating} out of 5` }, stars(r.rating)), " ",
      h("strong", {}, r.author.display_name), " ", h("span", { class: "muted small" }, dateTime.format(new Date(r.created_at)))),
    r.text ? h("p", {}, r.text) : null,
    r.reply ? h("p", { class: "reply muted" }, `The shop answered: ${r.reply.text}`) : null,
  );
}

async function loadReviews(more = false) {
  const cursor = more && state.reviewsCursor ? `&cursor=${encodeURIComponent(state.reviewsCursor)}` : "";
  const page = await api("GET", `/api/products/${productId}/reviews?limit=5${cursor}`);
  const list = $("reviews");
  if (more) list.append(...page.items.map(reviewItem));
  else list.replaceChildren(...page.items.map(reviewItem));
  state.reviewsCursor = page.next_cursor;
  $("reviews-more").hidden = !page.next_cursor;
  $("reviews-empty").hidden = list.children.length > 0;
  $("reviews-section").hidden = false;
}

async function signedInOrGo() {
  const user = await currentUser().catch(() => null);
  if (!user) location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
  return user;
}

function quantity() {
  const n = Number($("quantity").value);
  if (!Number.isInteger(n) || n < 1) throw new ApiError(422, "validation_error", "Enter a quantity of 1 or more", {
    errors: [{ loc: ["quantity"], msg: "Enter a quantity of 1 or more" }],
  });
  return n;
}

$("add-to-cart").addEventListener("click", async () => {
  if (!(await signedInOrGo())) return;
  const form = $("buy");
  const cart = await submitting(form, () =>
    api("POST", "/api/cart/items", { variant_id: state.variant.id, quantity: quantity() })).catch(() => null);
  if (cart) {
    toast(`Added to your cart: ${state.product.title}.`, "ok");
    refreshCartCount(cart).catch(() => null);
    const slot = form.querySelector(".form-error");
    slot.replaceChildren(h("a", { href: "/cart" }, "Go to your cart"));
  }
});

// One key per page load and choice: pressing twice (or a retried request) places one order.
let buyKey = null;
let buyBody = "";

$("buy").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!(await signedInOrGo())) return;
  const form = $("buy");
  const send = (byCard = false) => {
    const body = { items: [{ variant_id: state.variant.id, quantity: quantity() }] };
    if (byCard) body.pay_difference_by_card = true;
    if (JSON.stringify(body) !== buyBody) {
      buyKey = newKey();
      buyBody = JSON.stringify(body);
    }
    return api("POST", "/api/orders", body, { headers: { "Idempotency-Key": buyKey } });
  };
  const result = await submitting(form, () => send()).catch((err) => {
    explainBuyError(form, err, send);
    return null;
  });
  if (result) location.assign(`/orders/${result.order.id}`);
});

// The refusals a buyer can act on, said with where to go.
function explainBuyError(form, err, send) {
  const slot = form.querySelector(".form-error");
  if (err.code === "insufficient_funds") {
    slot.replaceChildren("Your wallet's balance is too low for this. ", h("a", { href: "/wallet" }, "Top up your wallet"), ".");
    // With card payments: pay what the wallet lacks, the order placed when the card money arrives.
    offerDifference(form, slot, err, send, (orderIds) => location.assign(`/orders/${orderIds[0]}`));
  } else if (err.details?.reason === "address_required") {
    slot.replaceChildren("This ships: tell us where first (below).");
    $("buy-address").hidden = false;
    $("buy-address").open = true;
  } else if (err.details?.reason === "not_shipped") {
    slot.replaceChildren(`${state.product.seller.shop_name} does not ship to your default address. `,
      h("a", { href: "/account#addresses" }, "Choose another default address"), ".");
  }
}

$("reviews-more").addEventListener("click", () => loadReviews(true).catch(showError));

shopHeader();
api("GET", `/api/products/${productId}`)
  .then(({ product }) => {
    showProduct(product);
    return loadReviews();
  })
  .catch((err) => {
    $("loading").textContent = err.status === 404 ? "This product is not for sale (any more)." : err.message;
  });
