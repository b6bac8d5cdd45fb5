// Paying a card payment in the page: the wallet's top-up, a checkout's difference, the viewer's quick top-up.
// The server opened the payment (status "requires_payment" with client_secret, publishable_key and
// stripe_js_url); this loads Stripe.js from that URL, shows Stripe's card Element, and when the buyer
// pays, has Stripe.js tokenize the card and the server confirm the payment with the token (POST
// /api/payments/{id}/card), running Stripe's 3-D Secure step in the page when Stripe asks for one. Then it
// polls the payment until the webhook (or the reconciliation) has settled it: the page never credits
// anything itself.
//
// Why the card Element and createToken rather than the newer Payment Element and confirmPayment: the card
// Element is still supported by Stripe.js, and it is what the Stripe.js stand-in of the test server
// (localstripe) implements, so the same code runs in the browser tests and in production.
import { api, h, money } from "./api.js";

const loading = {};

function loadStripe(url) {
  loading[url] ||= new Promise((resolve, reject) => {
    const script = h("script", { src: url });
    script.addEventListener("load", () => resolve(window.Stripe));
    script.addEventListener("error", () => {
      delete loading[url];
      reject(new Error("The card form could not be loaded. Try again."));
    });
    document.head.append(script);
  });
  return loading[url];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The payment until it is settled: status no longer pending (and, for a checkout's, its order tried).
async function settled(paymentId, onWait) {
  for (let waited = 0; ; waited += 1) {
    const payment = await api("GET", `/api/payments/${paymentId}`);
    const done = payment.status !== "pending" && (payment.purpose !== "order" || payment.status !== "succeeded" || payment.outcome);
    if (done) return payment;
    onWait(waited);
    await sleep(Math.min(500 + waited * 250, 3000));
  }
}

// Shows the card form for `started` in `box` and resolves with the settled payment once the card is
// paid (rejects only if Stripe.js cannot load). Stripe's errors are shown next to the form, where the
// buyer may try again.
export async function payByCard(box, started, { label = "Pay" } = {}) {
  const Stripe = await loadStripe(started.stripe_js_url);
  const stripe = Stripe(started.publishable_key);
  const cardBox = h("div", { class: "card-element", id: `card-element-${started.payment_id}` });
  const error = h("p", { class: "form-error card-error", role: "alert" });
  const status = h("p", { class: "muted card-status", "aria-live": "polite" });
  const pay = h("button", { type: "submit", class: "primary" }, `${label} ${money(started.amount_cents, started.currency)}`);
  const form = h("form", { class: "stack card-form", novalidate: true }, h("label", {}, "Card"), cardBox, pay, error, status);
  box.replaceChildren(form);
  const card = stripe.elements().create("card");
  card.mount(cardBox);

  return new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      pay.disabled = true;
      error.textContent = "";
      try {
        const made = await stripe.createToken(card);
        if (made.error) throw new Error(made.error.message || "The card was not accepted.");
        const confirmed = await api("POST", `/api/payments/${started.payment_id}/card`, { token: made.token.id });
        if (confirmed.status === "requires_action") {
          // 3-D Secure: Stripe.js shows the bank's check (the stand-in, a dialog of its own).
          const checked = await stripe.confirmCardPayment(confirmed.client_secret);
          if (checked.error) throw new Error(checked.error.message || "The card check failed.");
        }
      } catch (err) {
        error.textContent = err.message;
        pay.disabled = false;
        return;
      }
      card.unmount?.();
      form.replaceChildren(status);
      status.textContent = "Processing…";
      const payment = await settled(started.payment_id, (waited) => {
        if (waited === 20) status.textContent = "Processing… (your bank is taking a while; this page updates when it is done)";
      });
      resolve(payment);
    });
  });
}
