// The viewer page: video, chat, reactions, the pinned product with live stock and flash price, the show's
// whole line-up, buying (where it ships and the confirmation of dear buys are in buying.js).
import { api, h, money, renderHeader, toast } from "./api.js";
import { Buying, priceText } from "./buying.js";
import { quickTopUp, takesCards } from "./card-payment.js";
import { ChatView } from "./chat.js";
import { FormatCards } from "./formats.js";
import { imageTag } from "./images.js";
import * as media from "./media.js";
import { REACTIONS, Room, clock, variantLabel } from "./room.js";

const streamId = location.pathname.split("/").filter(Boolean).pop();
const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  you: { user_id: null, role: "anonymous" },
  stream: null,
  pinned: null,
  products: [], // the show's line-up, in the seller's order
  bought: new Map(), // product id -> units this viewer bought in this show (for its per-buyer limit)
  flash: null,
  stock: new Map(), // variant id -> units a buyer can get now
  variant: new Map(), // product id -> chosen variant id
  reactions: {},
  clicked: new Set(),
  result: null, // the last purchase's {productId, kind, text}, kept across re-renders of the cards
  buying: false,
};

const chat = new ChatView($("chat-list"));
const buying = new Buying();
let room = null;
let video = null; // {pc, close} while watching
let videoStarting = false;
// The auction and giveaway cards.
const formats = new FormatCards({
  room: () => room,
  me: () => state.me,
  you: () => state.you,
  live: () => state.stream?.status === "live",
  products: () => state.products,
});

// ---- the stream and its status ------------------------------------------------------------

function applyStream(stream) {
  state.stream = { ...state.stream, ...stream };
  const s = state.stream;
  if (stream.products) setProducts(stream.products);
  $("stream-title").textContent = s.title;
  document.title = `${s.title} · LiveHub`;
  $("shop-name").textContent = s.seller.shop_name;
  $("live-badge").hidden = s.status !== "live";
  $("live-badge").className = "badge live";
  // An ended show keeps its chat to read, but nobody is left to answer or count.
  const ended = s.status === "ended";
  $("chat-form").hidden = ended || !state.me;
  $("chat-signin").hidden = ended || !!state.me;
  $("chat-closed").hidden = !ended;
  $("viewers").hidden = ended;
  renderReactionButtons();
  const follow = $("follow");
  follow.hidden = !!state.me && state.me.seller_id === s.seller.id;
  renderReminder();
  if (s.status === "live") startVideo();
  else {
    stopVideo();
    note(s.status === "ended" ? "This show has ended. Thanks for watching!" : "The show has not started yet. It starts here by itself.");
  }
  if (ended) offerReplay();
}

// An ended show links to its replay once there is one: the recording is saved a little after the end,
// so a viewer who was watching asks again a few times (applyStream runs again on reconnects: one asker).
let replayAsked = false;
async function offerReplay(tries = 6) {
  if (replayAsked && tries === 6) return;
  replayAsked = true;
  try {
    await api("GET", `/api/streams/${streamId}/replay`);
  } catch (err) {
    if (err.status === 404 && tries > 1) setTimeout(() => offerReplay(tries - 1), 5000);
    return;
  }
  const link = $("replay-link");
  link.href = `/replay/${streamId}`;
  link.hidden = false;
  note("This show has ended. Watch the replay: the video, its chat and the line-up to buy.");
}

function note(text) {
  const el = $("video-note");
  el.textContent = text || "";
  el.hidden = !text;
}

// ---- video --------------------------------------------------------------------------------

async function startVideo() {
  if (video || videoStarting || state.closed) return;
  videoStarting = true;
  note("Starting the video…");
  try {
    const info = await media.mediaInfo(streamId);
    if (info.backend === "livekit") {
      note("This show's video is served by LiveKit, which this page does not play yet. Chat and buying work here.");
      return;
    }
    const el = $("video");
    video = await media.watch(streamId, el, info, (s) => {
      if (s === "failed" || s === "closed") {
        note("The video connection dropped. Reconnecting…");
        retryVideo();
      } else if (s === "disconnected") {
        // Often a blip that heals by itself; start over only if it has not.
        const mine = video;
        setTimeout(() => {
          if (video && video === mine && video.pc.connectionState !== "connected") retryVideo();
        }, 4000);
      } else if (s === "connected") note("");
    });
    el.addEventListener("playing", () => note(""), { once: true });
    if (!el.muted) return;
    $("unmute").hidden = false;
  } catch (err) {
    if (state.stream?.status !== "live") return; // the show ended meanwhile: its note stays
    note(err.status === 404 || err.status === 409 ? "Waiting for the seller's camera…" : `The video cannot start: ${err.message}`);
    if (err.status !== 403) retryVideo();
  } finally {
    videoStarting = false;
  }
}

let retryTimer = null;
function retryVideo() {
  stopVideo();
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    if (state.stream?.status === "live") startVideo();
  }, 3000);
}

function stopVideo() {
  if (video) video.close();
  video = null;
}

$("unmute").addEventListener("click", () => {
  const el = $("video");
  el.muted = false;
  el.play().catch(() => null);
  $("unmute").hidden = true;
});

// ---- follow -------------------------------------------------------------------------------

function setFollowing(on) {
  const b = $("follow");
  b.setAttribute("aria-pressed", on ? "true" : "false");
  b.textContent = on ? "Following ✓" : "Follow";
  b.classList.toggle("primary", !on);
}

$("follow").addEventListener("click", async () => {
  if (!state.me) {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  const b = $("follow");
  const on = b.getAttribute("aria-pressed") !== "true";
  b.disabled = true;
  try {
    const r = await api(on ? "POST" : "DELETE", `/api/sellers/${state.stream.seller.id}/follow`);
    setFollowing(r.following);
    toast(r.following ? `You follow ${state.stream.seller.shop_name}: we tell you when they go live.` : "Unfollowed.", "ok");
  } catch (err) {
    toast(err.message, "error");
  } finally {
    b.disabled = false;
  }
});

// ---- remind me (a scheduled show) ---------------------------------------------------------

const reminder = { loaded: false, on: false, count: 0, status: null };

function renderReminder() {
  const status = state.stream?.status ?? reminder.status;
  $("remind-box").hidden = !reminder.loaded || status !== "scheduled";
  const b = $("remind");
  b.setAttribute("aria-pressed", reminder.on ? "true" : "false");
  b.textContent = reminder.on ? "Reminder set ✓" : "Remind me";
  b.classList.toggle("primary", !reminder.on);
  $("reminders").textContent = reminder.count === 1 ? "1 reminder" : `${reminder.count} reminders`;
}

function showReminder(r) {
  Object.assign(reminder, { loaded: true, on: !!r.reminded, count: r.reminders });
  renderReminder();
}

$("remind").addEventListener("click", async () => {
  if (!state.me) {
    location.assign(`/signin?next=${encodeURIComponent(location.pathname)}`);
    return;
  }
  const b = $("remind");
  const on = b.getAttribute("aria-pressed") !== "true";
  b.disabled = true;
  try {
    showReminder(await api(on ? "POST" : "DELETE", `/api/streams/${streamId}/remind`));
    toast(on ? "We will remind you 15 minutes before the show and when it goes live." : "Reminder removed.", "ok");
  } catch (err) {
    toast(err.message, "error");
  } finally {
    b.disabled = false;
  }
});

// ---- the pinned product -------------------------------------------------------------------

function flashFor(product) {
  const f = state.flash;
  return f && !f.ended && f.product_id === product.id ? f : null;
}

function chosenVariant(product) {
  const id = state.variant.get(product.id);
  const flash = flashFor(product);
  return (
    product.variants.find((v) => v.id === id) ||
    (flash && product.variants.find((v) => v.id === flash.variant_id)) ||
    product.variants.find((v) => (state.stock.get(v.id) ?? v.available) > 0) ||
    product.variants[0]
  );
}

function renderProduct() {
  const box = $("product");
  const focused = box.contains(document.activeElement) ? document.activeElement.id : null;
  const p = state.pinned;
  renderLineup();
  if (!p) {
    box.replaceChildren(h("p", { id: "no-product", class: "muted" }, "The seller has not pinned a product yet."));
    return;
  }
  const v = chosenVariant(p);
  const flash = flashFor(p);
  const onSale = flash && flash.variant_id === v.id;
  const left = state.stock.get(v.id) ?? v.available;
  const price = onSale ? flash.price_cents : v.price_cents;
  const signedIn = !!state.me;
  const live = state.stream?.status === "live";

  const priceLine = h(
    "p",
    { class: "price-line" },
    h("span", { class: "price", id: "price" }, money(price)),
    onSale ? h("s", { class: "muted", "aria-label": `was ${money(v.price_cents)}` }, money(v.price_cents)) : null,
    onSale ? h("span", { class: "badge flash" }, "Flash sale") : null,
  );
  const variantPicker =
    p.variants.length > 1
      ? h(
          "div",
          {},
          h("label", { for: "variant" }, "Option"),
          h(
            "select",
            {
              id: "variant",
              onchange: (e) => {
                state.variant.set(p.id, e.target.value);
                renderProduct();
                $("variant")?.focus();
              },
            },
            p.variants.map((x) =>
              h("option", { value: x.id, selected: x.id === v.id }, `${variantLabel(x)} · ${money(flashFor(p)?.variant_id === x.id ? flash.price_cents : x.price_cents)}`),
            ),
          ),
        )
      : null;

  let buy;
  const atLimit = limitReached(p, onSale);
  if (!signedIn) {
    buy = h("a", { class: "button primary", href: `/signin?next=${encodeURIComponent(location.pathname)}` }, "Sign in to buy");
  } else {
    buy = h(
      "button",
      {
        type: "button",
        class: "primary buy",
        id: "buy",
        disabled: state.buying || left <= 0 || !live || atLimit,
        onclick: () => buyNow(p, v, onSale ? flash : null),
      },
      state.buying ? "Buying…" : atLimit ? "Limit reached" : left <= 0 ? "Sold out" : `Buy now · ${money(price)}`,
    );
  }
  const result = state.result?.productId === p.id ? state.result : null;

  const parts = [
    h(
      "div",
      { class: "product-row" },
      p.images?.length
        ? imageTag(p.images[0], { alt: p.title, sizes: "72px", eager: true })
        : h("div", { class: "product-image", "aria-hidden": "true" }, p.title.slice(0, 1).toUpperCase()),
      h(
        "div",
        { class: "grow stack" },
        h("h2", { id: "product-title" }, p.title),
        priceLine,
        onSale ? h("p", { class: "countdown" }, "Ends in ", h("span", { id: "countdown" }, clock((new Date(flash.ends_at) - Date.now()) / 1000))) : null,
        flash && !onSale ? flashElsewhere(p, flash) : null,
        h("p", { class: left <= 5 ? "units low" : "units" }, h("span", { id: "units-left" }, String(left)), left === 1 ? " unit left" : " units left"),
      ),
    ),
    variantPicker,
    signedIn && !onSale ? limitNote(p, "limit-note") : null,
    h("div", { class: "row buy-row" }, buy, state.me ? h("span", { class: "muted small", id: "wallet" }, state.wallet != null ? `Wallet: ${money(state.wallet)}` : "") : null),
    h("p", { id: "purchase-result", class: `purchase-result ${result?.kind || ""}`, role: "status" }, result?.text || ""),
  ];
  box.replaceChildren(...parts.filter(Boolean));
  // Keyboard users keep their place when the card is redrawn (stock, price, result).
  if (focused) $(focused)?.focus();
}

// ---- the line-up: every product of the show, each buyable, the pinned one marked ----------------------

// The show's per-buyer limit; a flash sale has its own instead (the server counts its units apart), so a
// buy of the option on sale is never held back here.
function limitReached(product, onSale = false) {
  const limit = product.per_buyer_limit;
  if (onSale) return false;
  return limit != null && (state.bought.get(product.id) || 0) >= limit;
}

function limitNote(product, id) {
  const limit = product.per_buyer_limit;
  if (limit == null) return null;
  const have = state.bought.get(product.id) || 0;
  return h(
    "p",
    { class: `muted small${have >= limit ? " limit-reached" : ""}`, id },
    have >= limit
      ? `You have ${have} of the ${limit} one buyer may take in this show.`
      : `Up to ${limit} per buyer in this show${have ? ` (you have ${have})` : ""}.`,
  );
}

function renderLineup() {
  const list = $("lineup");
  const focused = list.contains(document.activeElement) ? document.activeElement.id : null;
  const live = state.stream?.status === "live";
  const pinnedId = state.pinned?.id;
  if (!state.products.length) {
    list.replaceChildren(h("li", { class: "muted" }, "Nothing on sale in this show yet."));
    return;
  }
  list.replaceChildren(
    ...state.products.map((p) => {
      const v = chosenVariant(p);
      const flash = flashFor(p);
      const onSale = flash && flash.variant_id === v.id;
      const left = state.stock.get(v.id) ?? v.available;
      const price = onSale ? flash.price_cents : v.price_cents;
      const pinned = p.id === pinnedId;
      const atLimit = limitReached(p, onSale);
      const result = state.result?.productId === p.id ? state.result : null;
      const picker =
        p.variants.length > 1
          ? h(
              "select",
              {
                id: `lineup-variant-${p.id}`,
                "aria-label": `Choice of ${p.title}`,
                onchange: (e) => {
                  state.variant.set(p.id, e.target.value);
                  renderProduct();
                },
              },
              p.variants.map((x) =>
                h("option", { value: x.id, selected: x.id === v.id }, `${variantLabel(x)} · ${money(flash?.variant_id === x.id ? flash.price_cents : x.price_cents)}`),
              ),
            )
          : null;
      const buy = state.me
        ? h(
            "button",
            {
              type: "button",
              class: pinned ? "primary" : "",
              id: `lineup-buy-${p.id}`,
              "aria-label": atLimit ? `${p.title}: limit reached` : left <= 0 ? `${p.title}: sold out` : `Buy ${p.title} · ${money(price)}`,
              disabled: state.buying || left <= 0 || !live || atLimit,
              onclick: () => buyNow(p, v, onSale ? flash : null),
            },
            atLimit ? "Limit reached" : left <= 0 ? "Sold out" : `Buy · ${money(price)}`,
          )
        : null;
      return h(
        "li",
        { class: `lineup-item${pinned ? " pinned" : ""}`, dataset: { productId: p.id }, "aria-current": pinned ? "true" : null },
        h(
          "div",
          { class: "row" },
          p.images?.length ? imageTag(p.images[0], { alt: "", sizes: "48px", className: "lineup-photo" }) : null,
          h("strong", { class: "grow lineup-title" }, p.title),
          pinned ? h("span", { class: "badge" }, "Pinned") : null,
          onSale ? h("span", { class: "badge flash" }, "Flash sale") : null,
        ),
        h(
          "div",
          { class: "row wrap" },
          h("span", { class: "lineup-price" }, money(price)),
          h("span", { class: "muted small lineup-stock" }, left <= 0 ? "sold out" : `${left} left`),
          picker,
          buy,
        ),
        state.me && !onSale ? limitNote(p, null) : null,
        result ? h("p", { class: `purchase-result ${result.kind}`, role: pinned ? null : "status" }, result.text) : null,
      );
    }),
  );
  if (focused) $(focused)?.focus();
}

function setProducts(products) {
  state.products = [...products].sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
}

// What this viewer bought in this show, per product: the per-buyer limit counts it (uncancelled orders).
async function loadBought() {
  const bought = new Map();
  let cursor = null;
  try {
    for (let page = 0; page < 10; page++) {
      const r = await api("GET", `/api/orders?limit=100${cursor ? `&cursor=${cursor}` : ""}`);
      for (const o of r.items) {
        if (o.stream_id !== streamId || o.status === "cancelled") continue;
        for (const item of o.items) bought.set(item.product_id, (bought.get(item.product_id) || 0) + item.quantity);
      }
      cursor = r.next_cursor;
      if (!cursor) break;
    }
  } catch {
    return; // the server's limit_reached still tells
  }
  for (const [id, n] of bought) state.bought.set(id, Math.max(n, state.bought.get(id) || 0));
  renderProduct();
}

// A flash sale runs on another option of this product than the one chosen: offer to switch to it.
function flashElsewhere(product, flash) {
  const v = product.variants.find((x) => x.id === flash.variant_id);
  if (!v) return null;
  return h(
    "p",
    { class: "row" },
    h("span", { class: "badge flash" }, "Flash sale"),
    `${variantLabel(v)} at ${money(flash.price_cents)}`,
    h("button", { type: "button", class: "link", onclick: () => (state.variant.set(product.id, v.id), renderProduct()) }, "Choose it"),
  );
}

// The product card was opened (for the stream's stats): once per product and page.
$("product").addEventListener("pointerdown", clicked);
$("product").addEventListener("focusin", clicked);
function clicked() {
  const p = state.pinned;
  if (p && !state.clicked.has(p.id) && room) {
    state.clicked.add(p.id);
    room.send({ type: "click", product_id: p.id });
  }
}

const PURCHASE_TEXT = {
  sold_out: "Sold out, sorry: someone was faster.",
  insufficient_funds: "Not enough money in your wallet.",
  limit_reached: "You already have as many as one buyer may take.",
  banned: "This shop has banned you from its streams.",
  error: "The purchase did not go through. Try again.",
};

// A buy: an address first when the goods ship and there is none, a confirmation when the price is over
// the viewer's threshold, then the buy frame (with the address it ships to).
async function buyNow(product, variant, flash, { confirmed = false } = {}) {
  if (state.buying) return;
  const ships = buying.ships(variant);
  const price = flash ? flash.price_cents : variant.price_cents;
  if (ships && !buying.shipTo()) {
    const added = await buying.askAddress(`${product.title} ships: where should it go? Add an address and the buy goes ahead.`);
    if (!added) return;
  }
  if (!confirmed && price > buying.confirmOverCents()) {
    const label = product.variants.length > 1 ? ` (${variantLabel(variant)})` : "";
    if (!(await buying.confirm(`Buy ${product.title}${label} for ${priceText(price, ships)}?`))) return;
  }
  state.buying = true;
  state.result = null;
  renderProduct();
  const frame = { type: "buy", variant_id: variant.id, quantity: 1 };
  if (flash) frame.flash_sale_id = flash.id;
  if (ships && buying.shipTo()) frame.address_id = buying.shipTo().id;
  const reply = await room.request(frame);
  state.buying = false;
  if (reply.type === "purchase" && reply.status === "address_required") {
    // No address the shop ships to: ask for one inline, then buy again (confirmed already).
    renderProduct();
    const added = await buying.askAddress(reply.message || "This needs a shipping address.");
    if (added) return buyNow(product, variant, flash, { confirmed: true });
    state.result = { productId: product.id, kind: "bad", text: reply.message || "A shipping address is needed." };
    renderProduct();
    return;
  }
  if (reply.type === "purchase" && reply.status === "ok") {
    state.bought.set(product.id, (state.bought.get(product.id) || 0) + 1);
    state.result = { productId: product.id, kind: "ok", text: `Bought! Order ${reply.order_number} is yours.` };
    toast(`Order ${reply.order_number} placed`, "ok");
  } else {
    if (reply.type === "purchase" && reply.status === "limit_reached" && !flash && product.per_buyer_limit != null) {
      state.bought.set(product.id, Math.max(product.per_buyer_limit, state.bought.get(product.id) || 0));
    }
    const text = reply.type === "purchase" ? PURCHASE_TEXT[reply.status] || reply.message : reply.message;
    state.result = { productId: product.id, kind: "bad", text: text || PURCHASE_TEXT.error };
    // The toast region is a live region that stays on the page: screen readers hear the outcome.
    toast(state.result.text, "error");
  }
  renderProduct();
  refreshWallet();
}

async function refreshWallet() {
  if (!state.me) return;
  try {
    state.wallet = (await api("GET", "/api/wallet")).balance_cents;
    const el = $("wallet");
    if (el) el.textContent = `Wallet: ${money(state.wallet)}`;
  } catch {
    /* the card shows no balance */
  }
}

setInterval(() => {
  const el = $("countdown");
  if (!el || !state.flash) return;
  const left = (new Date(state.flash.ends_at) - Date.now()) / 1000;
  el.textContent = left > 0 ? clock(left) : "ending…";
}, 1000);

// After a flash sale the variant's regular stock is not in the events: ask the stream for it.
async function refreshProducts() {
  try {
    const { stream } = await api("GET", `/api/streams/${streamId}`);
    for (const p of stream.products) for (const v of p.variants) state.stock.set(v.id, v.available);
    setProducts(stream.products);
    if (state.pinned) state.pinned = stream.products.find((p) => p.id === state.pinned.id) || state.pinned;
    renderProduct();
  } catch {
    /* keep what we have */
  }
}

function setPinned(product) {
  state.pinned = product;
  if (product) for (const v of product.variants) if (!(flashFor(product)?.variant_id === v.id)) state.stock.set(v.id, v.available);
  state.result = null;
  renderProduct();
}

function setFlash(f) {
  state.flash = f && !f.ended ? f : null;
  if (state.flash) state.stock.set(f.variant_id, f.remaining);
}

// ---- reactions ----------------------------------------------------------------------------

function renderReactionButtons() {
  $("reactions").replaceChildren(
    ...REACTIONS.map(([kind, emoji]) =>
      h(
        "button",
        { type: "button", class: "reaction", dataset: { kind }, "aria-label": `React ${kind}`, disabled: !state.me || state.stream?.status === "ended", onclick: () => react(kind, emoji) },
        h("span", { "aria-hidden": "true" }, emoji),
        " ",
        h("span", { class: "count" }, String(state.reactions[kind] || 0)),
      ),
    ),
  );
}

function react(kind, emoji) {
  room?.send({ type: "react", kind });
  float(emoji);
}

function float(emoji) {
  const box = $("floats");
  if (box.children.length > 30) return;
  const el = h("span", { class: "float", style: `left:${10 + Math.random() * 70}%` }, emoji);
  box.append(el);
  el.addEventListener("animationend", () => el.remove());
}

function setReactions(counts) {
  for (const [kind, emoji] of REACTIONS) {
    const n = counts[kind] || 0;
    const before = state.reactions[kind] || 0;
    for (let i = 0; i < Math.min(n - before, 4); i++) setTimeout(() => float(emoji), i * 120);
    const el = document.querySelector(`.reaction[data-kind="${kind}"] .count`);
    if (el) el.textContent = String(n);
  }
  state.reactions = { ...counts };
}

// ---- chat ---------------------------------------------------------------------------------

$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text || !room) return;
  input.value = "";
  const reply = await room.request({ type: "chat", text });
  if (reply.type === "error") {
    input.value = input.value || text;
    const wait = reply.details?.retry_after_s;
    toast(wait ? `${reply.message} (wait ${Math.ceil(wait)} s)` : reply.message, "error");
  }
});

function moderation(e) {
  if (e.action === "slow_mode") {
    $("chat-mode").textContent = e.seconds ? `Slow mode: one message every ${e.seconds} s` : "";
    chat.note(e.seconds ? `Slow mode is on: one message every ${e.seconds} s.` : "Slow mode is off.");
  } else if (e.action === "timeout" && e.user_id === state.you.user_id) {
    const until = new Date(e.until);
    chat.note(`A moderator paused your chat until ${until.toLocaleTimeString()}.`);
  }
}

// ---- the room -----------------------------------------------------------------------------

function welcome(w) {
  state.you = w.you;
  state.stream = null;
  applyStream(w.stream);
  setFlash(w.state.flash_sale);
  for (const p of w.stream.products || []) for (const v of p.variants) if (state.flash?.variant_id !== v.id) state.stock.set(v.id, v.available);
  setPinned(w.state.pinned);
  formats.welcome(w.state);
  $("viewers").textContent = `${w.state.viewers} watching`;
  setReactions(w.state.reactions || {});
  $("chat-mode").textContent = w.state.slow_mode_s ? `Slow mode: one message every ${w.state.slow_mode_s} s` : "";
  // recovered: the missed events follow in the next frame and the page keeps what it shows.
  if (!w.recovered) chat.reset(w.recent);
  document.body.dataset.recovered = String(w.recovered);
}

function events(list) {
  let product = false;
  let format = false;
  for (const e of list) {
    if (formats.event(e)) {
      format = true;
      // A won lot or prize moved stock and settled the winner's wallet: show both as they are now.
      if ((e.auction || e.giveaway)?.ended) {
        refreshProducts();
        refreshWallet();
      }
      continue;
    }
    switch (e.type) {
      case "chat":
        chat.add(e);
        break;
      case "chat_deleted":
        chat.markDeleted(e.message_id);
        break;
      case "pin":
        setPinned(e.product);
        break;
      case "unpin":
        setPinned(null);
        break;
      case "flash_sale":
        setFlash(e.flash_sale);
        if (e.flash_sale.ended) refreshProducts();
        product = true;
        break;
      case "stream_status":
        applyStream(e.stream);
        product = true;
        break;
      case "moderation":
        moderation(e);
        break;
      case "viewers":
        $("viewers").textContent = `${e.count} watching`;
        break;
      case "reactions":
        setReactions(e.counts);
        break;
      case "stock":
        state.stock.set(e.variant_id, e.available);
        product = true;
        break;
    }
  }
  if (product) renderProduct();
  if (format || product) formats.render();
}

function connectionStatus(status, detail) {
  const el = $("connection");
  document.body.dataset.room = status;
  if (status === "open" || status === "connecting") {
    el.hidden = true;
  } else {
    el.hidden = false;
    el.textContent = status === "reconnecting" ? "Reconnecting…" : "Disconnected";
  }
  if (status === "closed" && detail) {
    if (!state.stream) $("stream-title").textContent = detail;
    state.closed = true;
    stopVideo();
    clearTimeout(retryTimer);
    note(detail);
    chat.note(detail);
    toast(detail, "error");
  }
}

// Frames for this viewer alone that no request waits for: a followed shop went live elsewhere; the
// wallet's balance after a purchase, refund or top-up.
function reply(frame) {
  if (frame.type === "wallet") {
    state.wallet = frame.balance_cents;
    const el = $("wallet");
    if (el) el.textContent = `Wallet: ${money(state.wallet)}`;
    return;
  }
  const note = frame.type === "notification" ? frame.notification || {} : {};
  if (note.kind === "stream_live" && note.payload.stream_id !== streamId) {
    toast(`${note.payload.shop_name} is live now: ${note.payload.title}`);
  }
}

async function main() {
  state.me = await renderHeader();
  $("chat-form").hidden = !state.me;
  $("chat-signin").hidden = !!state.me;
  $("chat-signin-link").href = `/signin?next=${encodeURIComponent(location.pathname)}`;
  renderReactionButtons();
  refreshWallet();
  // Buying live stays wallet-first; with card payments the viewer can top up by card without leaving.
  if (state.me) takesCards().then((yes) => yes && quickTopUp($("quick-top-up-slot"), refreshWallet));
  setFollowing(false);
  // Whether you follow the shop and asked to be reminded, and how many did (anyone sees the count).
  api("GET", `/api/streams/${streamId}`).then(({ stream }) => {
    setFollowing(!!stream.following);
    reminder.status = stream.status;
    showReminder(stream);
  }, () => null);
  if (state.me) {
    buying.load();
    loadBought();
  }
  room = new Room(streamId, { welcome, events, status: connectionStatus, reply });
  // For tests and debugging in the console.
  window.livehubRoom = room;
}

window.addEventListener("pagehide", () => {
  stopVideo();
  room?.close();
});

main().catch((err) => toast(err.message, "error"));
