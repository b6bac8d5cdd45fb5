// The header's bell: a link to the inbox (/notifications) with the number of unread notifications, kept
// up to date from the user's socket /ws/me (docs/PROTOCOL.md). renderHeader() (api.js) mounts it on every
// page with the signed-in header. Pages hear what arrives through window events:
//   "livehub:notification" (detail: {id, kind, payload, created_at, read_at}),
//   "livehub:wallet" (detail: {balance_cents, reason}), "livehub:earnings" (detail: {available_cents}).
import { api, h, wsUrl } from "./api.js";

let unread = 0;
let socket = null;
let retry = 1000;

function badge() {
  return document.getElementById("bell-count");
}

function draw() {
  const link = document.getElementById("bell");
  if (!link) return;
  const count = badge();
  count.textContent = unread > 99 ? "99+" : String(unread);
  count.hidden = unread === 0;
  link.dataset.unread = String(unread);
  link.setAttribute("aria-label", unread ? `Notifications: ${unread} unread` : "Notifications: none unread");
}

// The inbox sets the number after marking some read.
export function setUnread(n) {
  unread = Math.max(0, n);
  draw();
}

export function unreadCount() {
  return unread;
}

// The count as the server has it. A pushed notification asks again rather than adding one: it may be
// one the last count had already included (stored before this page asked, delivered after).
let asked = 0;
export async function refreshUnread() {
  const mine = ++asked;
  const data = await api("GET", "/api/notifications/unread-count");
  if (mine === asked) setUnread(data.unread); // a later answer wins
}

// A notification frame: {type: "notification", notification: {...}} (older servers sent its fields flat).
function noticeOf(frame) {
  if (frame.notification) return frame.notification;
  const { type, ...rest } = frame;
  return { id: null, kind: rest.kind, payload: rest, created_at: new Date().toISOString(), read_at: null };
}

function connect() {
  socket = new WebSocket(wsUrl("/ws/me"));
  socket.onopen = () => {
    retry = 1000;
    document.body.dataset.bell = "open";
    // Whatever arrived while the socket was away.
    refreshUnread().catch(() => null);
  };
  socket.onmessage = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === "notification") {
      const notice = noticeOf(frame);
      refreshUnread().catch(() => null);
      window.dispatchEvent(new CustomEvent("livehub:notification", { detail: notice }));
    } else if (frame.type === "wallet") {
      window.dispatchEvent(new CustomEvent("livehub:wallet", { detail: frame }));
    } else if (frame.type === "earnings") {
      window.dispatchEvent(new CustomEvent("livehub:earnings", { detail: frame }));
    }
  };
  socket.onclose = (event) => {
    document.body.dataset.bell = "closed";
    socket = null;
    if (event.code === 4001) return; // signed out
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  };
}

// A bell drawn in SVG (no emoji font needed), in the link's colour.
function bellIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", width: "22", height: "22", "aria-hidden": "true", fill: "currentColor" })) {
    svg.setAttribute(k, v);
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z");
  svg.append(path);
  return svg;
}

// The bell for `nav` (the header's navigation, signed in): drawn at once, its count fetched, the socket
// opened once per page.
export function mountBell(nav) {
  const link = h(
    "a",
    { href: "/notifications", id: "bell", class: "bell", "aria-label": "Notifications" },
    bellIcon(),
    h("span", { id: "bell-count", class: "badge live", hidden: true }, "0"),
  );
  if (location.pathname === "/notifications") link.setAttribute("aria-current", "page");
  nav.append(link);
  draw();
  refreshUnread().catch(() => null);
  if (!socket) connect();
  return link;
}
