// One of the buyer's orders (/orders/{id}): items (and their digital codes), where it ships and its
// tracking, its history; cancel it before it ships, mark it received, ask to return it, review what
// came.
import { api, h, money, showError, submitting, toast } from "./api.js";
import { STATUS_WORDS, addressLine, dateTime, pathId, requireUser, shopHeader, statusBadge } from "./shop.js";

const $ = (id) => document.getElementById(id);
const orderId = pathId();
let me = null;

function optionText(item) {
  const opts = Object.entries(item.options || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  return opts || item.sku;
}

function itemRow(item) {
  return h(
    "li",
    { class: "stack", dataset: { variant: item.variant_id } },
    h("div", { class: "row spread" },
      h("span", {}, `${item.quantity} × `, h("a", { href: `/products/${item.product_id}` }, item.title),
        h("span", { class: "muted small" }, ` (${optionText(item)})`)),
      h("span", {}, money(item.unit_price_cents * item.quantity))),
    item.codes && item.codes.length
      ? h("div", { class: "codes" },
        h("p", { class: "small" }, item.codes.length === 1 ? "Your code:" : "Your codes:"),
        h("ul", { class: "plain" }, ...item.codes.map((c) => h("li", {}, h("code", {}, c)))))
      : null,
  );
}

function eventText(e) {
  const to = STATUS_WORDS[e.to] || e.to;
  const parts = [e.from ? to : `${to} (order placed)`];
  if (e.amount_cents) parts.push(money(e.amount_cents));
  if (e.reason) parts.push(e.reason);
  return parts.join(" · ");
}

function showTracking(t) {
  if (!t) return "Not shipped yet.";
  const bits = [`Carrier: ${t.carrier}`, " · Tracking number: ", h("strong", {}, t.tracking_number)];
  if (t.tracking_url) bits.push(" · ", h("a", { href: t.tracking_url, rel: "noopener noreferrer", target: "_blank" }, "Track the parcel"));
  return bits;
}

const RETURN_WORDS = { requested: "Requested: the shop decides", approved: "Approved", rejected: "Rejected" };

function show(order, shopName) {
  document.title = `Order ${order.number} · LiveHub`;
  $("order-number").textContent = `Order ${order.number}`;
  $("order-status").replaceChildren(statusBadge(order.status));
  $("order-shop").textContent = shopName;
  $("order-shop").href = `/shops/${order.seller_id}`;
  $("order-date").textContent = dateTime.format(new Date(order.created_at));
  // A support ticket about this order, to its shop (/support opens the form with it chosen).
  $("order-help").href = `/support?order=${encodeURIComponent(order.id)}`;
  $("items").replaceChildren(...order.items.map(itemRow));
  const itemsCents = order.total_cents - order.shipping_cents;
  const row = (label, value) => [h("dt", {}, label), h("dd", { dataset: { total: label.toLowerCase() } }, value)];
  $("totals").replaceChildren(
    ...row("Items", money(itemsCents)),
    ...row("Shipping", order.address ? money(order.shipping_cents) : "—"),
    ...row("Total", money(order.total_cents)),
    ...(order.refunded_cents ? row("Refunded", money(order.refunded_cents)) : []),
  );
  $("shipping-section").hidden = !order.address;
  if (order.address) {
    $("address").textContent = `Ships to ${addressLine(order.address)}`;
    $("tracking").replaceChildren(...[showTracking(order.tracking)].flat());
  }
  const ret = order.return;
  $("return-section").hidden = !ret;
  if (ret) {
    $("return-status").textContent = [
      RETURN_WORDS[ret.status] || ret.status,
      `refund ${money(ret.refund_cents)}`,
      `your reason: ${ret.reason}`,
      ret.decision_reason ? `the shop said: ${ret.decision_reason}` : "",
    ].filter(Boolean).join(" · ");
  }
  $("timeline").replaceChildren(
    ...order.events.map((e) => h("li", {}, h("span", { class: "muted small" }, dateTime.format(new Date(e.at))), " ", eventText(e))),
  );
  showActions(order);
  showReviews(order).catch(showError);
  $("loading").hidden = true;
  $("order").hidden = false;
}

function showActions(order) {
  const list = [];
  if (order.status === "paid" && !order.shipped_at) list.push(cancelForm(order));
  if (order.status === "shipped") list.push(actionButton("Mark as received", () => api("POST", `/api/orders/${order.id}/deliver`), "Marked as received."));
  const returnable = order.delivered_at && ["delivered", "partially_refunded"].includes(order.status);
  const openReturn = order.return && order.return.status === "requested";
  const physical = order.items.filter((i) => !(i.codes && i.codes.length));
  if (returnable && !openReturn && physical.length) list.push(returnForm(order, physical));
  $("action-list").replaceChildren(...list);
  $("actions").hidden = list.length === 0;
}

function actionButton(label, call, done) {
  const button = h("button", { type: "button" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { order } = await call();
      toast(done, "ok");
      await render(order);
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  });
  return button;
}

function cancelForm(order) {
  const form = h("form", { class: "row compact" },
    h("input", { name: "reason", maxlength: "500", placeholder: "Why (optional)", "aria-label": "Why you cancel (optional)" }),
    h("button", { type: "submit" }, "Cancel order"),
    h("p", { class: "form-error", role: "alert" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    const result = await submitting(form, () =>
      api("POST", `/api/orders/${order.id}/cancel`, reason ? { reason } : {})).catch(() => null);
    if (result) {
      toast("Order cancelled; the money is back in your wallet.", "ok");
      await render(result.order);
    }
  });
  return form;
}

function returnForm(order, physical) {
  const rows = physical.map((item, i) => {
    const id = `return-item-${i}`;
    return h("div", { class: "check" },
      h("input", { type: "checkbox", id, checked: true, dataset: { variant: item.variant_id } }),
      h("label", { for: id }, `${item.title} (${optionText(item)})`),
      h("input", {
        type: "number", min: "1", max: String(item.quantity), value: String(item.quantity), class: "narrow",
        name: "quantity", "aria-label": `How many of ${item.title} to return`, dataset: { variant: item.variant_id },
      }));
  });
  const form = h("form", { class: "stack" },
    h("p", {}, "Which items come back?"),
    ...rows,
    h("label", { for: "return-reason" }, "Why are you returning it?"),
    h("textarea", { id: "return-reason", name: "reason", required: true, maxlength: "500", rows: "3" }),
    h("button", { type: "submit" }, "Request a return"),
    h("p", { class: "form-error", role: "alert" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const items = [];
    for (const box of form.querySelectorAll("input[type=checkbox]")) {
      if (!box.checked) continue;
      const qty = form.querySelector(`input[name=quantity][data-variant="${box.dataset.variant}"]`);
      items.push({ variant_id: box.dataset.variant, quantity: Number(qty.value) });
    }
    const result = await submitting(form, () => {
      if (!items.length) throw new Error("Choose at least one item to return.");
      return api("POST", `/api/orders/${order.id}/return`, { reason: form.elements.reason.value, items });
    }).catch(() => null);
    if (result) {
      toast("Return requested: the shop will answer.", "ok");
      await render(result.order);
    }
  });
  return h("details", { class: "inline" }, h("summary", {}, "Request a return…"), form);
}

// After delivery, one review per product of the order: the form, or the review once written. Which
// reviews are yours is read from the product's newest reviews (one a product and order).
async function showReviews(order) {
  const section = $("reviews-section");
  if (!order.delivered_at) {
    section.hidden = true;
    return;
  }
  const products = [...new Map(order.items.map((i) => [i.product_id, i])).values()];
  const blocks = await Promise.all(products.map(async (item) => {
    const page = await api("GET", `/api/products/${item.product_id}/reviews?limit=100`).catch(() => ({ items: [] }));
    const mine = page.items.find((r) => r.author.id === me.id);
    return mine ? writtenReview(item, mine) : reviewForm(order, item);
  }));
  $("review-list").replaceChildren(...blocks);
  section.hidden = false;
}

function writtenReview(item, review) {
  return h("div", { class: "review", dataset: { product: item.product_id } },
    h("p", {}, h("strong", {}, item.title), ": ",
      h("span", { class: "stars", "aria-label": `${review.rating} out of 5` }, "★".repeat(review.rating) + "☆".repeat(5 - review.rating))),
    review.text ? h("p", {}, review.text) : null,
    review.reply ? h("p", { class: "muted" }, `The shop answered: ${review.reply.text}`) : null);
}

function reviewForm(order, item) {
  const id = `review-${item.product_id}`;
  const form = h("form", { class: "stack review", dataset: { product: item.product_id } },
    h("p", {}, h("strong", {}, `Review ${item.title}`)),
    h("label", { for: `${id}-rating` }, "Rating"),
    h("select", { id: `${id}-rating`, name: "rating", required: true },
      ...[5, 4, 3, 2, 1].map((n) => h("option", { value: String(n) }, `${n} star${n === 1 ? "" : "s"}`))),
    h("label", { for: `${id}-text` }, "Your review (optional)"),
    h("textarea", { id: `${id}-text`, name: "text", maxlength: "2000", rows: "3" }),
    h("button", { type: "submit" }, "Post review"),
    h("p", { class: "form-error", role: "alert" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () => api("POST", `/api/products/${item.product_id}/reviews`, {
      order_id: order.id, rating: Number(form.elements.rating.value), text: form.elements.text.value,
    })).catch(() => null);
    if (result) {
      toast("Thank you for your review.", "ok");
      form.replaceWith(writtenReview(item, result.review));
    }
  });
  return form;
}

async function render(order) {
  const shop = await api("GET", `/api/sellers/${order.seller_id}`).then((r) => r.seller.shop_name, () => "the shop");
  show(order, shop);
}

// Something happened to this order elsewhere (shipped, refunded, a return decided): the bell's socket says so
// (bell.js), and the page shows the order as it is now.
window.addEventListener("livehub:notification", (event) => {
  if ((event.detail.payload || {}).order_id !== orderId) return;
  api("GET", `/api/orders/${orderId}`).then(({ order }) => render(order)).catch(() => null);
});

requireUser().then(async (user) => {
  me = user;
  shopHeader();
  const { order } = await api("GET", `/api/orders/${orderId}`);
  await render(order);
}).catch((err) => {
  $("loading").textContent = err.status === 404 || err.status === 403 ? "There is no such order of yours." : err.message;
});
