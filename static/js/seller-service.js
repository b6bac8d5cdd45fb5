// The seller back office's after-sale tabs: the shipping profile (flat rate, free over, countries),
// returns to decide (approve, or reject with a reason) and reviews of the shop's products with a reply.
// seller.js wires them into its tabs; the orders table shows a requested return with returnActions().
import { api, h, money, newKey, showError, submitting, toast, toCents } from "/static/js/api.js";

const $ = (id) => document.getElementById(id);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

// -- shipping profile ------------------------------------------------------------------------------------

export async function loadShipping() {
  const form = $("shipping-form");
  // Nothing can be typed until what is saved has been filled in (the page starts the fields disabled too):
  // an answer arriving after the seller began typing would otherwise overwrite what they typed.
  const fields = [...form.elements];
  for (const el of fields) el.disabled = true;
  try {
    const profile = await api("GET", "/api/seller/shipping");
    form.elements.flat_rate.value = (profile.flat_rate_cents / 100).toFixed(2);
    form.elements.free_over.value = profile.free_over_cents == null ? "" : (profile.free_over_cents / 100).toFixed(2);
    form.elements.countries.value = profile.countries.join(", ");
    describeShipping(profile);
  } finally {
    for (const el of fields) el.disabled = false;
  }
}

function describeShipping(p) {
  const where = p.countries.length ? `to ${p.countries.join(", ")}` : "everywhere";
  const free = p.free_over_cents == null ? "" : `, free from ${money(p.free_over_cents)}`;
  $("shipping-summary").textContent = `Ships ${where} for ${money(p.flat_rate_cents)} an order${free}.`;
}

async function saveShipping(event) {
  event.preventDefault();
  const form = event.target;
  const result = await submitting(form, () => {
    const countries = form.elements.countries.value
      .split(/[\s,]+/)
      .map((c) => c.trim().toUpperCase())
      .filter(Boolean);
    const freeOver = form.elements.free_over.value.trim();
    return api("PUT", "/api/seller/shipping", {
      flat_rate_cents: toCents(form.elements.flat_rate.value),
      free_over_cents: freeOver === "" ? null : toCents(freeOver),
      countries,
    });
  }).catch(() => null);
  if (result) {
    describeShipping(result);
    toast("Shipping saved.", "ok");
  }
}

// -- returns ---------------------------------------------------------------------------------------------

// Approve / reject (with a reason) for an order whose return is requested; `done(order)` gets the order.
export function returnActions(order, done) {
  const ret = order.return;
  if (!ret || ret.status !== "requested") return null;
  const reason = h("input", {
    required: true,
    maxlength: "500",
    name: "reason",
    placeholder: "Why not",
    "aria-label": `Reason to reject the return of ${order.number}`,
  });
  const reject = h(
    "form",
    { class: "row compact" },
    reason,
    h("button", { type: "submit", "aria-label": `Reject the return of ${order.number}` }, "Reject"),
  );
  reject.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(reject, () =>
      api("POST", `/api/orders/${order.id}/return/reject`, { reason: reason.value }),
    ).catch(() => null);
    if (result) {
      toast(`The return of ${order.number} is rejected.`, "ok");
      done(result.order);
    }
  });
  const approve = h(
    "button",
    {
      type: "button",
      class: "primary",
      "aria-label": `Approve the return of ${order.number}`,
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          const result = await api("POST", `/api/orders/${order.id}/return/approve`, undefined, {
            headers: { "Idempotency-Key": newKey() },
          });
          toast(`Return of ${order.number} approved: ${money(ret.refund_cents)} back to the buyer.`, "ok");
          done(result.order);
        } catch (err) {
          event.target.disabled = false;
          showError(err);
        }
      },
    },
    "Approve",
  );
  const titleOf = (variantId) => order.items.find((i) => i.variant_id === variantId)?.title || "an item";
  const items = ret.items.map((i) => `${i.quantity} \u00d7 ${titleOf(i.variant_id)}`).join("; ");
  return h(
    "div",
    { class: "stack return-request" },
    h("p", {}, h("strong", {}, "Return requested: "), `\u201c${ret.reason}\u201d`, items ? ` (${items})` : ""),
    h("p", { class: "muted" }, `Approving refunds ${money(ret.refund_cents)}.`),
    h("div", { class: "row compact" }, approve, h("details", { class: "inline" }, h("summary", {}, "Reject…"), reject)),
  );
}

// Every order of the shop with a return waiting for a decision (the orders list has no filter for it).
export async function loadReturns() {
  const body = $("returns-table").tBodies[0];
  const open = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ limit: "100" });
    if (cursor) params.set("cursor", cursor);
    const page = await api("GET", `/api/seller/orders?${params}`);
    open.push(...page.items.filter((o) => o.return?.status === "requested"));
    cursor = page.next_cursor;
  } while (cursor);
  if (!open.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "3", class: "muted" }, "No returns to decide.")));
    return;
  }
  body.replaceChildren(
    ...open.map((order) => {
      const row = h("tr", { dataset: { orderId: order.id } });
      const fill = (o) => {
        const decided = o.return && o.return.status !== "requested";
        row.replaceChildren(
          h("td", {}, o.number),
          h("td", {}, when(o.return?.requested_at)),
          h(
            "td",
            {},
            decided
              ? h("span", { class: `badge status-${o.return.status}` }, `return ${o.return.status}`)
              : returnActions(o, fill),
          ),
        );
      };
      fill(order);
      return row;
    }),
  );
}

// -- reviews ---------------------------------------------------------------------------------------------

export async function loadReviews(sellerId, fresh = () => true) {
  const list = $("reviews-list");
  // Busy until the newest load has drawn the list (an older one still out is dropped when it comes back).
  list.setAttribute("aria-busy", "true");
  const products = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ seller: sellerId, limit: "100" });
    if (cursor) params.set("cursor", cursor);
    const page = await api("GET", `/api/products?${params}`);
    products.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && products.length < 1000);
  const cards = [];
  for (const product of products) {
    const page = await api("GET", `/api/products/${product.id}/reviews?limit=100`);
    for (const review of page.items) cards.push(reviewCard(product, review));
  }
  if (!fresh()) return;
  // A reply being typed survives the list being drawn again (the tab opened again while a load was out).
  const drafts = new Map();
  for (const card of list.querySelectorAll("article.review")) {
    const text = card.querySelector("textarea")?.value;
    if (text) drafts.set(card.dataset.reviewId, text);
  }
  list.replaceChildren(...(cards.length ? cards : [h("p", { class: "muted" }, "No reviews yet.")]));
  for (const card of cards) {
    const area = card.querySelector("textarea");
    if (area && drafts.has(card.dataset.reviewId)) area.value = drafts.get(card.dataset.reviewId);
  }
  list.removeAttribute("aria-busy");
}

function reviewCard(product, review) {
  const card = h("article", { class: "card review", dataset: { reviewId: review.id } });
  const stars = "\u2605".repeat(review.rating) + "\u2606".repeat(5 - review.rating);
  const fill = (r) => {
    let reply;
    if (r.reply) {
      reply = h("p", { class: "review-reply" }, h("strong", {}, "Your reply: "), r.reply.text);
    } else {
      const text = h("textarea", {
        name: "text",
        required: true,
        maxlength: "2000",
        rows: "2",
        "aria-label": `Reply to ${r.author?.display_name || "the buyer"} about ${product.title}`,
      });
      reply = h("form", { class: "stack" }, text, h("div", {}, h("button", { type: "submit" }, "Reply")));
      reply.addEventListener("submit", async (event) => {
        event.preventDefault();
        const result = await submitting(reply, () =>
          api("POST", `/api/products/${product.id}/reviews/${r.id}/reply`, { text: text.value }),
        ).catch(() => null);
        if (result) {
          toast("Reply posted.", "ok");
          fill(result.review);
        }
      });
    }
    card.replaceChildren(
      h("h3", {}, product.title),
      h(
        "p",
        {},
        h("span", { "aria-label": `${r.rating} of 5 stars` }, stars),
        ` ${r.author?.display_name || ""} · ${when(r.created_at)}`,
      ),
      r.text ? h("p", {}, r.text) : null,
      reply,
    );
  };
  fill(review);
  return card;
}

export function setupService() {
  $("shipping-form").addEventListener("submit", saveShipping);
}
