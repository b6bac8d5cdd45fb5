// The seller's live dashboard: plan a show, camera and Go live / End, pin and flash sales over the
// host's websocket, the live orders feed, viewers and sales chart, chat moderation, stats afterwards.
import { api, h, money, renderHeader, showFormError, submitting, toast } from "./api.js";
import { ChatView } from "./chat.js";
import { imageTag } from "./images.js";
import * as media from "./media.js";
import { Room, clock, variantLabel } from "./room.js";
import { StudioFormats } from "./studio-formats.js";
import { loadHosting } from "./hosting.js";

const $ = (id) => document.getElementById(id);
const ORDER_POLL_MS = 3000;
const SAMPLE_MS = 5000;
const WINDOW_MS = 10 * 60 * 1000;
const BUCKET_MS = 30 * 1000;

const state = {
  me: null,
  hosting: [], // invitations to host other shops' shows (hosting.js)
  streams: [],
  stream: null, // the chosen show (GET /api/streams/{id})
  pinned: null,
  flash: null, // the running sale; its `remaining` are the sale's units, apart from the variant's stock
  stock: new Map(), // variant id -> units in stock
  viewers: 0,
  samples: [], // {t, viewers} every SAMPLE_MS
  orders: new Map(), // id -> order, this show's
  camera: null, // MediaStream
  publisher: null, // {pc, close}
};
let room = null;
let pollTimer = null;

const chat = new ChatView($("chat-list"), { actions: chatActions });
// Auctions and giveaways: their forms and live figures.
const formats = new StudioFormats({
  send: (frame) => send(frame),
  stream: () => state.stream,
  stock: () => state.stock,
  flashRunning: () => !!state.flash,
  note: (text) => chat.note(text),
});

// ---- shows --------------------------------------------------------------------------------

async function loadStreams(select) {
  // Your shop's shows, and those you accepted to host for other shops (hosting.js).
  const own = state.me.seller_id ? (await api("GET", `/api/streams?seller=${state.me.seller_id}&include_unlisted=true&limit=50`)).items : [];
  const hosted = state.hosting.filter((i) => i.host_status === "accepted").map((i) => i.stream);
  const page = { items: [...hosted, ...own] };
  state.streams = page.items;
  const sel = $("stream-select");
  sel.replaceChildren(...page.items.map((s) => h("option", { value: s.id }, `${s.title} (${s.status}${s.unlisted ? ", practice" : ""})${s.seller.id === state.me.seller_id ? "" : ` · hosting for ${s.seller.shop_name}`}`)));
  if (!page.items.length) {
    $("new-stream-box").open = true;
    return;
  }
  const wanted = select || new URLSearchParams(location.search).get("stream");
  const pick = page.items.find((s) => s.id === wanted) || page.items.find((s) => s.status === "live") || page.items.find((s) => s.status === "scheduled") || page.items[0];
  sel.value = pick.id;
  await chooseStream(pick.id);
}

$("stream-select").addEventListener("change", (e) => chooseStream(e.target.value).catch((err) => toast(err.message, "error")));

async function loadProductPicker() {
  const page = await api("GET", `/api/products?seller=${state.me.seller_id}&limit=100`);
  const list = $("product-pick");
  if (!page.items.length) {
    list.replaceChildren(h("li", { class: "muted" }, "You have no products yet. ", h("a", { href: "/seller" }, "Add some in your shop"), " first."));
    return;
  }
  list.replaceChildren(
    ...page.items.map((p) =>
      h(
        "li",
        {},
        h("input", { type: "checkbox", id: `pick-${p.id}`, name: "product", value: p.id }),
        h("label", { for: `pick-${p.id}` }, p.title),
        h("span", { class: "muted small" }, money(Math.min(...p.variants.map((v) => v.price_cents)))),
        h("label", { for: `live-${p.id}`, class: "visually-hidden" }, `Live price for ${p.title}`),
        h("input", { type: "number", id: `live-${p.id}`, min: "0", step: "0.01", placeholder: "live price", class: "small", style: "width:7rem" }),
      ),
    ),
  );
}

$("new-stream").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const products = [...form.querySelectorAll("input[name=product]:checked")].map((c) => {
    const live = $(`live-${c.value}`).value;
    return live ? { product_id: c.value, live_price_cents: Math.round(parseFloat(live) * 100) } : { product_id: c.value };
  });
  try {
    const { stream } = await submitting(form, () => {
      if (!products.length) throw new Error("Choose at least one product to feature.");
      // Practice: unlisted, watched through its link only; recording is on unless unticked.
      const body = { title: form.title.value.trim(), products, unlisted: $("new-unlisted").checked, record: $("new-record").checked };
      if (form.host.value.trim()) {
        body.host_id = form.host.value.trim();
        body.host_commission_bps = Math.round(parseFloat(form.commission.value || "0") * 100);
      }
      // datetime-local is the user's local time; the API takes RFC 3339 with a zone.
      if (form.when.value) body.scheduled_at = new Date(form.when.value).toISOString();
      return api("POST", "/api/streams", body);
    });
    form.reset();
    $("new-stream-box").open = false;
    toast("Show created. Start your camera and go live when ready.", "ok");
    await loadStreams(stream.id);
  } catch {
    /* shown next to the form */
  }
});

async function chooseStream(id) {
  room?.close();
  room = null;
  await stopPublishing();
  const { stream } = await api("GET", `/api/streams/${id}`);
  state.stream = stream;
  state.pinned = stream.products.find((p) => p.id === stream.pinned_product_id) || null;
  state.flash = stream.flash_sale && !stream.flash_sale.ended ? stream.flash_sale : null;
  state.stock = new Map(stream.products.flatMap((p) => p.variants.map((v) => [v.id, v.available])));
  state.orders = new Map();
  state.samples = [];
  state.viewers = stream.viewers;
  history.replaceState(null, "", `/studio?stream=${id}`);
  $("watch-link").href = `/watch/${id}`;
  document.body.dataset.streamId = id;
  $("orders").replaceChildren();
  chat.reset([]);
  renderStatus();
  renderProducts();
  formats.reset();
  $("stats").hidden = true;
  renderPractice();
  showReplayState();
  if (stream.status === "ended") showStats();
  room = new Room(id, { welcome, events, status: (s, detail) => detail && toast(detail, "error") });
  window.livehubRoom = room;
  pollOrders();
}

function renderStatus() {
  const s = state.stream;
  const status = $("status");
  status.textContent = s.status === "live" ? "LIVE" : s.status;
  status.className = s.status === "live" ? "badge live" : "badge";
  const option = [...$("stream-select").options].find((o) => o.value === s.id);
  if (option) option.textContent = `${s.title} (${s.status}${s.unlisted ? ", practice" : ""})`;
  $("viewers").textContent = `${state.viewers} watching`;
  // An ended show has no audience to count, and nobody left to talk to or moderate.
  const ended = s.status === "ended";
  $("viewers").hidden = ended;
  $("chat-form").hidden = ended;
  $("chat-closed").hidden = !ended;
  $("slow-mode").disabled = ended;
  if (ended) for (const tools of $("chat-list").querySelectorAll(".chat-actions")) tools.remove();
  // A show of your shop hosted by a guest: they go live and publish; you may end it (hosting.js).
  const guest = s.host_id !== state.me.id;
  $("host-note").hidden = !guest;
  $("host-note").textContent = guest ? `Hosted by a guest (${s.host_status}): they go live.` : "";
  // Until it starts, the shop may cancel the invitation and host the show itself (DELETE .../host).
  $("take-back").hidden = !guest || s.status !== "scheduled" || s.seller.id !== state.me.seller_id;
  $("go-live").hidden = s.status === "ended" || guest;
  $("go-live").textContent = s.status === "live" ? (state.publisher ? "Publishing" : "Send camera") : "Go live";
  $("go-live").disabled = s.status === "live" && !!state.publisher;
  $("end").hidden = s.status !== "live";
  $("camera").hidden = s.status === "ended" || guest;
  $("on-air").hidden = !state.publisher;
  $("on-air").className = "badge live";
  formats.render();
}

$("take-back").addEventListener("click", async () => {
  try {
    await api("DELETE", `/api/streams/${state.stream.id}/host`);
    toast("The guest host's invitation is cancelled: your shop hosts the show.", "ok");
    await loadStreams(state.stream.id);
  } catch (err) {
    toast(err.message, "error");
  }
});

// ---- camera and going live ----------------------------------------------------------------

async function startCamera() {
  if (state.camera) return state.camera;
  state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  $("preview").srcObject = state.camera;
  $("camera").textContent = "Stop camera";
  return state.camera;
}

function stopCamera() {
  state.camera?.getTracks().forEach((t) => t.stop());
  state.camera = null;
  $("preview").srcObject = null;
  $("camera").textContent = "Start camera";
}

$("camera").addEventListener("click", async () => {
  try {
    if (state.camera) {
      await stopPublishing();
      stopCamera();
    } else await startCamera();
  } catch (err) {
    toast(`The camera cannot start: ${err.message}`, "error");
  }
});

$("go-live").addEventListener("click", async () => {
  const button = $("go-live");
  button.disabled = true;
  try {
    const camera = await startCamera();
    if (state.stream.status !== "live") {
      const { stream } = await api("POST", `/api/streams/${state.stream.id}/start`);
      state.stream = { ...state.stream, ...stream };
      renderStatus();
      toast("You are live!", "ok");
    }
    await startPublishing(camera);
  } catch (err) {
    toast(err.message, "error");
  } finally {
    renderStatus();
  }
});

async function startPublishing(camera) {
  if (state.publisher) return;
  const note = $("media-note");
  const info = await media.mediaInfo(state.stream.id);
  if (info.backend === "livekit") {
    note.textContent = "Video goes through LiveKit: publish with a LiveKit client using this show's room.";
    return;
  }
  note.textContent = "Connecting the camera…";
  state.publisher = await media.publish(state.stream.id, camera, info, (s) => {
    note.textContent = s === "connected" ? "Camera is on air." : s === "failed" ? "The camera connection failed: press Send camera." : "";
    if (s === "failed") stopPublishing().then(renderStatus);
  });
  renderStatus();
}

async function stopPublishing() {
  const p = state.publisher;
  state.publisher = null;
  if (p) await p.close();
}

$("end").addEventListener("click", async () => {
  const button = $("end");
  button.disabled = true;
  try {
    const { stream } = await api("POST", `/api/streams/${state.stream.id}/end`);
    state.stream = { ...state.stream, ...stream };
    await stopPublishing();
    stopCamera();
    toast("The show has ended.", "ok");
    await loadStreams(stream.id);
  } catch (err) {
    toast(err.message, "error");
  } finally {
    button.disabled = false;
  }
});

// ---- products, pins and flash sales -------------------------------------------------------

async function send(frame) {
  if (!room) return null;
  const reply = await room.request(frame);
  if (reply.type === "error") toast(reply.message, "error");
  return reply;
}

function renderProducts() {
  const s = state.stream;
  const live = s.status === "live";
  const focused = $("products").contains(document.activeElement) ? document.activeElement.id : null;
  // The flash-sale forms on the page are kept, not rebuilt: stock and pins change every second in a busy
  // show, and a rebuilt form would lose the price the seller is typing (and the error shown by it).
  const forms = new Map([...$("products").querySelectorAll("form.flash-form")].map((f) => [f.dataset.productId, f]));
  $("products").replaceChildren(
    ...s.products.map((p) => {
      const pinned = state.pinned?.id === p.id;
      const flash = state.flash && state.flash.product_id === p.id ? state.flash : null;
      const inStock = (v) => state.stock.get(v.id) ?? v.available;
      const units = `Stock: ${p.variants.length === 1 ? inStock(p.variants[0]) : p.variants.map((v) => `${inStock(v)} (${variantLabel(v)})`).join(" · ")}`;
      return h(
        "li",
        { class: pinned ? "pinned" : "", dataset: { productId: p.id } },
        h(
          "div",
          { class: "row" },
          p.images?.length ? imageTag(p.images[0], { alt: "", sizes: "40px", className: "product-photo thumb" }) : null,
          h("strong", { class: "grow" }, p.title),
          h("span", { class: "price" }, money(p.variants[0].price_cents)),
          h(
            "button",
            {
              type: "button",
              id: `pin-${p.id}`,
              "aria-pressed": pinned ? "true" : "false",
              disabled: !live,
              onclick: () => send(pinned ? { type: "unpin" } : { type: "pin", product_id: p.id }),
            },
            pinned ? "Unpin" : "Pin",
          ),
        ),
        h("p", { class: "muted small units" }, units),
        flash
          ? h(
              "p",
              { class: "row flash-running" },
              h("span", { class: "badge flash" }, "Flash sale"),
              h("span", {}, `${money(flash.price_cents)}${p.variants.length > 1 ? ` (${variantLabel(p.variants.find((v) => v.id === flash.variant_id) || {})})` : ""} · ${flash.remaining} of ${flash.quantity} sale units left · ends in `, h("span", { class: "flash-clock" }, clock((new Date(flash.ends_at) - Date.now()) / 1000))),
              h("button", { type: "button", id: `end-flash-${p.id}`, onclick: () => send({ type: "end_flash_sale" }) }, "End flash sale"),
            )
          : keptFlashForm(forms.get(p.id), p, live && !state.flash && !formats.auctionRunning()),
      );
    }),
  );
  if (focused) $(focused)?.focus();
}

function keptFlashForm(form, p, enabled) {
  if (!form) return flashForm(p, enabled);
  form.querySelector("button[type=submit]").disabled = !enabled;
  return form;
}

function flashForm(p, enabled) {
  const id = p.id;
  const form = h(
    "form",
    { class: "flash-form", "aria-label": `Flash sale of ${p.title}`, dataset: { productId: p.id } },
    p.variants.length > 1
      ? h("div", {}, h("label", { for: `fs-variant-${id}` }, "Option"), h("select", { id: `fs-variant-${id}`, name: "variant" }, p.variants.map((v) => h("option", { value: v.id }, variantLabel(v)))))
      : null,
    h("div", {}, h("label", { for: `fs-price-${id}` }, "Flash price"), h("input", { id: `fs-price-${id}`, name: "price", dataset: { field: "price_cents" }, type: "number", min: "0", step: "0.01", required: true, value: ((p.variants[0].price_cents * 0.7) / 100).toFixed(2) })),
    h("div", {}, h("label", { for: `fs-qty-${id}` }, "Units"), h("input", { id: `fs-qty-${id}`, name: "quantity", type: "number", min: "1", step: "1", required: true, value: String(Math.max(1, Math.min(10, state.stock.get(p.variants[0].id) ?? 1))) })),
    h("div", {}, h("label", { for: `fs-dur-${id}` }, "Seconds"), h("input", { id: `fs-dur-${id}`, name: "duration", dataset: { field: "duration_s" }, type: "number", min: "5", max: "3600", step: "1", required: true, value: "60" })),
    h("button", { type: "submit", class: "primary", disabled: !enabled }, "Start flash sale"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const variant_id = form.variant ? form.variant.value : p.variants[0].id;
    const frame = {
      type: "flash_sale",
      variant_id,
      price_cents: Math.round(parseFloat(form.price.value) * 100),
      quantity: parseInt(form.quantity.value, 10),
      duration_s: parseInt(form.duration.value, 10),
    };
    const reply = await send(frame);
    if (reply?.type === "ack") toast("Flash sale started.", "ok");
    else if (reply?.type === "error") showFormError(form, flashRefusal(reply));
  });
  return form;
}

// The server names the price a flash sale must beat (details.price_cents): say it in money.
function flashRefusal(reply) {
  const details = reply.details || {};
  if (details.price_cents === undefined) return reply;
  const msg = `must be below ${money(details.price_cents)}, the price in this show`;
  return { message: reply.message, details: { errors: [{ loc: ["price_cents"], msg, type: "flash_price_not_below" }] } };
}

setInterval(() => {
  if (!state.flash) return;
  for (const el of document.querySelectorAll(".flash-clock")) el.textContent = clock((new Date(state.flash.ends_at) - Date.now()) / 1000);
}, 1000);

// ---- the host's room ----------------------------------------------------------------------

function welcome(w) {
  state.stream = { ...state.stream, ...w.stream, products: w.stream.products || state.stream.products };
  state.pinned = w.state.pinned;
  state.flash = w.state.flash_sale && !w.state.flash_sale.ended ? w.state.flash_sale : null;
  for (const p of state.stream.products) for (const v of p.variants) state.stock.set(v.id, v.available);
  state.viewers = w.state.viewers;
  $("slow-mode").value = String(w.state.slow_mode_s || 0);
  if (!w.recovered) chat.reset(w.recent);
  // The running auction first: the flash-sale forms are disabled while it runs.
  formats.welcome(w.state);
  renderStatus();
  renderProducts();
}

function events(list) {
  let products = false;
  let format = false;
  for (const e of list) {
    if (formats.event(e)) {
      format = true;
      // One auction or flash sale at a time: the flash-sale forms follow the auction.
      if (e.type === "auction") products = true;
      // A won lot or prize moved stock; the order shows in the feed.
      if ((e.auction || e.giveaway)?.ended) {
        refreshStock().then(() => formats.render(), () => null);
        clearTimeout(pollTimer);
        pollTimer = setTimeout(pollOrders, 300);
      }
    } else if (e.type === "chat") chat.add(e);
    else if (e.type === "chat_deleted") chat.markDeleted(e.message_id);
    else if (e.type === "pin") (state.pinned = e.product), (products = true);
    else if (e.type === "unpin") (state.pinned = null), (products = true);
    else if (e.type === "flash_sale") {
      state.flash = e.flash_sale.ended ? null : e.flash_sale;
      if (!state.flash) {
        chat.note(`Flash sale ended (${e.flash_sale.ended_reason.replace("_", " ")}).`);
        refreshStock();
      }
      products = true;
    } else if (e.type === "stock") {
      // While a sale runs on the variant, `available` is what buyers can get: the sale's units. Its
      // stock fell as much; the stream's figures tell both exactly.
      if (state.flash?.variant_id === e.variant_id) {
        state.flash.remaining = e.available;
        clearTimeout(stockTimer);
        stockTimer = setTimeout(() => refreshStock().catch(() => null), 300);
      } else state.stock.set(e.variant_id, e.available);
      products = true;
      // Someone bought: fetch the new orders now rather than at the next poll.
      clearTimeout(pollTimer);
      pollTimer = setTimeout(pollOrders, 300);
    }
    else if (e.type === "viewers") {
      state.viewers = e.count;
      $("viewers").textContent = `${e.count} watching`;
    } else if (e.type === "stream_status") {
      state.stream = { ...state.stream, ...e.stream };
      renderStatus();
      products = true;
      if (e.stream.status === "ended") {
        showStats();
        showReplayState();
      }
    } else if (e.type === "moderation") {
      if (e.action === "slow_mode") $("slow-mode").value = String(e.seconds);
      const who = e.user_id ? nameOf(e.user_id) : "";
      if (e.action === "ban") chat.note(`${who} is banned.`);
      if (e.action === "timeout") chat.note(`${who} is paused until ${new Date(e.until).toLocaleTimeString()}.`);
    }
  }
  if (products) renderProducts();
  if (products || format) formats.render();
}

let stockTimer = null;
async function refreshStock() {
  const { stream } = await api("GET", `/api/streams/${state.stream.id}`);
  for (const p of stream.products) for (const v of p.variants) state.stock.set(v.id, v.available);
  if (state.flash && stream.flash_sale?.id === state.flash.id) state.flash.remaining = stream.flash_sale.remaining;
  renderProducts();
}

// ---- chat and moderation ------------------------------------------------------------------

function nameOf(userId) {
  const li = $("chat-list").querySelector(`li[data-user="${CSS.escape(userId)}"] .who`);
  return li ? li.textContent : "The viewer";
}

function chatActions(m) {
  if (m.user.role === "host" || m.user.role === "moderator" || state.stream?.status === "ended") return [];
  const act = (label, frame, done) =>
    h(
      "button",
      {
        type: "button",
        "aria-label": `${label} ${m.user.name}: ${m.text.slice(0, 60)}`,
        onclick: async () => {
          const reply = await send({ type: "moderate", ...frame });
          if (reply?.type === "ack" && done) toast(done, "ok");
        },
      },
      label,
    );
  return [
    act("Delete", { action: "delete", message_id: m.id }),
    act("Timeout", { action: "timeout", user_id: m.user.id, seconds: 300 }, `${m.user.name} cannot chat for 5 minutes.`),
    act("Ban", { action: "ban", user_id: m.user.id }, `${m.user.name} is banned from your shows.`),
  ];
}

$("slow-mode").addEventListener("change", (e) => send({ type: "moderate", action: "slow_mode", seconds: parseInt(e.target.value, 10) }));

$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  const reply = await send({ type: "chat", text });
  if (reply?.type === "error") input.value = text;
});

// ---- live orders and the chart ------------------------------------------------------------

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

async function pollOrders() {
  clearTimeout(pollTimer);
  const streamId = state.stream?.id;
  // A guest host without a shop has no orders to list (they are the shop's).
  if (!streamId || !state.me.seller_id) return;
  try {
    const page = await api("GET", "/api/seller/orders?limit=50");
    if (state.stream?.id !== streamId) return;
    const fresh = page.items.filter((o) => o.stream_id === streamId && !state.orders.has(o.id)).reverse();
    const first = state.orders.size === 0;
    for (const o of fresh) {
      state.orders.set(o.id, o);
      const items = o.items.map((i) => `${i.title}${i.quantity > 1 ? ` ×${i.quantity}` : ""}`).join(", ");
      $("orders").prepend(
        h(
          "li",
          { class: first ? "" : "new", dataset: { orderId: o.id } },
          h("strong", {}, o.number),
          " ",
          items,
          " · ",
          h("span", { class: "price" }, money(o.total_cents)),
          " ",
          h("time", { class: "muted small", datetime: o.created_at }, timeFmt.format(new Date(o.created_at))),
        ),
      );
    }
    const total = [...state.orders.values()].reduce((sum, o) => sum + o.total_cents, 0);
    // What buyers paid as the orders came in; the stats after the show count it net of refunds.
    $("orders-summary").textContent = state.orders.size ? `${state.orders.size} order${state.orders.size === 1 ? "" : "s"} · ${money(total)} in sales (before refunds)` : "No orders yet.";
    drawChart();
  } catch {
    /* try again on the next round */
  }
  // Keep polling while the show is live; an ended show's list does not change.
  if (state.stream?.status !== "ended") pollTimer = setTimeout(pollOrders, ORDER_POLL_MS);
}

setInterval(() => {
  if (!state.stream || state.stream.status !== "live") return;
  const now = Date.now();
  state.samples.push({ t: now, viewers: state.viewers });
  state.samples = state.samples.filter((s) => s.t > now - WINDOW_MS);
  drawChart();
}, SAMPLE_MS);

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Orders per 30 s as bars and viewers as a line over the last ten minutes: inline SVG, no library.
function drawChart() {
  const W = 600, H = 170, L = 34, R = 30, T = 10, B = 22;
  const now = Date.now();
  const start = now - WINDOW_MS;
  const x = (t) => L + ((t - start) / WINDOW_MS) * (W - L - R);
  const buckets = new Array(WINDOW_MS / BUCKET_MS).fill(0);
  for (const o of state.orders.values()) {
    const t = new Date(o.created_at).getTime();
    if (t > start) buckets[Math.min(buckets.length - 1, Math.floor((t - start) / BUCKET_MS))] += 1;
  }
  const samples = [...state.samples, ...(state.stream?.status === "live" ? [{ t: now, viewers: state.viewers }] : [])];
  const maxV = Math.max(1, ...samples.map((s) => s.viewers));
  const maxO = Math.max(1, ...buckets);
  const yV = (v) => H - B - (v / maxV) * (H - T - B);
  const yO = (n) => H - B - (n / maxO) * (H - T - B);
  const orders = buckets.reduce((a, b) => a + b, 0);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Last 10 minutes: up to ${maxV} viewer${maxV === 1 ? "" : "s"}, ${orders} order${orders === 1 ? "" : "s"}` });
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#dedee6" }));
  buckets.forEach((n, i) => {
    if (!n) return;
    const x0 = x(start + i * BUCKET_MS) + 1;
    root.append(svg("rect", { x: x0, y: yO(n), width: x(start + BUCKET_MS) - L - 2, height: H - B - yO(n), fill: "#4c8bf5", opacity: 0.75 }));
  });
  if (samples.length > 1) {
    const points = samples.map((s) => `${x(s.t).toFixed(1)},${yV(s.viewers).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, fill: "none", stroke: "#e0245e", "stroke-width": 2.5, "stroke-linejoin": "round" }));
  }
  root.append(
    svg("text", { x: L - 4, y: T + 8, "text-anchor": "end", "font-size": 11, fill: "#e0245e" }, String(maxV)),
    svg("text", { x: L - 4, y: H - B, "text-anchor": "end", "font-size": 11, fill: "#5f6170" }, "0"),
    svg("text", { x: W - R + 4, y: T + 8, "font-size": 11, fill: "#4c8bf5" }, String(maxO)),
    svg("text", { x: L, y: H - 6, "font-size": 11, fill: "#5f6170" }, "−10 min"),
    svg("text", { x: W - R, y: H - 6, "text-anchor": "end", "font-size": 11, fill: "#5f6170" }, "now"),
  );
  $("chart").replaceChildren(root);
}

// ---- practice shows and replays -----------------------------------------------------------

// An unlisted show is listed nowhere: its viewers come through this link.
function renderPractice() {
  const s = state.stream;
  $("practice-box").hidden = !s.unlisted;
  $("share-link").value = s.unlisted ? `${location.origin}/watch/${s.id}` : "";
}

$("copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("share-link").value);
    toast("Link copied.", "ok");
  } catch {
    $("share-link").select(); // no clipboard access (plain HTTP): selected for the viewer to copy
  }
});

// The recording is saved a little after the show ends: ask again a few times while this show is chosen.
// Each call starts a new round of asking; an answer to an older round is dropped.
let replayTimer = null;
let replayRound = 0;
async function showReplayState(tries = 20, round = ++replayRound) {
  clearTimeout(replayTimer);
  const s = state.stream;
  const box = $("replay-box");
  box.hidden = s.status !== "ended";
  for (const id of ["replay-open", "keep-replay", "discard-replay"]) $(id).hidden = true;
  if (s.status !== "ended") return;
  const status = $("replay-status");
  if (s.record === false) {
    status.textContent = "This show was not recorded (recording was off for it).";
    return;
  }
  let replay;
  try {
    replay = await api("GET", `/api/streams/${s.id}/replay`);
  } catch (err) {
    if (round !== replayRound) return;
    if (err.status !== 404) status.textContent = `The replay cannot be looked up: ${err.message}`;
    else if (tries > 1) {
      status.textContent = "Saving the recording…";
      replayTimer = setTimeout(() => showReplayState(tries - 1, round), 3000);
    } else status.textContent = "There is no replay of this show (none was recorded, or it was discarded).";
    return;
  }
  if (round !== replayRound) return;
  const minutes = replay.duration_s == null ? "" : ` (${Math.max(1, Math.round(replay.duration_s / 60))} min)`;
  status.textContent = s.unlisted
    ? `This practice show's replay is saved${minutes}. Keep it (reachable by its link, never listed) or discard it.`
    : `The replay is saved${minutes} and listed on your shop's page.`;
  $("replay-open").href = `/replay/${s.id}`;
  $("replay-open").hidden = false;
  $("keep-replay").hidden = !s.unlisted;
  $("discard-replay").hidden = !s.unlisted;
}

$("keep-replay").addEventListener("click", () => {
  // Keeping is doing nothing: the replay stays, reachable by its link, never listed.
  $("keep-replay").hidden = true;
  $("discard-replay").hidden = true;
  $("replay-status").textContent = "Replay kept: anyone with its link can watch it; it is listed nowhere.";
});

$("discard-replay").addEventListener("click", async () => {
  const button = $("discard-replay");
  button.disabled = true;
  try {
    await api("DELETE", `/api/streams/${state.stream.id}/replay`);
    // With LiveKit, LiveKit Egress wrote the file into its own storage: LiveHub stops offering the replay
    // but cannot delete the file (docs/REPLAYS.md). With aiortc the recording is LiveHub's and is deleted.
    const info = await media.mediaInfo(state.stream.id).catch(() => null);
    $("replay-status").textContent =
      info?.backend === "aiortc"
        ? "Replay discarded: the recording is deleted."
        : info?.backend === "livekit"
          ? "Replay discarded: it is no longer offered. The recording file stays in LiveKit's storage: delete it there."
          : "Replay discarded: it is no longer offered.";
    for (const id of ["replay-open", "keep-replay", "discard-replay"]) $(id).hidden = true;
  } catch (err) {
    $("replay-status").textContent = `The replay was not discarded: ${err.message}`;
  } finally {
    button.disabled = false;
  }
});

// ---- after the show -----------------------------------------------------------------------

async function showStats() {
  try {
    const s = await api("GET", `/api/streams/${state.stream.id}/stats`);
    const reactions = Object.values(s.reactions).reduce((a, b) => a + b, 0);
    const minutes = s.started_at && s.ended_at ? Math.round((new Date(s.ended_at) - new Date(s.started_at)) / 60000) : null;
    const figures = [
      ["Length", minutes === null ? "—" : `${minutes} min`],
      ["Peak viewers", s.peak_viewers],
      ["Unique viewers", s.unique_viewers],
      ["Chat messages", s.chat_messages],
      ["Reactions", reactions],
      ["Orders", s.orders],
      ["Revenue after refunds", money(s.revenue_cents)],
    ];
    $("stats-body").replaceChildren(
      h("dl", {}, figures.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Product"), h("th", { scope: "col" }, "Clicks"), h("th", { scope: "col" }, "Orders"), h("th", { scope: "col" }, "Units"), h("th", { scope: "col" }, "Revenue after refunds"))),
          h("tbody", {}, s.products.map((p) => h("tr", {}, h("td", {}, p.title), h("td", {}, String(p.clicks)), h("td", {}, String(p.orders)), h("td", {}, String(p.units)), h("td", {}, money(p.revenue_cents))))),
        ),
      ),
    );
    $("stats").hidden = false;
  } catch (err) {
    toast(`Stats are not available: ${err.message}`, "error");
  }
}

// ---- start --------------------------------------------------------------------------------

async function main() {
  state.me = await renderHeader();
  if (!state.me) {
    location.replace(`/signin?next=${encodeURIComponent("/studio" + location.search)}`);
    return;
  }
  const seller = state.me.roles.includes("seller");
  state.hosting = await loadHosting(state.me, { onChange: hostingChanged });
  if (!seller && !state.hosting.some((i) => i.host_status === "accepted")) {
    const gate = $("gate");
    gate.replaceChildren("The studio is for sellers and the hosts they invite. ", h("a", { href: "/seller" }, "Open a shop"), " and go live once it is approved.");
    gate.hidden = false;
    return;
  }
  $("gate").hidden = true;
  $("studio").hidden = false;
  $("new-stream-box").hidden = !seller;
  drawChart();
  if (seller) await loadProductPicker();
  await loadStreams();
}

// An invitation accepted or declined: the hosted shows change, and a first one opens the studio.
async function hostingChanged(streamId, verb) {
  state.hosting = await loadHosting(state.me, { onChange: hostingChanged });
  if ($("studio").hidden) return main();
  await loadStreams(verb === "accept" ? streamId : state.stream?.id);
}

window.addEventListener("pagehide", () => {
  state.publisher?.close();
  room?.close();
});

main().catch((err) => toast(err.message, "error"));
