// A live room's websocket (docs/PROTOCOL.md) that reconnects by itself and recovers what it missed.
//
// The room keeps the last durable `offset` and the `epoch` it came from; after a drop it reconnects with
// ?since=&epoch= so the server replays exactly the missed events (welcome.recovered = true) or sends a
// fresh snapshot (recovered = false) that the page rebuilds from.
import { wsUrl } from "./api.js";

// This browser's id for itself, so anonymous viewers behind one address (a household, a carrier's NAT)
// count apart in viewer figures while one page's reconnects count once (docs/PROTOCOL.md, client_id).
function clientId() {
  try {
    let id = localStorage.getItem("livehub_client_id");
    if (!id) {
      // getRandomValues, unlike randomUUID, works on plain-HTTP pages too.
      id = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem("livehub_client_id", id);
    }
    return id;
  } catch {
    return null; // storage blocked: the server counts this browser by its address alone
  }
}

// Close codes after which reconnecting cannot help.
const FINAL = { 4001: "Your session is not valid any more. Sign in again.", 4003: "You are banned from this shop's streams.", 4004: "This stream does not exist." };

export class Room {
  // handlers: welcome(frame), events(list), reply(frame) for ack/purchase/error/pong/notification,
  // status("connecting" | "open" | "reconnecting" | "closed", detail)
  constructor(streamId, handlers) {
    this.streamId = streamId;
    this.handlers = handlers;
    this.offset = null;
    this.epoch = null;
    this.ws = null;
    this.stopped = false;
    this.attempt = 0;
    this.pending = new Map();
    this.counter = 0;
    this.connect();
  }

  connect() {
    const q = new URLSearchParams();
    const id = clientId();
    if (id) q.set("client_id", id);
    if (this.offset !== null && this.epoch) {
      q.set("since", String(this.offset));
      q.set("epoch", this.epoch);
    }
    const qs = q.toString();
    const ws = new WebSocket(wsUrl(`/ws/streams/${this.streamId}${qs ? "?" + qs : ""}`));
    this.ws = ws;
    this.emitStatus(this.attempt ? "reconnecting" : "connecting");
    ws.onmessage = (msg) => this.receive(JSON.parse(msg.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      for (const [, p] of this.pending) p.resolve({ type: "error", code: "network", message: "Connection lost; try again." });
      this.pending.clear();
      if (this.stopped) return this.emitStatus("closed");
      if (FINAL[ev.code]) {
        this.stopped = true;
        return this.emitStatus("closed", FINAL[ev.code]);
      }
      this.attempt += 1;
      // 0.5 s, 1 s, 2 s ... up to 8 s, with jitter so a restarted node is not hit by everyone at once.
      const delay = Math.min(8000, 500 * 2 ** Math.min(this.attempt - 1, 4)) * (0.75 + Math.random() / 2);
      this.emitStatus("reconnecting");
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  receive(frame) {
    if (frame.type === "welcome") {
      this.attempt = 0;
      this.offset = frame.offset;
      this.epoch = frame.epoch;
      this.lastRecovered = frame.recovered;
      this.emitStatus("open");
      this.handlers.welcome?.(frame);
      return;
    }
    if (frame.type === "events") {
      for (const e of frame.events) if (typeof e.offset === "number") this.offset = Math.max(this.offset ?? 0, e.offset);
      this.handlers.events?.(frame.events);
      return;
    }
    if (frame.request_id && this.pending.has(frame.request_id)) {
      this.pending.get(frame.request_id).resolve(frame);
      this.pending.delete(frame.request_id);
    }
    this.handlers.reply?.(frame);
  }

  emitStatus(status, detail) {
    this.status = status;
    this.handlers.status?.(status, detail);
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // Send a frame; resolves with the reply that echoes its request_id (ack, purchase or error).
  request(frame) {
    const request_id = frame.request_id || `r${Date.now().toString(36)}${(this.counter++).toString(36)}`;
    if (!this.open) return Promise.resolve({ type: "error", code: "network", message: "Not connected; reconnecting…", request_id });
    return new Promise((resolve) => {
      this.pending.set(request_id, { resolve });
      this.ws.send(JSON.stringify({ ...frame, request_id }));
    });
  }

  send(frame) {
    if (this.open) this.ws.send(JSON.stringify(frame));
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
  }
}

export const REACTIONS = [
  ["heart", "❤️"],
  ["fire", "🔥"],
  ["clap", "👏"],
  ["laugh", "😂"],
  ["wow", "😮"],
];

// "Size: M, Colour: red" for a variant's options, or its SKU when it has none.
export function variantLabel(v) {
  const opts = Object.entries(v.options || {}).map(([k, val]) => `${k}: ${val}`);
  return opts.length ? opts.join(", ") : v.sku;
}

// "1:05" from seconds.
export function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}
