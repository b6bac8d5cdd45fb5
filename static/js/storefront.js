// A shop's storefront (/shops/{id}): its name, followers and Follow, its products, its live and
// upcoming shows, the replays of its past ones.
import { api, currentUser, h, money, showError, toast } from "./api.js";
import { loadReplays } from "./replays.js";
import { pathId, picture, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
const sellerId = pathId();
const when = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
let seller = null;
let productsCursor = null;
let replaysCursor = null;

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function showSeller(s) {
  seller = s;
  document.title = `${s.shop_name} · LiveHub`;
  $("shop-name").textContent = s.shop_name;
  $("shop-description").textContent = s.description;
  $("shop-followers").textContent = plural(s.followers, "follower");
  $("shop-products").textContent = plural(s.products, "product");
  setFollowing(!!s.following);
  $("loading").hidden = true;
  $("shop").hidden = false;
}

function setFollowing(on) {
  const b = $("follow");
  b.textContent = on ? "Following" : "Follow";
  b.setAttribute("aria-pressed", String(on));
  b.title = on ? "Press to unfollow" : "Get told when this shop goes live";
}

$("follow").addEventListener("click", async () => {
  const user = await currentUser().catch(() => null);
  if (!user) {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  const on = $("follow").getAttribute("aria-pressed") !== "true";
  $("follow").disabled = true;
  try {
    const r = await api(on ? "POST" : "DELETE", `/api/sellers/${sellerId}/follow`);
    setFollowing(r.following);
    $("shop-followers").textContent = plural(r.followers, "follower");
    toast(r.following ? `You follow ${seller.shop_name}: we tell you when they go live.` : `You no longer follow ${seller.shop_name}.`, "ok");
  } catch (err) {
    showError(err);
  } finally {
    $("follow").disabled = false;
  }
});

function productCard(p) {
  const prices = p.variants.map((v) => v.price_cents);
  const href = `/products/${p.id}`;
  return h(
    "li",
    { class: "card product-card" },
    h("a", { href, tabindex: "-1", "aria-hidden": "true" }, picture(p)),
    h("h3", {}, h("a", { href }, p.title)),
    h("p", { class: "price" }, prices.length ? `from ${money(Math.min(...prices))}` : ""),
    p.rating && p.rating.count ? h("p", { class: "muted small" }, `★ ${p.rating.average.toFixed(1)} (${p.rating.count})`) : null,
  );
}

async function loadProducts(more = false) {
  const cursor = more && productsCursor ? `&cursor=${encodeURIComponent(productsCursor)}` : "";
  const page = await api("GET", `/api/products?seller=${sellerId}&limit=24${cursor}`);
  const list = $("products");
  if (more) list.append(...page.items.map(productCard));
  else list.replaceChildren(...page.items.map(productCard));
  productsCursor = page.next_cursor;
  $("products-more").hidden = !page.next_cursor;
  $("products-empty").hidden = list.children.length > 0;
  $("products-section").hidden = false;
}

function showCard(s) {
  const live = s.status === "live";
  return h(
    "li",
    { class: "card stream-card" },
    live ? h("span", { class: "badge live" }, "LIVE") : null,
    h("h3", {}, h("a", { href: `/watch/${s.id}` }, s.title)),
    h("p", { class: "muted" }, live ? `${s.viewers} watching` : s.scheduled_at ? when.format(new Date(s.scheduled_at)) : "Date to be announced"),
  );
}

async function loadShows() {
  const [live, scheduled] = await Promise.all([
    api("GET", `/api/streams?status=live&seller=${sellerId}&limit=10`),
    api("GET", `/api/streams?status=scheduled&seller=${sellerId}&limit=10`),
  ]);
  const shows = [...live.items, ...scheduled.items];
  $("shows").replaceChildren(...shows.map(showCard));
  $("shows-empty").hidden = shows.length > 0;
  $("shows-section").hidden = false;
}

$("products-more").addEventListener("click", () => loadProducts(true).catch(showError));

// The shop's recorded shows, newest first; the section shows only when there is one.
async function loadShopReplays(more = false) {
  replaysCursor = await loadReplays($("replays"), { sellerId, limit: 6, cursor: more ? replaysCursor : null, showShop: false });
  $("replays-more").hidden = !replaysCursor;
  $("replays-section").hidden = $("replays").children.length === 0;
}

$("replays-more").addEventListener("click", () => loadShopReplays(true).catch(showError));

shopHeader().then((me) => {
  // A shop does not follow itself.
  if (me && me.seller_id === sellerId) $("follow").hidden = true;
});
api("GET", `/api/sellers/${sellerId}`)
  .then(({ seller: s }) => {
    showSeller(s);
    // Replays are extra: a shop's page shows without them if they cannot be listed.
    loadShopReplays().catch(() => null);
    return Promise.all([loadProducts(), loadShows()]);
  })
  .catch((err) => {
    $("loading").textContent = err.status === 404 ? "There is no such shop." : err.message;
  });
