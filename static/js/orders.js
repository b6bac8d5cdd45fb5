// Shared by the seller back office and the admin console: the refund and ship forms of one order.
import { api, h, money, newKey, submitting, toast, toCents } from "/static/js/api.js";

// An inline "Refund…" form: an amount (empty: all that is left) and a reason. `done(order)` gets the
// updated order; errors show next to the form. Each submit carries its own Idempotency-Key.
export function refundForm(order, done, currency = "USD") {
  const left = order.total_cents - order.refunded_cents;
  const amount = h("input", {
    type: "number", min: "0.01", step: "0.01", class: "narrow", name: "amount", dataset: { field: "amount_cents" }, placeholder: (left / 100).toFixed(2),
    "aria-label": `Refund amount for ${order.number} (empty: all)`,
  });
  const reason = h("input", {
    required: true, maxlength: "500", placeholder: "Reason", name: "reason", "aria-label": `Refund reason for ${order.number}`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    amount,
    reason,
    h("button", { type: "submit", "aria-label": `Refund order ${order.number}` }, "Refund"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () => {
      const body = { reason: reason.value };
      if (amount.value) body.amount_cents = toCents(amount.value);
      return api("POST", `/api/orders/${order.id}/refund`, body, { headers: { "Idempotency-Key": newKey() } });
    }).catch(() => null);
    if (result) {
      toast(`Refunded ${money(result.order.refunded_cents - order.refunded_cents, currency)} on ${order.number}.`, "ok");
      done(result.order);
    }
  });
  return h("details", { class: "inline" }, h("summary", {}, "Refund…"), form);
}

// An inline "Ship…" form: the carrier, its tracking number and, if there is one, the tracking page
// (http or https), which the buyer then sees on the order. `done(order)` gets the shipped order.
export function shipForm(order, done) {
  const carrier = h("input", {
    required: true, maxlength: "200", placeholder: "Carrier", name: "carrier", "aria-label": `Carrier for ${order.number}`,
  });
  const number = h("input", {
    required: true, maxlength: "100", placeholder: "Tracking number", name: "tracking_number",
    "aria-label": `Tracking number for ${order.number}`,
  });
  const url = h("input", {
    type: "url", maxlength: "2000", placeholder: "Tracking page (optional)", name: "tracking_url",
    "aria-label": `Tracking page for ${order.number} (optional)`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    carrier,
    number,
    url,
    h("button", { type: "submit", class: "primary", "aria-label": `Ship order ${order.number}` }, "Ship"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () => {
      const body = { carrier: carrier.value, tracking_number: number.value };
      if (url.value) body.tracking_url = url.value;
      return api("POST", `/api/orders/${order.id}/ship`, body);
    }).catch(() => null);
    if (result) {
      toast(`Order ${order.number} shipped.`, "ok");
      done(result.order);
    }
  });
  return h("details", { class: "inline" }, h("summary", {}, "Ship…"), form);
}
