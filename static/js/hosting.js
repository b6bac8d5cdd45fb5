// Guest hosting in the studio: the shows other shops invited you to host (accept or decline), your host id
// to give them, and what hosting earned you with a payout request (GET /api/me/hosting, POST
// /api/streams/{id}/host/accept|decline, GET /api/seller/earnings, POST /api/seller/payouts).
import { api, h, money, submitting, toast } from "./api.js";
import { showPayoutDestination } from "./payout-destination.js";

const $ = (id) => document.getElementById(id);
const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const percent = (bps) => `${(bps / 100).toFixed(bps % 100 ? 2 : 0)}%`;

// Renders the #hosting card; calls onChange() after an answer. Returns the invitations ({stream,
// host_status, host_commission_bps, host}).
export async function loadHosting(me, { onChange } = {}) {
  const card = $("hosting");
  if (!card) return [];
  const { items } = await api("GET", "/api/me/hosting");
  const earnings = await api("GET", "/api/seller/earnings");
  const hostEarned = earnings.recent.some((e) => e.role === "host");
  $("host-id").textContent = me.id;
  $("hosting-list").replaceChildren(
    ...items.map((inv) => invitationItem(inv, me, onChange)),
  );
  $("hosting-empty").hidden = items.length > 0;
  // Sellers see their earnings in the back office; a host without a shop sees them here.
  const ownEarnings = !me.seller_id && (hostEarned || items.length > 0);
  $("host-earnings").hidden = !ownEarnings;
  if (ownEarnings) renderEarnings(earnings);
  card.hidden = false;
  return items;
}

function invitationItem(inv, me, onChange) {
  const s = inv.stream;
  const li = h("li", { class: "card stack", dataset: { streamId: s.id, hostStatus: inv.host_status } });
  const planned = s.scheduled_at ? ` · ${when.format(new Date(s.scheduled_at))}` : "";
  li.append(
    h("strong", {}, `${s.title}`),
    h("span", { class: "muted small" }, `${s.seller.shop_name}${planned} · ${s.status}`),
    h("span", {}, `Your commission: ${percent(inv.host_commission_bps)} of the items sold in the show`),
  );
  const row = h("div", { class: "row" });
  if (inv.host_status === "invited") {
    row.append(
      answerButton({ ...s, host_commission_bps: inv.host_commission_bps }, "accept", `Accept hosting ${s.title}`,
        "Accept", onChange, true),
      answerButton(s, "decline", `Decline hosting ${s.title}`, "Decline", onChange, false),
    );
  } else {
    row.append(h("span", { class: "badge" }, s.status === "live" ? "LIVE" : "Accepted"));
    if (s.status === "scheduled") row.append(answerButton(s, "decline", `Withdraw from ${s.title}`, "Withdraw", onChange, false));
  }
  li.append(row);
  return li;
}

function answerButton(stream, verb, label, text, onChange, primary) {
  const button = h("button", { type: "button", class: primary ? "primary" : "", "aria-label": label }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      // Accepting names the commission shown: a changed invitation is refused, and shown again.
      const body = verb === "accept" ? { host_commission_bps: stream.host_commission_bps } : undefined;
      await api("POST", `/api/streams/${stream.id}/host/${verb}`, body);
      toast(verb === "accept" ? `You host ${stream.title}: go live when it is time.` : "Invitation declined.", "ok");
      await onChange?.(stream.id, verb);
    } catch (err) {
      toast(err.message, "error");
      button.disabled = false;
      // The shop changed the invitation meanwhile: draw it again with what it says now.
      if (err.status === 409) await onChange?.(stream.id, "changed");
    }
  });
  return button;
}

function renderEarnings(e) {
  $("host-pending").textContent = money(e.pending_cents);
  $("host-available").textContent = money(e.available_cents);
  $("host-requested").textContent = money(e.payouts_requested_cents);
  $("host-payout").querySelector("button").disabled = e.available_cents <= 0;
  // A payout needs a destination: the host adds one here (a host without a shop has no seller page).
  const slot = $("host-payout-destination");
  if (slot && !slot.firstChild) showPayoutDestination(slot).catch(() => null);
}

$("host-payout")?.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  try {
    await submitting(form, () => {
      const cents = Math.round(parseFloat(form.amount.value) * 100);
      if (!(cents > 0)) throw new Error("Enter an amount to pay out.");
      return api("POST", "/api/seller/payouts", { amount_cents: cents });
    });
    form.reset();
    toast("Payout requested: an admin sends it.", "ok");
    renderEarnings(await api("GET", "/api/seller/earnings"));
  } catch {
    /* shown next to the form */
  }
});
