// The admin console (/admin): platform figures with a chart and the books check, sellers to approve or
// suspend, every order with refunds, wallets (find, adjust, deactivate or reactivate the account), payout
// approvals, categories (admin-categories.js), the audit log (admin-audit.js) and backups (admin-backups.js).
// Everything users typed (shop names, titles, reasons) reaches the page as text, never as HTML.
import { api, h, newKey, renderHeader, showError, showTab, submitting, toast, toCents as cents } from "/static/js/api.js";
import { refundForm } from "/static/js/orders.js";
import { $, badge, emptyRow, fmt, loadPage, personCell, state, when } from "/static/js/admin-common.js";
import { accountAction } from "/static/js/admin-accounts.js";
import { loadAudit, setupAudit } from "/static/js/admin-audit.js";
import { loadBackups, setupBackups } from "/static/js/admin-backups.js";
import { loadCategories, setupCategories } from "/static/js/admin-categories.js";
import { setupReviews } from "/static/js/admin-reviews.js";

const day = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });

// -- tabs ------------------------------------------------------------------------------------------------

const loaders = {
  overview: () => Promise.all([loadStats(), loadBooks()]),
  sellers: () => loadSellers(false),
  orders: () => loadOrders(false),
  wallets: () => loadWallets(false),
  payouts: () => loadPayouts(false),
  categories: loadCategories,
  reviews: async () => $("review-id").focus(),
  audit: () => loadAudit(false),
  backups: () => loadBackups(false),
};

// -- overview: figures, chart, top streams, books ---------------------------------------------------------

function figure(label, value, note) {
  return h(
    "div",
    { class: "figure" },
    h("span", { class: "label" }, label),
    h("strong", {}, value),
    note ? h("span", { class: "muted" }, note) : null,
  );
}

async function loadStats() {
  const stats = await api("GET", `/api/admin/stats?days=${$("stats-days").value}`);
  $("stats-figures").replaceChildren(
    figure("GMV", fmt(stats.gmv_cents), `${stats.days} days`),
    figure("Orders", String(stats.orders), stats.cancelled_orders ? `${stats.cancelled_orders} cancelled` : null),
    figure("Net of refunds", fmt(stats.net_cents), stats.refunded_cents ? `${fmt(stats.refunded_cents)} refunded` : null),
    figure("Platform fees", fmt(stats.fees_cents)),
    figure("Buyers", String(stats.buyers)),
  );
  state.series = stats.series;
  drawChart();
  const top = $("top-streams").tBodies[0];
  top.replaceChildren(
    ...(stats.top_streams.length
      ? stats.top_streams.map((s) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `/watch/${s.stream_id}` }, s.title), " ", badge(s.status)),
            h("td", {}, s.shop_name),
            h("td", {}, String(s.orders)),
            h("td", { class: "price" }, fmt(s.revenue_cents)),
          ),
        )
      : [emptyRow(4, "No stream sales in this period.")]),
  );
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// Drawn at the width it is shown at, so its labels keep their size on a phone; again when that changes.
function drawChart() {
  const box = $("stats-chart");
  if (!state.series || !box.clientWidth) return;
  const width = Math.max(300, Math.round(box.clientWidth));
  if (box.dataset.width === String(width) && box.dataset.series === JSON.stringify(state.series)) return;
  box.dataset.width = String(width);
  box.dataset.series = JSON.stringify(state.series);
  box.replaceChildren(chart(state.series, width));
}

// One bar per day of gross sales, drawn as inline SVG (no library); each bar's <title> gives its figures.
function chart(series, width) {
  const height = 230;
  const pad = { top: 16, right: 12, bottom: 28, left: 64 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(...series.map((d) => d.gmv_cents), 0);
  const slot = plotW / series.length;
  const barW = Math.max(1, slot * 0.72);
  const best = series.reduce((a, b) => (b.gmv_cents > a.gmv_cents ? b : a), series[0]);
  const total = series.reduce((sum, d) => sum + d.gmv_cents, 0);
  const label = max
    ? `Sales per day, ${day(series[0].day)} to ${day(series.at(-1).day)}: ${fmt(total)} in all, ` +
      `the best day ${day(best.day)} with ${fmt(best.gmv_cents)}.`
    : `No sales from ${day(series[0].day)} to ${day(series.at(-1).day)}.`;
  const root = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
    preserveAspectRatio: "xMidYMid meet",
  });
  const baseline = pad.top + plotH;
  root.append(
    svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: baseline, y2: baseline }),
    svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: pad.top, y2: pad.top, "stroke-dasharray": "3 4" }),
    svg("text", { x: pad.left - 6, y: pad.top + 4, "text-anchor": "end" }, fmt(max)),
    svg("text", { x: pad.left - 6, y: baseline + 4, "text-anchor": "end" }, fmt(0)),
  );
  series.forEach((d, i) => {
    const barH = max ? Math.max(d.gmv_cents ? 2 : 0, (d.gmv_cents / max) * plotH) : 0;
    const x = pad.left + i * slot + (slot - barW) / 2;
    root.append(
      svg(
        "rect",
        { class: "bar", x: x.toFixed(1), y: (baseline - barH).toFixed(1), width: barW.toFixed(1), height: barH.toFixed(1) },
        svg("title", {}, `${day(d.day)}: ${fmt(d.gmv_cents)} in ${d.orders} order${d.orders === 1 ? "" : "s"}` +
          (d.net_cents !== d.gmv_cents ? ` (${fmt(d.net_cents)} after refunds)` : "")),
      ),
    );
  });
  const ticks = [0, Math.floor((series.length - 1) / 2), series.length - 1].filter((v, i, a) => a.indexOf(v) === i);
  for (const i of ticks) {
    const anchor = i === 0 ? "start" : i === series.length - 1 ? "end" : "middle";
    const x = i === 0 ? pad.left : i === series.length - 1 ? width - pad.right : pad.left + (i + 0.5) * slot;
    root.append(svg("text", { x, y: height - 8, "text-anchor": anchor }, day(series[i].day)));
  }
  return root;
}

async function loadBooks() {
  const books = await api("GET", "/api/admin/books");
  const verdict = $("books-verdict");
  verdict.className = books.balanced ? "ok-text" : "bad-text";
  verdict.textContent = books.balanced
    ? "Balanced: every balance equals its entries, every transaction sums to zero."
    : `Not balanced: ${books.mismatched_accounts} mismatched account(s), ` +
      `${books.unbalanced_transactions} unbalanced transaction(s).`;
  const rows = [
    ["Money in", books.money_in_cents],
    ["Money out", books.money_out_cents],
    ["Held", books.held_cents],
    ["in wallets", books.wallets_cents],
    ["in earnings", books.earnings_cents],
    ["in requested payouts", books.payouts_requested_cents],
    ["platform fees", books.platform_cents],
  ];
  $("books-table").tBodies[0].replaceChildren(
    ...rows.map(([name, value], i) =>
      h("tr", {}, h(i > 2 ? "td" : "th", { scope: i > 2 ? null : "row" }, name), h("td", { class: "price" }, fmt(value))),
    ),
  );
}

// -- sellers ---------------------------------------------------------------------------------------------

function loadSellers(more) {
  const status = $("sellers-status").value;
  const params = { limit: "50", ...(status ? { status } : {}) };
  return loadPage("sellers", "/api/admin/sellers", params, $("sellers-table").tBodies[0], sellerRow, 6,
    status === "pending" ? "No applications waiting." : "No sellers.", more);
}

function sellerRow(seller) {
  const row = h("tr", { dataset: { sellerId: seller.id } });
  fillSellerRow(row, seller);
  return row;
}

function fillSellerRow(row, seller) {
  const act = (verb, label) =>
    h(
      "button",
      {
        type: "button",
        class: verb === "approve" ? "primary" : null,
        "aria-label": `${label} ${seller.shop_name}`,
        onclick: async (event) => {
          event.target.disabled = true;
          try {
            const result = await api("POST", `/api/admin/sellers/${seller.id}/${verb}`);
            fillSellerRow(row, result.seller);
            toast(`${result.seller.shop_name} is ${result.seller.status}.`, "ok");
          } catch (err) {
            event.target.disabled = false;
            showError(err);
          }
        },
      },
      label,
    );
  const actions = h("div", { class: "row compact" });
  if (seller.status !== "approved") actions.append(act("approve", seller.status === "suspended" ? "Reinstate" : "Approve"));
  if (seller.status !== "suspended") actions.append(act("suspend", "Suspend"));
  row.replaceChildren(
    h("td", {}, h("strong", {}, seller.shop_name), seller.description ? h("div", { class: "muted" }, seller.description) : null),
    personCell(seller.user_id),
    h("td", {}, when(seller.created_at)),
    h("td", {}, String(seller.products)),
    h("td", {}, badge(seller.status)),
    h("td", {}, actions),
  );
}

// -- orders ----------------------------------------------------------------------------------------------

function loadOrders(more) {
  const status = $("orders-status").value;
  const params = { limit: "25", ...(status ? { status } : {}) };
  return loadPage("orders", "/api/admin/orders", params, $("orders-table").tBodies[0], orderRow, 7, "No orders.", more);
}

function orderRow(order) {
  const row = h("tr", { dataset: { orderId: order.id } });
  fillOrderRow(row, order);
  return row;
}

function fillOrderRow(row, order) {
  const items = order.items.map((i) => `${i.quantity} \u00d7 ${i.title} (${i.sku})`).join("; ");
  const total = [h("span", { class: "price" }, fmt(order.total_cents))];
  if (order.refunded_cents) total.push(h("div", { class: "muted" }, `refunded ${fmt(order.refunded_cents)}`));
  const refundable = ["paid", "shipped", "delivered", "partially_refunded"].includes(order.status);
  row.replaceChildren(
    h("td", {}, order.number, order.stream_id ? h("div", { class: "muted" }, "in a stream") : null),
    h("td", {}, when(order.created_at)),
    personCell(order.buyer_id),
    h("td", {}, items),
    h("td", {}, ...total),
    h("td", {}, badge(order.status)),
    h("td", {}, refundable ? refundForm(order, (updated) => fillOrderRow(row, updated), state.currency) : ""),
  );
}

// -- wallets ---------------------------------------------------------------------------------------------

function loadWallets(more) {
  const q = $("wallet-q").value.trim();
  const params = { limit: "25", ...(q ? { q } : {}) };
  return loadPage("wallets", "/api/admin/wallets", params, $("wallets-table").tBodies[0], walletRow, 6,
    "No user matches.", more);
}

function walletRow(w) {
  const row = h("tr", { dataset: { userId: w.user_id } });
  fillWalletRow(row, w);
  return row;
}

// `note`: what the last account action on this row did, kept in view.
function fillWalletRow(row, w, note = null) {
  const balance = h("td", { class: "price" }, fmt(w.balance_cents));
  const amount = h("input", {
    type: "number", step: "0.01", required: true, class: "narrow", placeholder: "+5.00 / -5.00",
    "aria-label": `Adjustment for ${w.email}`,
  });
  const reason = h("input", {
    required: true, maxlength: "200", placeholder: "Reason", "aria-label": `Adjustment reason for ${w.email}`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    amount,
    reason,
    h("button", { type: "submit", "aria-label": `Apply adjustment to ${w.email}` }, "Apply"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () => {
      const change = cents(amount.value, { signed: true });
      if (change === 0) throw new Error("An adjustment cannot be zero.");
      return api("POST", `/api/admin/wallets/${w.user_id}/adjust`, { amount_cents: change, reason: reason.value },
        { headers: { "Idempotency-Key": newKey() } });
    }).catch(() => null);
    if (result) {
      balance.textContent = fmt(result.balance_cents);
      form.reset();
      toast(`${w.email}'s wallet is now ${fmt(result.balance_cents)}.`, "ok");
    }
  });
  const actions = h("div", { class: "row" }, h("details", { class: "inline" }, h("summary", {}, "Adjust…"), form));
  // An admin cannot deactivate their own account (the API refuses): no button to try.
  if (w.user_id !== state.me) actions.append(accountAction(w, (fresh, said) => fillWalletRow(row, fresh, said)));
  row.replaceChildren(
    h("td", {}, h("strong", {}, w.display_name), h("div", { class: "muted" }, w.email),
      w.seller_status ? badge(w.seller_status, `seller: ${w.seller_status}`) : null,
      w.deactivated_at ? badge("deactivated", "Deactivated") : null,
      note ? h("div", { class: "muted", role: "status" }, note) : null),
    balance,
    h("td", { class: "price" }, fmt(w.earnings_pending_cents)),
    h("td", { class: "price" }, fmt(w.earnings_available_cents)),
    h("td", { class: "price" }, fmt(w.payouts_requested_cents)),
    h("td", {}, actions),
  );
}

// -- payouts ---------------------------------------------------------------------------------------------

function loadPayouts(more) {
  const status = $("payouts-status").value;
  const params = { limit: "50", ...(status ? { status } : {}) };
  return loadPage("payouts", "/api/admin/payouts", params, $("payouts-table").tBodies[0], payoutRow, 6,
    status === "requested" ? "No payouts waiting." : "No payouts.", more);
}

function payoutRow(payout) {
  const row = h("tr", { dataset: { payoutId: payout.id } });
  fillPayoutRow(row, payout);
  return row;
}

// The destination a payout pays, masked as the payout copied it when asked for.
function maskedDestination(d) {
  if (!d) return "no destination on record";
  return `${d.holder_name} · ${d.kind === "iban" ? "IBAN" : "account"} …${d.last4} · ${d.country}`;
}

// The bank details in full, to pay by hand: fetched only when asked for (each look is in the audit log).
function bankDetails(payout) {
  const slot = h("div", { class: "muted" });
  const show = h("button", { type: "button", "aria-label": `Show bank details of the payout of ${fmt(payout.amount_cents)}` }, "Show bank details");
  show.addEventListener("click", async () => {
    show.disabled = true;
    try {
      const { destination: d } = await api("GET", `/api/admin/payouts/${payout.id}`);
      slot.replaceChildren(
        d
          ? h("dl", { class: "bank-details" },
            h("dt", {}, "Holder"), h("dd", {}, d.holder_name),
            h("dt", {}, d.kind === "iban" ? "IBAN" : "Account number"), h("dd", {}, d.number),
            ...(d.routing_number ? [h("dt", {}, "Routing number"), h("dd", {}, d.routing_number)] : []),
            h("dt", {}, "Country"), h("dd", {}, d.country),
            ...(d.connect_account_id ? [h("dt", {}, "Stripe account"), h("dd", {}, d.connect_account_id)] : []))
          : "No destination on record for this payout.",
      );
      show.remove();
    } catch (err) {
      show.disabled = false;
      showError(err);
    }
  });
  return h("div", {}, show, slot);
}

// A decision that takes a reason (reject, fail): the form that sends it and redraws the row.
function reasonForm(row, payout, action, { placeholder, reasonLabel, button, buttonLabel, done }) {
  const reason = h("input", { required: true, maxlength: "200", placeholder, "aria-label": reasonLabel });
  const form = h("form", { class: "row compact" }, reason,
    h("button", { type: "submit", "aria-label": buttonLabel }, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () =>
      api("POST", `/api/admin/payouts/${payout.id}/${action}`, { reason: reason.value }),
    ).catch(() => null);
    if (result) {
      fillPayoutRow(row, result.payout);
      toast(done, "ok");
    }
  });
  return form;
}

function fillPayoutRow(row, payout) {
  const actions = h("div", { class: "row compact" });
  const amountText = fmt(payout.amount_cents);
  if (payout.status === "requested") {
    // Approving: with manual payouts the admin has paid by bank transfer and types its reference.
    const reference = h("input", {
      name: "reference", maxlength: "200", placeholder: "Bank reference",
      "aria-label": `Bank transfer reference for the payout of ${amountText}`,
    });
    const approve = h(
      "form",
      { class: "row compact" },
      reference,
      h("button", { type: "submit", class: "primary", "aria-label": `Approve payout of ${amountText}` }, "Approve"),
    );
    approve.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = reference.value.trim() ? { reference: reference.value.trim() } : {};
      const result = await submitting(approve, () =>
        api("POST", `/api/admin/payouts/${payout.id}/approve`, body),
      ).catch(() => null);
      if (result) {
        fillPayoutRow(row, result.payout);
        toast(`Payout of ${amountText} sent.`, "ok");
      }
    });
    const reject = reasonForm(row, payout, "reject", {
      placeholder: "Reason", reasonLabel: `Reason to reject the payout of ${amountText}`,
      button: "Reject", buttonLabel: `Reject payout of ${amountText}`,
      done: `Payout of ${amountText} rejected; the amount is available to the seller again.`,
    });
    actions.append(approve, h("details", { class: "inline" }, h("summary", {}, "Reject…"), reject));
  } else if (payout.status === "paid") {
    // The bank returned it: the amount is the seller's available earnings again.
    const fail = reasonForm(row, payout, "fail", {
      placeholder: "Why it came back", reasonLabel: `Why the payout of ${amountText} came back`,
      button: "Mark returned", buttonLabel: `Mark the payout of ${amountText} as returned`,
      done: `Payout of ${amountText} marked returned; the amount is available to the seller again.`,
    });
    actions.append(h("details", { class: "inline" }, h("summary", {}, "Came back…"), fail));
  }
  row.replaceChildren(
    h("td", {}, when(payout.requested_at)),
    personCell(payout.user_id),
    h("td", { class: "price" }, amountText),
    h("td", {}, maskedDestination(payout.destination), payout.destination ? bankDetails(payout) : null),
    h("td", {}, badge(payout.status === "paid" ? "paid-out" : payout.status, payout.status),
      payout.provider_reference ? h("div", { class: "muted" }, `ref. ${payout.provider_reference}`) : null,
      payout.reason ? h("div", { class: "muted" }, payout.reason) : null),
    h("td", {}, actions),
  );
}

// -- start ----------------------------------------------------------------------------------------------

async function start() {
  const user = await renderHeader();
  $("loading").hidden = true;
  if (!user || !user.roles.includes("admin")) {
    $("denied").hidden = false;
    if (user) {
      $("denied-text").textContent = "This page is for admins, and your account is not one.";
      $("denied-signin").hidden = true;
    }
    return;
  }
  $("console").hidden = false;
  state.me = user.id;
  const wallet = await api("GET", "/api/wallet").catch(() => null);
  if (wallet) state.currency = wallet.currency;
  $("stats-days").addEventListener("change", () => loadStats().catch(showError));
  $("books-refresh").addEventListener("click", () => loadBooks().catch(showError));
  for (const name of ["sellers", "orders", "payouts"]) {
    const load = { sellers: loadSellers, orders: loadOrders, payouts: loadPayouts }[name];
    $(`${name}-status`).addEventListener("change", () => load(false).catch(showError));
    $(`${name}-more`).addEventListener("click", () => load(true).catch(showError));
  }
  $("wallet-search").addEventListener("submit", (event) => {
    event.preventDefault();
    loadWallets(false).catch(showError);
  });
  $("wallets-more").addEventListener("click", () => loadWallets(true).catch(showError));
  setupCategories();
  setupAudit();
  setupBackups();
  setupReviews();
  window.addEventListener("hashchange", () => showTab(loaders));
  new ResizeObserver(drawChart).observe($("stats-chart"));
  showTab(loaders);
}

start().catch(showError);
