// The replay page (/replay/{id}): a recorded show's video, with its chat and pins following the video's
// clock, the product pinned at that moment as a card, and the show's line-up to buy at the shop's regular
// prices (docs/REPLAYS.md). A flash sale is shown as a moment of the show, never at its flash price: the
// sale ended with the show.
import { api, h, money, toast } from "./api.js";
import { imageTag } from "./images.js";
import { pathId, refreshCartCount, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);
const streamId = pathId();
const PAGE_SIZE = 500; // the timeline's largest page (docs/API.md)
const MAX_CHAT = 200; // messages kept in the list, as on the live page
const MAX_MOMENTS = 100;
// A seek lands on the time asked for, but a frame's clock may read a hair before it: what happened at
// the very moment a moment's button jumps to counts as happened.
const EPSILON_S = 0.001;
const recordedOn = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

const state = {
  me: null,
  replay: null,
  lineup: new Map(), // product id -> the replay's line-up entry {id, title, position, price_cents, image_url}
  catalog: new Map(), // product id -> GET /api/products/{id}'s product, or null when no longer for sale
  variant: new Map(), // product id -> the chosen variant's id
  chats: [], // the timeline's chat events, in time order
  pins: [], // its pin events (product_id null = unpinned), in time order
  sales: [], // flash_sale_started / _ended events, in time order
  moments: [], // pins, flash sales, auctions and giveaways to jump to
  shownUpTo: -1, // index in `chats` of the last message in the list
  shownAt: 0, // the video time the list was drawn for
  pinnedId: undefined, // the product pinned at the video's time (undefined: not drawn yet)
  sale: null, // the flash sale that ran at the video's time in the live show
  loading: false, // timeline pages still to come
  result: null, // the last add-to-cart's {productId, kind, text}
  adding: false,
};

// ---- time ---------------------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

// The index of the last event at or before `t` seconds (-1: none), by bisection: the lists are in time order.
function lastAtOrBefore(list, t) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].offset_s <= t + EPSILON_S) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function now() {
  return $("video").currentTime || 0;
}

// Everything that follows the video's clock. `jump`: the viewer seeked, so the chat is drawn afresh for
// the new time rather than added to (seeking back must take later messages away).
function sync(jump = false, t = now()) {
  syncChat(t, jump);
  syncPinned(t);
  document.body.dataset.syncedAt = String(t);
}

// ---- chat ---------------------------------------------------------------------------------

function chatItem(e) {
  return h(
    "li",
    { class: "chat-message", dataset: { id: String(e.id), offset: String(e.offset_s) } },
    h("span", { class: "who" }, e.user?.name || "Someone"),
    " ",
    h("span", { class: "text" }, e.text),
    h("time", { class: "muted small" }, clock(e.offset_s)),
  );
}

function syncChat(t, jump) {
  const list = $("chat-list");
  const upTo = lastAtOrBefore(state.chats, t);
  const forward = !jump && t >= state.shownAt && upTo >= state.shownUpTo;
  const stick = jump || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (forward) {
    if (upTo > state.shownUpTo) {
      list.querySelector(".chat-note")?.remove(); // "no chat yet"
      list.append(...state.chats.slice(Math.max(state.shownUpTo + 1, upTo - MAX_CHAT + 1), upTo + 1).map(chatItem));
    }
  } else {
    list.replaceChildren(...state.chats.slice(Math.max(0, upTo - MAX_CHAT + 1), upTo + 1).map(chatItem));
  }
  while (list.children.length > MAX_CHAT) list.firstElementChild.remove();
  state.shownUpTo = upTo;
  state.shownAt = t;
  $("chat-count").textContent = upTo < 0 ? "" : `${upTo + 1} of ${state.chats.length}${state.loading ? "+" : ""} messages`;
  if (!list.children.length) list.replaceChildren(h("li", { class: "chat-note muted small" }, "No chat yet at this moment."));
  if (stick) list.scrollTop = list.scrollHeight;
}

// ---- the pinned product and the line-up ---------------------------------------------------

function syncPinned(t) {
  const i = lastAtOrBefore(state.pins, t);
  const id = i < 0 ? null : state.pins[i].product_id;
  const sale = saleAt(t);
  if (id === state.pinnedId && sale?.sale_id === state.sale?.sale_id) return;
  state.pinnedId = id;
  state.sale = sale;
  // A product pinned that is no longer in the show's line-up: its card still needs the catalog's answer.
  if (id && !state.lineup.has(id) && !state.catalog.has(id)) loadProduct(id).then(renderProduct, () => null);
  renderProduct();
  renderLineup();
}

// The flash sale running at `t` in the live show, if one was: told as a moment, sold at the regular price.
function saleAt(t) {
  const running = new Map();
  for (const e of state.sales) {
    if (e.offset_s > t + EPSILON_S) break;
    if (e.kind === "flash_sale_started") running.set(e.sale_id, e);
    else running.delete(e.sale_id);
  }
  return [...running.values()].pop() || null;
}

function titleOf(productId) {
  return state.lineup.get(productId)?.title || state.catalog.get(productId)?.title || "a product";
}

function chosenVariant(product) {
  const id = state.variant.get(product.id);
  return product.variants.find((v) => v.id === id) || product.variants.find((v) => v.available > 0) || product.variants[0];
}

function variantLabel(v) {
  const opts = Object.entries(v.options || {}).map(([k, val]) => `${k}: ${val}`);
  return opts.length ? opts.join(", ") : v.sku;
}

function picture(productId, sizes) {
  const product = state.catalog.get(productId);
  if (product?.images?.length) return imageTag(product.images[0], { alt: "", sizes, className: "product-photo" });
  const entry = state.lineup.get(productId);
  if (entry?.image_url) return h("img", { class: "product-photo", src: entry.image_url, alt: "", loading: "lazy" });
  return h("div", { class: "product-image", "aria-hidden": "true" }, titleOf(productId).slice(0, 1).toUpperCase());
}

// The regular price: the chosen option's catalog price once the product is loaded, else the replay's
// line-up price (its lowest active option's).
function priceOf(productId) {
  const product = state.catalog.get(productId);
  if (product) return chosenVariant(product)?.price_cents;
  return state.lineup.get(productId)?.price_cents;
}

// Add to cart (or sign in first), an option picker, and what the last add did, for one product; `where`
// tells the pinned card's controls from the line-up's apart.
function buyControls(productId, where) {
  const product = state.catalog.get(productId);
  if (product === null) return [h("p", { class: "muted small" }, "No longer for sale.")];
  if (!state.me) {
    const next = encodeURIComponent(location.pathname + location.search);
    return [h("a", { class: `button${where === "pinned" ? " primary" : ""}`, href: `/signin?next=${next}` }, "Sign in to buy")];
  }
  if (!product) return [h("span", { class: "muted small" }, "Loading…")];
  const v = chosenVariant(product);
  const soldOut = !v || v.available <= 0;
  const picker =
    product.variants.length > 1
      ? h(
          "select",
          {
            id: `${where}-variant-${productId}`,
            "aria-label": `Option of ${product.title}`,
            onchange: (e) => {
              state.variant.set(productId, e.target.value);
              renderProduct();
              renderLineup();
              $(`${where}-variant-${productId}`)?.focus();
            },
          },
          product.variants.map((x) => h("option", { value: x.id, selected: x.id === v.id }, `${variantLabel(x)} · ${money(x.price_cents)}`)),
        )
      : null;
  const add = h(
    "button",
    {
      type: "button",
      class: where === "pinned" ? "primary buy" : "",
      id: `${where}-add-${productId}`,
      "aria-label": soldOut ? `${product.title}: sold out` : `Add ${product.title} to cart · ${money(v.price_cents)}`,
      disabled: soldOut || state.adding,
      onclick: () => addToCart(product, v),
    },
    soldOut ? "Sold out" : where === "pinned" ? `Add to cart · ${money(v.price_cents)}` : "Add to cart",
  );
  return [picker, add];
}

function resultLine(productId, id) {
  const r = state.result?.productId === productId ? state.result : null;
  if (!r && !id) return null;
  return h(
    "p",
    { class: `purchase-result ${r?.kind || ""}`, id, role: id ? "status" : null },
    r?.text || "",
    r?.kind === "ok" ? [" ", h("a", { href: "/cart" }, "Go to your cart")] : null,
  );
}

function renderProduct() {
  const box = $("product");
  const focused = box.contains(document.activeElement) ? document.activeElement.id : null;
  const id = state.pinnedId;
  const sale = state.sale;
  const saleNote = sale
    ? h("p", { class: "small sale-moment" }, h("span", { class: "badge flash" }, "Flash sale"),
        ` ran here in the live show on ${titleOf(sale.product_id)}; the replay sells at the regular price.`)
    : null;
  if (!id) {
    box.replaceChildren(...[h("p", { class: "muted", id: "no-product" }, "No product pinned at this moment of the show."), saleNote].filter(Boolean));
    return;
  }
  const product = state.catalog.get(id);
  const price = priceOf(id);
  const v = product ? chosenVariant(product) : null;
  const parts = [
    h(
      "div",
      { class: "product-row" },
      picture(id, "72px"),
      h(
        "div",
        { class: "grow stack" },
        h("p", { class: "muted small" }, "Pinned at this moment"),
        h("h2", { id: "product-title" }, h("a", { href: `/products/${id}` }, titleOf(id))),
        h("p", { class: "price-line" }, h("span", { class: "price", id: "price" }, price == null ? "" : money(price))),
        v ? h("p", { class: v.available <= 5 ? "units low" : "units" }, v.available <= 0 ? "Sold out" : `${v.available} in stock`) : null,
      ),
    ),
    saleNote,
    h("div", { class: "row buy-row" }, ...buyControls(id, "pinned")),
    resultLine(id, "purchase-result"),
  ];
  box.replaceChildren(...parts.filter(Boolean));
  if (focused) $(focused)?.focus();
}

function renderLineup() {
  const list = $("lineup");
  const focused = list.contains(document.activeElement) ? document.activeElement.id : null;
  const products = [...state.lineup.values()];
  if (!products.length) {
    list.replaceChildren(h("li", { class: "muted" }, "Nothing from this show is for sale."));
    return;
  }
  list.replaceChildren(
    ...products.map((p) => {
      const pinned = p.id === state.pinnedId;
      const price = priceOf(p.id);
      return h(
        "li",
        { class: `lineup-item${pinned ? " pinned" : ""}`, dataset: { productId: p.id }, "aria-current": pinned ? "true" : null },
        h(
          "div",
          { class: "row" },
          picture(p.id, "48px"),
          h("strong", { class: "grow lineup-title" }, h("a", { href: `/products/${p.id}` }, p.title)),
          pinned ? h("span", { class: "badge" }, "Pinned now") : null,
        ),
        h(
          "div",
          { class: "row wrap" },
          h("span", { class: "lineup-price" }, price == null ? "" : money(price)),
          ...buyControls(p.id, "lineup"),
        ),
        pinned ? null : resultLine(p.id),
      );
    }),
  );
  if (focused) $(focused)?.focus();
}

async function addToCart(product, variant) {
  if (state.adding) return;
  state.adding = true;
  state.result = null;
  renderProduct();
  renderLineup();
  try {
    const cart = await api("POST", "/api/cart/items", { variant_id: variant.id, quantity: 1 });
    state.result = { productId: product.id, kind: "ok", text: `Added to your cart: ${product.title}.` };
    toast(state.result.text, "ok");
    refreshCartCount(cart).catch(() => null);
  } catch (err) {
    state.result = { productId: product.id, kind: "bad", text: err.message };
    toast(err.message, "error");
  } finally {
    state.adding = false;
    renderProduct();
    renderLineup();
  }
}

// A product from the catalog: its options, regular prices and stock today (null: no longer for sale).
async function loadProduct(id) {
  try {
    state.catalog.set(id, (await api("GET", `/api/products/${id}`)).product);
  } catch (err) {
    if (err.status === 404) state.catalog.set(id, null);
  }
}

// The line-up's products from the catalog.
async function loadCatalog() {
  await Promise.all([...state.lineup.keys()].map(loadProduct));
  renderProduct();
  renderLineup();
}

// ---- moments ------------------------------------------------------------------------------

const MOMENT_WORDS = {
  pin: "Pinned",
  flash_sale_started: "Flash sale",
  auction_started: "Auction",
  giveaway_started: "Giveaway",
};

function renderMoments() {
  const moments = state.moments.slice(0, MAX_MOMENTS);
  $("moments-box").hidden = moments.length === 0;
  $("moments").replaceChildren(
    ...moments.map((e) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `moment moment-${e.kind}`,
            dataset: { offset: String(e.offset_s) },
            "aria-label": `Jump to ${clock(e.offset_s)}: ${MOMENT_WORDS[e.kind].toLowerCase()} ${titleOf(e.product_id)}`,
            onclick: () => jumpTo(e.offset_s),
          },
          h("span", { class: "moment-time" }, clock(e.offset_s)),
          " ",
          `${MOMENT_WORDS[e.kind]}: ${titleOf(e.product_id)}`,
        ),
      ),
    ),
  );
}

function jumpTo(seconds) {
  const video = $("video");
  try {
    video.currentTime = seconds;
  } catch {
    /* no video loaded: the chat and pins still go there */
  }
  sync(true, seconds);
}

// ---- the timeline -------------------------------------------------------------------------

function take(events) {
  for (const e of events) {
    if (e.kind === "chat") state.chats.push(e);
    else if (e.kind === "pin") state.pins.push(e);
    else if (e.kind === "flash_sale_started" || e.kind === "flash_sale_ended") state.sales.push(e);
    if (MOMENT_WORDS[e.kind] && (e.kind !== "pin" || e.product_id)) state.moments.push(e);
  }
}

// Every page of the timeline, in order; the page follows the video with what it has so far.
async function loadTimeline(url) {
  state.loading = true;
  let cursor = null;
  const sep = url.includes("?") ? "&" : "?";
  do {
    const page = await api("GET", `${url}${sep}limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    take(page.items);
    cursor = page.next_cursor;
    state.loading = !!cursor;
    sync();
    renderMoments();
  } while (cursor);
  document.body.dataset.timeline = "loaded";
}

// ---- the video ----------------------------------------------------------------------------

function note(text) {
  const el = $("video-note");
  el.textContent = text || "";
  el.hidden = !text;
}

function startVideo(replay) {
  const video = $("video");
  video.addEventListener("loadedmetadata", () => note(""));
  video.addEventListener("error", () => {
    const why = video.error?.code === 4 ? "this browser cannot play its format or the file is gone" : "it did not load";
    note(`The video cannot be played (${why}). The chat and the line-up below still work.`);
    document.body.dataset.video = "failed";
  });
  video.addEventListener("timeupdate", () => sync(false));
  video.addEventListener("seeking", () => sync(true));
  video.addEventListener("seeked", () => sync(true));
  video.src = replay.video_url;
}

// ---- start --------------------------------------------------------------------------------

function showReplay(r) {
  state.replay = r;
  document.title = `${r.title} (replay) · LiveHub`;
  $("stream-title").textContent = r.title;
  $("shop-link").textContent = r.seller.shop_name;
  $("shop-link").href = `/shops/${r.seller.id}`;
  $("recorded-on").textContent = r.started_at ? `· recorded ${recordedOn.format(new Date(r.started_at))}` : "";
  $("unlisted-badge").hidden = !r.unlisted;
  for (const p of [...r.products].sort((a, b) => a.position - b.position)) state.lineup.set(p.id, p);
  renderProduct();
  renderLineup();
  sync(true, 0);
}

// No replay (yet): say why it may be, and where the show itself is.
async function noReplay(err) {
  document.body.dataset.replay = "none";
  for (const id of ["product", "lineup-box"]) $(id).hidden = true;
  $("chat-list").closest("section").hidden = true;
  $("video").hidden = true;
  $("replay-badge").hidden = true;
  if (err.status !== 404) {
    note(`The replay cannot be loaded: ${err.message}`);
    return;
  }
  const stream = await api("GET", `/api/streams/${streamId}`).then((r) => r.stream, () => null);
  if (!stream) {
    $("stream-title").textContent = "There is no such show.";
    note("There is no such show.");
    return;
  }
  $("stream-title").textContent = stream.title;
  $("shop-link").textContent = stream.seller.shop_name;
  $("shop-link").href = `/shops/${stream.seller.id}`;
  const why =
    stream.status === "ended"
      ? "This show has no replay: it was not recorded, is still being saved, or was removed."
      : "This show has no replay yet: it is recorded while it runs and kept when it ends.";
  note(why);
  $("recorded-on").replaceChildren("· ", h("a", { href: `/watch/${streamId}` }, stream.status === "live" ? "Watch it live" : "Open the show"));
}

async function main() {
  state.me = await shopHeader().catch(() => null);
  let replay;
  try {
    replay = await api("GET", `/api/streams/${streamId}/replay`);
  } catch (err) {
    await noReplay(err);
    return;
  }
  document.body.dataset.replay = "ready";
  showReplay(replay);
  startVideo(replay);
  loadCatalog().catch(() => null);
  await loadTimeline(replay.timeline_url).catch((err) => toast(`The show's chat cannot be loaded: ${err.message}`, "error"));
}

main().catch((err) => toast(err.message, "error"));
