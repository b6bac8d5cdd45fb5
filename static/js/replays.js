// Replay cards for the home page and a storefront: recorded shows, newest first (GET /api/replays).
import { api, h } from "./api.js";

const when = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

function length(seconds) {
  if (seconds == null) return null;
  const m = Math.round(seconds / 60);
  return m < 1 ? "under a minute" : `${m} min`;
}

// One recorded show: {stream_id, title, seller: {id, shop_name}, started_at, duration_s, replay_url}.
export function replayCard(r, { showShop = true } = {}) {
  const took = length(r.duration_s);
  return h(
    "li",
    { class: "card stream-card replay-card", dataset: { streamId: r.stream_id } },
    h(
      "a",
      { href: r.replay_url, class: "cover", "aria-label": `Watch the replay of ${r.title}` },
      h("span", { class: "cover-initial", "aria-hidden": "true" }, (r.seller.shop_name || "?").slice(0, 1).toUpperCase()),
      h("span", { class: "badge replay" }, "REPLAY"),
      took ? h("span", { class: "badge viewers" }, took) : null,
    ),
    h("h3", {}, h("a", { href: r.replay_url }, r.title)),
    showShop ? h("p", { class: "muted" }, h("a", { href: `/shops/${r.seller.id}` }, r.seller.shop_name)) : null,
    r.started_at ? h("p", { class: "muted small" }, `Recorded ${when.format(new Date(r.started_at))}`) : null,
  );
}

// A page of replays (all shops', or one seller's) drawn into `list`; appended when `cursor` is given.
// The next page's cursor, or null.
export async function loadReplays(list, { sellerId = null, limit = 8, cursor = null, showShop = true } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (sellerId) query.set("seller_id", sellerId);
  if (cursor) query.set("cursor", cursor);
  const page = await api("GET", `/api/replays?${query}`);
  const cards = page.items.map((r) => replayCard(r, { showShop }));
  if (cursor) list.append(...cards);
  else list.replaceChildren(...cards);
  return page.next_cursor;
}
