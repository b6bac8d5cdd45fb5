// Shared by the seller back office and the admin console: the refund form of one order.
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
