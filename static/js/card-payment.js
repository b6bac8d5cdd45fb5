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
import { api, h, money, newKey, toCents } from "./api.js";

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

// Whether this server takes cards (LIVEHUB_PAYMENTS=stripe): GET /api/wallet says so.
export async function takesCards() {
  return (await api("GET", "/api/wallet").catch(() => ({}))).pays_by_card === true;
}

// A checkout refused for a short wallet (`err` is its insufficient_funds, with balance_cents and
// total_cents): offers "Pay $X.XX difference by card" in `slot` when the server takes cards. Pressing it
// sends the request again with pay_difference_by_card (`send(true)`), takes the card under `form`, and
// hands `done` the order ids once the webhook placed the order; an order refused then (stock ran out)
// is said in `slot`: the money stayed in the wallet.
export async function offerDifference(form, slot, err, send, done) {
  if (!(await takesCards())) return;
  const missing = (err.details.total_cents ?? 0) - (err.details.balance_cents ?? 0);
  const offer = h("button", { type: "button", class: "primary pay-difference" }, `Pay ${money(missing)} difference by card`);
  slot.append(" ", offer);
  offer.addEventListener("click", async () => {
    offer.disabled = true;
    let started;
    try {
      started = await send(true);
    } catch (again) {
      slot.textContent = again.message;
      return;
    }
    if (started.status !== "requires_payment") return done(started.orders.map((o) => o.id));  // the wallet covers it now
    const box = h("div", { class: "card card-payment" }, h("p", {}, `The wallet pays ${money(started.balance_cents)}, the card the rest.`));
    const cardBox = h("div");
    box.append(cardBox);
    form.after(box);
    slot.replaceChildren();
    const payment = await payByCard(cardBox, started, { label: "Pay" }).catch((loadErr) => {
      slot.textContent = loadErr.message;
      return null;
    });
    if (!payment) return;
    if (payment.outcome === "ordered") return done(payment.order_ids);
    box.remove();
    slot.textContent = payment.outcome === "not_ordered"
      ? `Your card paid ${money(payment.received_cents, payment.currency)}, but the order could not be placed (${payment.outcome_message}). The money is in your wallet.`
      : "The card payment did not go through; nothing was charged.";
  });
}

// The viewer page's "Top up by card": a dialog with the amount, then the card form, closed once the
// webhook has credited the wallet (the page's wallet line updates from its socket, or `after`).
export function quickTopUp(anchor, after) {
  const amount = h("input", { id: "quick-top-up-amount", name: "amount", type: "number", min: "1", step: "0.01", value: "25.00", class: "narrow", required: true });
  const error = h("p", { class: "form-error", role: "alert" });
  const amountForm = h("form", { class: "row compact", novalidate: true },
    h("label", { for: "quick-top-up-amount" }, "Amount"), amount, h("button", { type: "submit", class: "primary" }, "Continue"));
  const cardBox = h("div");
  const close = h("button", { type: "button" }, "Close");
  const dialog = h("dialog", { id: "quick-top-up", "aria-labelledby": "quick-top-up-title" },
    h("h2", { id: "quick-top-up-title" }, "Top up by card"), amountForm, error, cardBox, close);
  const open = h("button", { type: "button", id: "quick-top-up-open" }, "Top up by card");
  anchor.append(open, dialog);
  open.addEventListener("click", () => {
    amountForm.hidden = false;
    error.textContent = "";
    cardBox.replaceChildren();
    dialog.showModal();
  });
  close.addEventListener("click", () => dialog.close());
  amountForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let started;
    try {
      const amount_cents = toCents(amount.value);
      started = await api("POST", "/api/wallet/top-up", { amount_cents }, { headers: { "Idempotency-Key": newKey() } });
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    amountForm.hidden = true;
    const payment = await payByCard(cardBox, started, { label: "Pay" }).catch((err) => {
      error.textContent = err.message;
      return null;
    });
    if (!payment) return;
    cardBox.replaceChildren(h("p", { role: "status" }, payment.status === "succeeded"
      ? `Topped up ${money(payment.received_cents, payment.currency)}.`
      : "The card payment did not go through; nothing was charged."));
    after?.(payment);
  });
}
