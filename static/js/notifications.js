// The inbox (/notifications): your notifications newest first, each linking to what it is about; opening
// one marks it read, and "Mark all read" marks them all. New ones arrive live (bell.js, /ws/me). Below,
// which kinds are also emailed (GET/PUT /api/me/notification-settings).
import { api, h, money, showError, submitting, toast } from "./api.js";
import { refreshUnread, setUnread, unreadCount } from "./bell.js";
import { dateTime, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
let cursor = null;

// What each kind is called in the email settings.
const LABELS = {
  order_placed: "Order confirmations (with digital codes)",
  order_shipped: "Orders shipped",
  order_delivered: "Orders delivered",
  order_refunded: "Refunds",
  return_decided: "Return decisions",
  payout_decided: "Payout decisions",
  seller_application_decided: "Your shop application",
  review_reply: "Answers to your reviews",
  ticket_opened: "New support tickets",
  ticket_reply: "Support ticket replies",
  low_stock: "Low stock",
  show_scheduled: "Shows scheduled by shops you follow",
  stream_live: "Shops you follow going live",
  show_reminder: "Show reminders",
  earnings_available: "Earnings available",
  host_invited: "Invitations to host a show",
  host_answered: "Guest hosts' answers to your invitations",
  backup_failed: "Failed backups (admins)",
  card_order_failed: "Card payments whose order could not be placed",
  payout_destination_changed: "Changes to where your payouts go",
};

const order = (p) => `order ${p.number || ""}`.trim();

// A notification as a sentence and the page it is about.
export function describe(n) {
  const p = n.payload || {};
  const orderPage = p.order_id ? `/orders/${p.order_id}` : "/orders";
  switch (n.kind) {
    case "order_placed": {
      const codes = (p.items || []).reduce((k, i) => k + (i.codes || []).length, 0);
      const extra = codes ? ` · ${codes} code${codes === 1 ? "" : "s"} inside` : "";
      return { text: `Your ${order(p)} from ${p.shop_name} is placed: ${money(p.total_cents || 0)}${extra}`, href: orderPage };
    }
    case "order_shipped":
      return { text: `Your ${order(p)} shipped with ${p.carrier} (tracking ${p.tracking_number})`, href: orderPage };
    case "order_delivered":
      return { text: `Your ${order(p)} from ${p.shop_name} was delivered`, href: orderPage };
    case "order_refunded":
      return {
        text: p.cancelled
          ? `Your ${order(p)} was cancelled: ${money(p.amount_cents || 0)} back in your wallet`
          : `${money(p.amount_cents || 0)} refunded on your ${order(p)}`,
        href: orderPage,
      };
    case "return_decided":
      return {
        text: p.approved
          ? `Your return for ${order(p)} was approved${p.refund_cents ? `: ${money(p.refund_cents)} refunded` : ""}`
          : `Your return for ${order(p)} was refused${p.reason ? `: ${p.reason}` : ""}`,
        href: orderPage,
      };
    case "payout_decided":
      return {
        text: p.approved
          ? `Your payout of ${money(p.amount_cents || 0)} was sent`
          : `Your payout of ${money(p.amount_cents || 0)} ${p.status === "failed" ? "came back" : "was refused"}${p.reason ? `: ${p.reason}` : ""}`,
        href: "/seller#earnings",
      };
    case "seller_application_decided":
      return {
        text: p.approved ? `Your shop ${p.shop_name} is approved` : `Your shop ${p.shop_name} was not approved`,
        href: "/seller",
      };
    case "review_reply":
      return { text: `${p.shop_name} answered your review of ${p.title}`, href: `/products/${p.product_id}` };
    case "earnings_available":
      return { text: `${money(p.amount_cents || 0)} of your earnings are available`, href: "/seller#earnings" };
    case "host_invited":
      return {
        text: `${p.shop_name || "A shop"} invites you to host ${p.title || "a show"} for ${((p.host_commission_bps || 0) / 100).toFixed(2)}% of its sales`,
        href: "/studio#hosting",
      };
    case "host_answered":
      return {
        text: `${p.host?.name || "Your guest host"} ${p.accepted ? "accepted" : "declined"} to host ${p.title || "your show"}`,
        href: p.path || "/studio",
      };
    case "stream_live":
      return { text: `${p.shop_name} is live: ${p.title}`, href: `/watch/${p.stream_id}` };
    case "show_scheduled":
      return { text: `${p.shop_name || "A shop you follow"} scheduled a show: ${p.title || ""}`, href: `/watch/${p.stream_id}` };
    case "show_reminder":
      return { text: `Starting soon: ${p.title || "a show"}${p.shop_name ? ` by ${p.shop_name}` : ""}`, href: `/watch/${p.stream_id}` };
    case "ticket_opened":
    case "ticket_reply":
      return {
        text: n.kind === "ticket_reply"
          ? `${p.from?.display_name || "Someone"} replied on the ticket: ${p.subject || ""}`
          : `New support ticket: ${p.subject || ""}`,
        href: p.path || (p.ticket_id ? `/support/${p.ticket_id}` : "/support"),
      };
    case "backup_failed":
      return { text: `A backup failed: ${p.error || "see the admin page"}`, href: p.path || "/admin#backups" };
    case "card_order_failed":
      return {
        text: `Your card paid ${money(p.amount_cents || 0)}, but the order could not be placed${p.reason ? ` (${p.reason})` : ""}: the money is in your wallet`,
        href: p.path || "/wallet",
      };
    case "payout_destination_changed":
      return {
        text: p.change === "removed"
          ? `Your payout destination (ending ${p.last4 || "?"}) was removed: not you? Change your password`
          : `Your payouts now go to the account ending ${p.last4 || "?"} (${p.country || ""}): not you? Change your password`,
        href: p.path || "/seller#earnings",
      };
    case "low_stock":
      return { text: `Low stock: ${p.title || p.sku || "a product"}${p.stock !== undefined ? ` (${p.stock} left)` : ""}`, href: "/seller#stock" };
    default:
      return { text: LABELS[n.kind] || n.kind, href: p.path || "/notifications" };
  }
}

async function markRead(ids) {
  const res = await api("POST", "/api/notifications/read", ids ? { ids } : {});
  await refreshUnread();
  return res.marked;
}

function noticeItem(n) {
  const { text, href } = describe(n);
  const li = h("li", { class: `card notice${n.read_at ? "" : " unread"}`, dataset: { id: n.id || "", kind: n.kind } });
  const link = h("a", { href }, text);
  const when = h("span", { class: "muted small when" }, dateTime.format(new Date(n.created_at)));
  const parts = [h("div", { class: "stack" }, link, when)];
  if (!n.read_at && n.id) {
    const read = h("button", { type: "button", class: "link small", "aria-label": `Mark read: ${text}` }, "Mark read");
    read.addEventListener("click", async () => {
      read.disabled = true;
      await markRead([n.id]).catch(showError);
      n.read_at = new Date().toISOString();
      li.replaceWith(noticeItem(n));
    });
    parts.push(read);
    // Following the link marks it read first (the page it leads to is what it was about).
    link.addEventListener("click", (event) => {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      markRead([n.id]).catch(() => null).finally(() => (location.href = href));
    });
  }
  li.append(...parts);
  return li;
}

function drawEmpty() {
  $("notices-empty").hidden = $("notices").children.length > 0;
  $("mark-all").disabled = unreadCount() === 0 && !$("notices").querySelector(".unread");
}

async function load(more = false) {
  const after = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  const page = await api("GET", `/api/notifications?limit=20${after}`);
  $("loading").hidden = true;
  if (more) $("notices").append(...page.items.map(noticeItem));
  else $("notices").replaceChildren(...page.items.map(noticeItem));
  cursor = page.next_cursor;
  $("notices-more").hidden = !cursor;
  drawEmpty();
}

async function loadSettings() {
  const form = $("email-settings");
  const data = await api("GET", "/api/me/notification-settings");
  $("email-kinds").replaceChildren(
    ...data.kinds.map((k) =>
      h("label", { class: "row" },
        h("input", { type: "checkbox", name: k.kind, checked: k.email }),
        LABELS[k.kind] || k.kind)),
  );
  form.querySelector("button[type=submit]").disabled = false;
}

$("email-settings").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const kinds = [...form.querySelectorAll("input[type=checkbox]")].map((c) => ({ kind: c.name, email: c.checked }));
  const saved = await submitting(form, () => api("PUT", "/api/me/notification-settings", { kinds })).catch(() => null);
  if (saved) toast("Email choices saved.", "ok");
});

$("mark-all").addEventListener("click", async () => {
  $("mark-all").disabled = true;
  await markRead(null).catch(showError);
  setUnread(0);
  await load();
});

$("notices-more").addEventListener("click", () => load(true).catch(showError));

// A new one while the page is open goes on top.
window.addEventListener("livehub:notification", (event) => {
  if (!event.detail.id || document.querySelector(`#notices [data-id="${event.detail.id}"]`)) return;
  $("notices").prepend(noticeItem(event.detail));
  drawEmpty();
});

requireUser()
  .then(async () => {
    await shopHeader();
    await load();
    document.body.dataset.inbox = "loaded";
    await loadSettings();
  })
  .catch(showError);
