// Home: who is live now, what is scheduled, recent replays, and the catalog search.
import { api, h, money, toast, wsUrl } from "./api.js";
import { loadReplays } from "./replays.js";
import { shopHeader } from "./shop.js";
import { productImage } from "./images.js";

const when = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit", month: "short", day: "numeric" });

function streamCard(s) {
  const live = s.status === "live";
  const products = s.products.map((p) => p.title).slice(0, 3).join(" · ");
  return h(
    "li",
    { class: "card stream-card" },
    h(
      "a",
      { href: `/watch/${s.id}`, class: "cover", "aria-label": `${live ? "Watch" : "Open"} ${s.title}` },
      h("span", { class: "cover-initial", "aria-hidden": "true" }, (s.seller.shop_name || "?").slice(0, 1).toUpperCase()),
      live ? h("span", { class: "badge live" }, "LIVE") : null,
      live ? h("span", { class: "badge viewers" }, `${s.viewers} watching`) : null,
    ),
    h("h3", {}, h("a", { href: `/watch/${s.id}` }, s.title)),
    h("p", { class: "muted" }, h("a", { href: `/shops/${s.seller.id}` }, s.seller.shop_name)),
    live ? null : h("p", {}, s.scheduled_at ? when.format(new Date(s.scheduled_at)) : "Date to be announced"),
    products ? h("p", { class: "muted small" }, products) : null,
  );
}

async function loadStreams() {
  const [live, scheduled] = await Promise.all([
    api("GET", "/api/streams?status=live&limit=24"),
    api("GET", "/api/streams?status=scheduled&limit=12"),
  ]);
  document.getElementById("live").replaceChildren(...live.items.map(streamCard));
  document.getElementById("live-empty").hidden = live.items.length > 0;
  document.getElementById("scheduled").replaceChildren(...scheduled.items.map(streamCard));
  document.getElementById("scheduled-empty").hidden = scheduled.items.length > 0;
}

function productCard(p) {
  const prices = p.variants.map((v) => v.price_cents);
  return h(
    "li",
    { class: "card" },
    productImage(p, { sizes: "(max-width: 600px) 45vw, 240px" }),
    h("h3", {}, h("a", { href: `/products/${p.id}` }, p.title)),
    h("p", { class: "muted" }, h("a", { href: `/shops/${p.seller.id}` }, p.seller.shop_name)),
    h("p", { class: "price" }, prices.length ? `from ${money(Math.min(...prices))}` : ""),
  );
}

async function loadProducts(q) {
  const page = await api("GET", "/api/products?limit=48" + (q ? "&q=" + encodeURIComponent(q) : ""));
  document.getElementById("products").replaceChildren(...page.items.map(productCard));
  document.getElementById("products-empty").hidden = page.items.length > 0;
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  loadProducts(document.getElementById("q").value.trim()).catch((err) => toast(err.message, "error"));
});

// Signed in: hear when a followed shop goes live (docs/PROTOCOL.md, /ws/me) and show it at once.
function listen() {
  const ws = new WebSocket(wsUrl("/ws/me"));
  ws.onopen = () => (document.body.dataset.notifications = "open");
  ws.onmessage = (msg) => {
    const frame = JSON.parse(msg.data);
    // {type: notification, notification: {kind, payload, ...}} (docs/PROTOCOL.md)
    const note = frame.type === "notification" ? frame.notification || {} : {};
    if (note.kind === "stream_live") {
      toast(`${note.payload.shop_name} is live now: ${note.payload.title}`, "ok");
      loadStreams().catch(() => null);
    }
  };
  ws.onclose = (ev) => {
    document.body.dataset.notifications = "closed";
    if (ev.code !== 4001) setTimeout(listen, 5000);
  };
}

shopHeader().then((user) => user && listen());
loadStreams().catch((err) => toast(err.message, "error"));
// Shows recorded after they ended (practice shows are never listed); the section stays hidden without any.
loadReplays(document.getElementById("replays"))
  .then(() => (document.getElementById("replays-section").hidden = !document.getElementById("replays").children.length))
  .catch(() => null);
loadProducts("").catch((err) => toast(err.message, "error"));
// Viewer counts and who is live change: refresh now and then while the page is open.
setInterval(() => {
  if (!document.hidden) loadStreams().catch(() => null);
}, 15000);
