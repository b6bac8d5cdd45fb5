// Support (/support): your tickets, your shop's (a seller), the admin queue (oldest without a reply first,
// by status and age), and a new ticket, optionally about one of your orders (/support?order=ID picks it).
// /support/{id}: one ticket's conversation, a reply, and its status. Replies arrive live over /ws/me.
import { api, h, showError, showTab, submitting, toast, wsUrl } from "./api.js";
import { dateTime, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
const ticketId = (location.pathname.match(/^\/support\/([^/]+)$/) || [])[1];
let me = null;
let shown = null; // the ticket on screen (/support/{id})

const TICKET_STATUS = {
  open: "Open",
  waiting: "Waiting on the customer",
  resolved: "Resolved",
  closed: "Closed",
};
const ROLE_WORDS = { opener: "customer", seller: "shop", admin: "LiveHub support" };

function statusBadge(status) {
  return h("span", { class: `badge ticket-${status}`, dataset: { status } }, TICKET_STATUS[status] || status);
}

function when(iso) {
  return dateTime.format(new Date(iso));
}

// ---- the lists ----------------------------------------------------------------------------------------

function ticketItem(t) {
  const about = [t.order ? `Order ${t.order.number}` : "General question"];
  if (t.seller && t.opener.id === me.id) about.push(t.seller.shop_name);
  if (t.opener.id !== me.id) about.push(`from ${t.opener.display_name}`);
  const last = `last message ${when(t.last_reply_at)} by the ${ROLE_WORDS[t.last_reply_by]}`;
  return h(
    "li",
    { class: "card ticket-item", dataset: { ticket: t.id, status: t.status } },
    h("div", { class: "row spread" }, h("a", { href: `/support/${t.id}` }, t.subject), statusBadge(t.status)),
    h("p", { class: "muted small" }, `${about.join(" · ")} · ${t.message_count} message${t.message_count === 1 ? "" : "s"} · ${last}`),
  );
}

// Each list: where its items go, the query it asks, and its cursor for "Show more".
const lists = {
  mine: { params: () => ({ scope: "mine" }), cursor: null },
  shop: { params: () => ({ scope: "shop" }), cursor: null },
  queue: {
    params: () => {
      const form = $("queue-filters");
      const p = { sort: "oldest" };
      if (form.elements.status.value) p.status = form.elements.status.value;
      if (form.elements.older_than_s.value) p.older_than_s = form.elements.older_than_s.value;
      return p;
    },
    cursor: null,
  },
};

async function loadList(name, more = false) {
  const list = lists[name];
  const params = new URLSearchParams({ limit: "20", ...list.params() });
  if (more && list.cursor) params.set("cursor", list.cursor);
  // Filters changed quickly send several requests: only the latest one's answer is shown.
  const asked = (list.asked = (list.asked || 0) + 1);
  const page = await api("GET", `/api/tickets?${params}`);
  if (asked !== list.asked) return;
  const ul = $(`${name}-list`);
  if (more) ul.append(...page.items.map(ticketItem));
  else ul.replaceChildren(...page.items.map(ticketItem));
  list.cursor = page.next_cursor;
  $(`${name}-more`).hidden = !list.cursor;
  $(`${name}-empty`).hidden = ul.children.length > 0;
  ul.dataset.loaded = "true";
}

// The buyer's recent orders for the "About an order" choice; `wanted` (from ?order=) is picked.
async function loadOrders(wanted) {
  const select = $("ticket-order");
  const page = await api("GET", "/api/orders?limit=50");
  const orders = page.items;
  if (wanted && !orders.some((o) => o.id === wanted)) {
    // An older order named in the link: fetched on its own (404 if it is not yours).
    const one = await api("GET", `/api/orders/${encodeURIComponent(wanted)}`).catch(() => null);
    if (one && one.order.buyer_id === me.id) orders.unshift(one.order);
  }
  select.append(...orders.map((o) => h("option", { value: o.id }, `Order ${o.number} · ${when(o.created_at)}`)));
  if (wanted && orders.some((o) => o.id === wanted)) {
    select.value = wanted;
    $("new-ticket").open = true;
    $("ticket-subject").focus();
  }
  select.dataset.loaded = "true";
}

async function showDesk() {
  $("shop-tab").hidden = !me.seller_id;
  $("queue-tab").hidden = !me.roles.includes("admin");
  const loaders = {
    mine: () => loadList("mine"),
    shop: () => loadList("shop"),
    queue: () => loadList("queue"),
  };
  window.addEventListener("hashchange", () => showTab(loaders));
  for (const name of Object.keys(lists)) $(`${name}-more`).addEventListener("click", () => loadList(name, true).catch(showError));
  $("queue-filters").addEventListener("change", () => loadList("queue").catch(showError));
  $("ticket-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const result = await submitting(form, () => {
      const body = { subject: form.elements.subject.value.trim(), body: form.elements.body.value };
      if (form.elements.order_id.value) body.order_id = form.elements.order_id.value;
      return api("POST", "/api/tickets", body);
    }).catch(() => null);
    if (result) location.href = `/support/${result.ticket.id}`;
  });
  $("loading").hidden = true;
  $("desk").hidden = false;
  showTab(loaders);
  await loadOrders(new URLSearchParams(location.search).get("order"));
}

// ---- one ticket ---------------------------------------------------------------------------------------

function messageItem(m, t) {
  const mine = m.author.id === me.id;
  // The shop answers under its name (who in it wrote is for the shop to know).
  const name = mine ? "You" : m.role === "seller" && t.seller ? t.seller.shop_name : m.author.display_name;
  return h(
    "li",
    { class: `card message by-${m.role}${mine ? " mine" : ""}`, dataset: { message: m.id, role: m.role } },
    h("div", { class: "row spread" },
      h("strong", {}, name, " ", h("span", { class: "badge role" }, ROLE_WORDS[m.role])),
      h("time", { class: "muted small", datetime: m.created_at }, when(m.created_at))),
    h("p", { class: "message-body" }, m.body),
  );
}

function statusButton(label, status, primary = false) {
  const button = h("button", { type: "button", class: primary ? "primary" : undefined, dataset: { status } }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const { ticket } = await api("POST", `/api/tickets/${shown.id}/status`, { status });
      toast(`Ticket ${TICKET_STATUS[ticket.status].toLowerCase()}.`, "ok");
      showTicket(ticket);
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  });
  return button;
}

function showTicket(t) {
  shown = t;
  document.title = `${t.subject} · Support · LiveHub`;
  $("ticket-subject-title").textContent = t.subject;
  $("ticket-status").replaceChildren(statusBadge(t.status));
  const about = [];
  if (t.order) {
    // The buyer's order page is theirs; the seller finds the order in the back office.
    about.push(t.opener.id === me.id ? h("a", { href: `/orders/${t.order.id}` }, `Order ${t.order.number}`) : `Order ${t.order.number}`);
    if (t.seller) about.push(` · ${t.seller.shop_name}`);
  } else {
    about.push("A general question to LiveHub support");
  }
  if (t.opener.id !== me.id) about.push(` · opened by ${t.opener.display_name}`);
  about.push(` · opened ${when(t.created_at)}`);
  $("ticket-about").replaceChildren(...about);
  $("messages").replaceChildren(...t.messages.map((m) => messageItem(m, t)));
  const closed = t.status === "closed";
  $("closed-note").hidden = !closed;
  $("reply-form").hidden = closed;
  const opener = t.opener.id === me.id;
  const actions = [];
  if (opener) {
    if (closed || t.status === "resolved") actions.push(statusButton("Reopen ticket", "open"));
    if (!closed) actions.push(statusButton("Close ticket", "closed"));
  } else {
    for (const [status, label] of [["resolved", "Mark resolved"], ["closed", "Close ticket"], ["open", "Reopen"], ["waiting", "Waiting on the customer"]]) {
      if (status !== t.status) actions.push(statusButton(label, status, status === "resolved"));
    }
  }
  $("status-actions").replaceChildren(...actions);
  $("loading").hidden = true;
  $("ticket").hidden = false;
  $("ticket").dataset.messages = String(t.messages.length);
}

async function loadTicket() {
  showTicket((await api("GET", `/api/tickets/${encodeURIComponent(ticketId)}`)).ticket);
}

function setUpTicket() {
  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const result = await submitting(form, () => api("POST", `/api/tickets/${shown.id}/messages`, { body: form.elements.body.value }))
      .catch(() => null);
    if (result) {
      form.reset();
      showTicket(result.ticket);
    }
  });
}

// ---- live: a reply or a new ticket is pushed as a notification (docs/PROTOCOL.md, /ws/me) -------------

function listen() {
  const ws = new WebSocket(wsUrl("/ws/me"));
  ws.onopen = () => (document.body.dataset.notifications = "open");
  ws.onmessage = (msg) => {
    const frame = JSON.parse(msg.data);
    if (frame.type !== "notification") return;
    const note = frame.notification || frame;
    if (!["ticket_opened", "ticket_reply"].includes(note.kind)) return;
    const payload = note.payload || {};
    if (ticketId) {
      if (payload.ticket_id === ticketId) loadTicket().catch(showError);
    } else {
      const current = document.querySelector(".tabs a[aria-current]");
      const name = current ? current.getAttribute("href").slice(1) : "mine";
      loadList(name).catch(() => null);
    }
  };
  ws.onclose = (ev) => {
    document.body.dataset.notifications = "closed";
    if (ev.code !== 4001) setTimeout(listen, 5000);
  };
}

requireUser()
  .then(async (user) => {
    me = user;
    shopHeader();
    if (ticketId) {
      setUpTicket();
      await loadTicket();
    } else {
      await showDesk();
    }
    listen();
  })
  .catch((err) => {
    $("loading").textContent = err.status === 404 ? "No such ticket." : err.message;
    showError(err);
  });
