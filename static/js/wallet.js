// The wallet (/wallet): the balance, every entry with the balance after it, and topping up (at once with
// the development provider, or by card through Stripe).
import { api, h, money, newKey, showError, submitting, toast, toCents } from "./api.js";
import { payByCard } from "./card-payment.js";
import { dateTime, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
let currency = "USD";
let cursor = null;

const WHAT = {
  deposit: "Top-up",
  purchase: "Purchase",
  refund: "Refund",
  adjustment: "Adjustment",
  payout: "Payout",
};

function entryRow(e) {
  const what = WHAT[e.type] || e.type.replace(/_/g, " ");
  const link = e.order_id ? h("a", { href: `/orders/${e.order_id}` }, "order") : null;
  return h("tr", { dataset: { entry: String(e.id) } },
    h("td", {}, dateTime.format(new Date(e.created_at))),
    h("td", {}, what, link ? " · " : "", link, e.memo ? h("span", { class: "muted small" }, ` ${e.memo}`) : null),
    h("td", { class: `amount ${e.amount_cents < 0 ? "bad-text" : "ok-text"}` }, (e.amount_cents > 0 ? "+" : "") + money(e.amount_cents, currency)),
    h("td", { class: "amount" }, money(e.balance_after_cents, currency)));
}

async function loadBalance() {
  const wallet = await api("GET", "/api/wallet");
  currency = wallet.currency;
  $("balance").textContent = money(wallet.balance_cents, currency);
}

async function loadHistory(more = false) {
  const after = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  const page = await api("GET", `/api/wallet/transactions?limit=20${after}`);
  const body = $("history").tBodies[0];
  if (more) body.append(...page.items.map(entryRow));
  else body.replaceChildren(...page.items.map(entryRow));
  cursor = page.next_cursor;
  $("history-more").hidden = !cursor;
  $("history-empty").hidden = body.children.length > 0;
}

$("top-up").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = await submitting(form, () => {
    const amount_cents = toCents($("top-up-amount").value);
    // A fresh key per press: each press is its own top-up; a retried request is not.
    return api("POST", "/api/wallet/top-up", { amount_cents }, { headers: { "Idempotency-Key": newKey() } });
  }).catch(() => null);
  if (result?.status === "requires_payment") {
    form.reset();
    await payCard(result);
  } else if (result) {
    form.reset();
    $("balance").textContent = money(result.balance_cents, result.currency);
    toast(`Topped up. Balance: ${money(result.balance_cents, result.currency)}.`, "ok");
    await loadHistory();
  }
});

// A card top-up (LIVEHUB_PAYMENTS=stripe): the card form under the top-up form until Stripe's webhook has
// credited the wallet (card-payment.js).
async function payCard(started) {
  const box = $("card-payment");
  box.hidden = false;
  $("top-up").hidden = true;
  try {
    const payment = await payByCard(box, started, { label: "Pay" });
    if (payment.status === "succeeded") toast(`Topped up ${money(payment.received_cents, payment.currency)}.`, "ok");
    else toast("The card payment did not go through; nothing was charged.", "error");
    await loadBalance();
    await loadHistory();
  } catch (err) {
    showError(err);
  } finally {
    box.hidden = true;
    box.replaceChildren();
    $("top-up").hidden = false;
  }
}

// A purchase, refund or top-up elsewhere (another tab, a live show): the bell's socket says so (bell.js).
window.addEventListener("livehub:wallet", (event) => {
  $("balance").textContent = money(event.detail.balance_cents, currency);
  loadHistory().catch(() => null);
});

$("history-more").addEventListener("click", () => loadHistory(true).catch(showError));
requireUser().then(async () => {
  shopHeader();
  await loadBalance();
  await loadHistory();
}).catch(showError);
