// The buyer's orders (/orders), newest first, a page at a time.
import { api, h, money, showError } from "./api.js";
import { dateTime, requireUser, shopHeader, statusBadge } from "./shop.js";

const $ = (id) => document.getElementById(id);
let cursor = null;

function orderItem(o) {
  const what = o.items.map((i) => `${i.quantity} × ${i.title}`).join(", ");
  return h(
    "li",
    { class: "card" },
    h("div", { class: "row spread" },
      h("a", { href: `/orders/${o.id}` }, `Order ${o.number}`),
      statusBadge(o.status)),
    h("p", {}, what),
    h("p", { class: "muted small" }, `${dateTime.format(new Date(o.created_at))} · ${money(o.total_cents)}`),
  );
}

async function load(more = false) {
  const after = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  const page = await api("GET", `/api/orders?limit=20${after}`);
  $("loading").hidden = true;
  if (more) $("orders").append(...page.items.map(orderItem));
  else $("orders").replaceChildren(...page.items.map(orderItem));
  cursor = page.next_cursor;
  $("orders-more").hidden = !cursor;
  $("orders-empty").hidden = $("orders").children.length > 0;
}

$("orders-more").addEventListener("click", () => load(true).catch(showError));
requireUser().then(() => {
  shopHeader();
  return load();
}).catch(showError);
