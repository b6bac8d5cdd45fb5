// The viewer page's auction and giveaway cards (docs/PROTOCOL.md: the `auction` and `giveaway` events,
// the `bid` and `enter` frames). The cards' markup is in watch.html and is never rebuilt: a redraw (every
// tick in a busy show) only sets texts, so the maximum bid a viewer is typing stays as it is.
import { h, money, toCents, toast } from "./api.js";
import { clock, variantLabel } from "./room.js";

const $ = (id) => document.getElementById(id);

// What a bid_result's status tells the bidder.
export const BID_TEXT = {
  leading: (a) => `You are the highest bidder at ${money(a)}.`,
  outbid: (a) => `Someone's maximum is higher: the bid is now ${money(a)}.`,
  too_low: (a) => `Too low: the bid is already ${money(a)}.`,
  insufficient_funds: () => "Not enough money in your wallet for that bid.",
  ended: () => "The auction has ended.",
  not_allowed: () => "You cannot bid in this auction.",
};

// The increment when the event does not carry one: the server's default step.
const DEFAULT_INCREMENT_CENTS = 100;
// How long the countdown shows that the end moved.
const EXTENDED_SHOWN_MS = 5000;

// "Glow lamp (size: M)": the event's product (its title and the variant's options), else the line-up's.
export function lotTitle(product, variantId, products) {
  if (typeof product === "string") return product;
  const p = products.find((x) => x.variants?.some((v) => v.id === variantId));
  const title = product?.title || p?.title || "A product";
  const v = p?.variants?.find((x) => x.id === variantId);
  const options = product?.options || v?.options || {};
  return Object.keys(options).length && (!p || p.variants.length > 1) ? `${title} (${variantLabel({ options })})` : title;
}

export class FormatCards {
  // ctx: {room(), me(), you(), live(), products(), wallet()}
  constructor(ctx) {
    this.ctx = ctx;
    this.auction = null;
    this.giveaway = null;
    this.endsAt = new Map(); // auction id -> the last ends_at seen, to show an extension
    this.extended = null; // {id, seconds, at}
    this.myStatus = null; // {auctionId, kind, text}: the last bid_result, or the news of being outbid
    this.bidding = false;
    this.myMax = new Map(); // auction id -> the maximum this viewer set, as this page sent it
    this.entered = new Set(); // giveaway ids this viewer entered
    this.giveawayStatus = null;

    $("auction-max").addEventListener("submit", (e) => {
      e.preventDefault();
      let cents;
      try {
        cents = toCents($("auction-max-input").value);
      } catch (err) {
        this.status("bad", err.message);
        return;
      }
      this.bid({ max_cents: cents }, () => ($("auction-max-input").value = ""));
    });
    $("giveaway-enter").addEventListener("click", () => this.enter());
    setInterval(() => this.tick(), 1000);
  }

  // ---- state from the room ----

  welcome(state) {
    // The snapshot has the running ones; an ended one already shown stays until the next starts.
    this.setAuction(state.auction || (this.auction?.ended ? this.auction : null));
    this.setGiveaway(state.giveaway || (this.giveaway?.ended ? this.giveaway : null));
    this.render();
  }

  // True when the event was one of the formats'.
  event(e) {
    if (e.type === "auction") {
      this.setAuction(e.auction || e);
      return true;
    }
    if (e.type === "giveaway") {
      this.setGiveaway(e.giveaway || e);
      return true;
    }
    return false;
  }

  setAuction(a) {
    const before = this.auction;
    if (a) {
      const prev = this.endsAt.get(a.id);
      const ends = new Date(a.ends_at).getTime();
      if (prev && ends > prev + 500 && !a.ended) this.extended = { id: a.id, seconds: Math.round((ends - prev) / 1000), at: Date.now() };
      this.endsAt.set(a.id, ends);
      const me = this.ctx.you()?.user_id;
      const wasLeading = before && before.id === a.id && before.leader?.id === me;
      if (me && wasLeading && a.leader?.id !== me && !a.ended) {
        this.myStatus = { auctionId: a.id, kind: "bad", text: `You have been outbid: ${money(a.current_cents)} by ${a.leader?.name || "another bidder"}.` };
        toast(this.myStatus.text, "error");
      } else if (me && a.leader?.id === me && !a.ended && this.myStatus?.auctionId === a.id && this.myStatus.kind === "ok") {
        // Still leading: a bid against this viewer's maximum raised the price they lead at.
        this.myStatus = { auctionId: a.id, kind: "ok", text: this.leadingText(a.id, a.current_cents) };
      }
    }
    this.auction = a || null;
  }

  setGiveaway(g) {
    this.giveaway = g || null;
  }

  // ---- drawing (texts only) ----

  render() {
    this.renderAuction();
    this.renderGiveaway();
  }

  increment(a) {
    return a.increment_cents || DEFAULT_INCREMENT_CENTS;
  }

  // The lowest bid that can lead now: the start price before any bid, then one increment above.
  minimumBid(a) {
    if (a.min_bid_cents) return a.min_bid_cents;
    return a.leader ? a.current_cents + this.increment(a) : a.current_cents;
  }

  renderAuction() {
    const a = this.auction;
    const card = $("auction");
    card.hidden = !a;
    if (!a) return;
    const me = this.ctx.you()?.user_id;
    const signedIn = !!this.ctx.me();
    const open = !a.ended && this.ctx.live();
    card.classList.toggle("ended", !!a.ended);
    card.dataset.auctionId = a.id;
    $("auction-mode").textContent = a.mode === "sudden_death" ? "Sudden death" : "Anti-snipe";
    $("auction-mode").title = a.mode === "sudden_death" ? "No extension: the last bid before the end wins." : "A bid in the last seconds extends the end.";
    $("auction-product").textContent = lotTitle(a.product, a.variant_id, this.ctx.products());
    $("auction-current-label").textContent = a.ended ? (a.winner ? "Winning bid" : "Start price") : a.leader ? "Current bid" : "Starting bid";
    $("auction-current").textContent = money(a.current_cents);
    $("auction-bids").textContent = a.bids === 1 ? "1 bid" : `${a.bids || 0} bids`;
    const leader = $("auction-leader");
    leader.textContent = a.ended ? "" : a.leader ? (a.leader.id === me ? "You are leading" : `Leading: ${a.leader.name}`) : "No bids yet: be the first.";
    leader.hidden = !!a.ended;
    leader.classList.toggle("you", !!a.leader && a.leader.id === me);
    $("auction-clock-line").hidden = !!a.ended;
    this.tick();

    // Quick bids at the next increments, rebuilt only when they change (a button is not swapped under a
    // finger on every tick); the maximum bid form stays as typed.
    const box = $("auction-quick");
    const focused = box.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    const min = this.minimumBid(a);
    const inc = this.increment(a);
    const key = `${a.id}|${min}|${inc}|${!open || this.bidding}`;
    if (box.dataset.key !== key) this.quickBids(box, key, a, min, inc, open);
    if (focused !== null && !box.contains(document.activeElement)) box.querySelector(`[data-step="${focused}"]`)?.focus();
    $("auction-max-input").min = String(min / 100);
    $("auction-max").querySelector("button").disabled = !open || this.bidding;
    $("auction-bid-box").hidden = !signedIn || !!a.ended;
    $("auction-signin").hidden = signedIn || !!a.ended;

    // Once ended, the winner line says it all.
    const status = this.myStatus?.auctionId === a.id && !a.ended ? this.myStatus : null;
    const el = $("auction-status");
    el.textContent = status?.text || "";
    el.className = `purchase-result ${status?.kind || ""}`;

    const winner = $("auction-winner");
    winner.hidden = !a.ended;
    if (a.ended) {
      if (!a.winner) winner.textContent = "The auction ended without bids.";
      else if (a.winner.id === me) {
        winner.replaceChildren(
          `You won at ${money(a.current_cents)}! `,
          a.order_id ? h("a", { href: `/orders/${a.order_id}` }, "See your order") : "",
        );
      } else winner.textContent = `Won by ${a.winner.name} at ${money(a.current_cents)}.`;
      winner.classList.toggle("you", a.winner?.id === me);
    }
  }

  quickBids(box, key, a, min, inc, open) {
    box.dataset.key = key;
    box.replaceChildren(
      ...[0, 1, 2].map((k) =>
        h(
          "button",
          {
            type: "button",
            class: k === 0 ? "primary bid" : "bid",
            dataset: { step: String(k), cents: String(min + k * inc) },
            disabled: !open || this.bidding,
            onclick: () => this.bid({ amount_cents: min + k * inc }),
          },
          `Bid ${money(min + k * inc)}`,
        ),
      ),
    );
  }

  renderGiveaway() {
    const g = this.giveaway;
    const card = $("giveaway");
    card.hidden = !g;
    if (!g) return;
    const me = this.ctx.you()?.user_id;
    const signedIn = !!this.ctx.me();
    card.classList.toggle("ended", !!g.ended);
    card.dataset.giveawayId = g.id;
    $("giveaway-product").textContent = lotTitle(g.product, g.variant_id, this.ctx.products());
    $("giveaway-entries").textContent = g.entries === 1 ? "1 entry" : `${g.entries || 0} entries`;
    const who = { followers: "Open to the shop's followers", buyers: "Open to those who bought in this show" }[g.eligibility];
    $("giveaway-eligibility").textContent = who || "Open to everyone watching";
    $("giveaway-seed-hash").textContent = g.seed_hash || "";
    $("giveaway-clock-line").hidden = !!g.ended;
    this.tick();
    const entered = this.entered.has(g.id) || !!g.entered;
    const button = $("giveaway-enter");
    button.hidden = !signedIn || !!g.ended;
    button.disabled = entered || !this.ctx.live() || this.entering;
    button.textContent = entered ? "You are in ✓" : "Enter the giveaway";
    $("giveaway-signin").hidden = signedIn || !!g.ended;
    // Once drawn, the winner line says it all.
    const status = this.giveawayStatus?.id === g.id && !g.ended ? this.giveawayStatus : null;
    $("giveaway-status").textContent = status?.text || "";
    $("giveaway-status").className = `purchase-result ${status?.kind || ""}`;
    $("giveaway-seed-line").hidden = !g.seed;
    $("giveaway-seed").textContent = g.seed || "";
    const winner = $("giveaway-winner");
    winner.hidden = !g.ended;
    if (g.ended) {
      if (!g.winner) winner.textContent = "Nobody entered: no winner.";
      else if (g.winner.id === me) winner.replaceChildren("You won! ", g.order_id ? h("a", { href: `/orders/${g.order_id}` }, "See your prize") : "");
      else winner.textContent = `Winner: ${g.winner.name}`;
      winner.classList.toggle("you", g.winner?.id === me);
    }
  }

  // Every second: the countdowns, and the note that the end moved.
  tick() {
    const a = this.auction;
    if (a && !a.ended) {
      const left = (new Date(a.ends_at) - Date.now()) / 1000;
      $("auction-countdown").textContent = left > 0 ? clock(left) : "ending…";
      const ext = this.extended?.id === a.id && Date.now() - this.extended.at < EXTENDED_SHOWN_MS ? this.extended : null;
      $("auction-extended").hidden = !ext;
      $("auction-extended").textContent = ext ? `+${ext.seconds} s: a late bid extended the end` : "";
      $("auction-clock-line").classList.toggle("extended", !!ext);
    }
    const g = this.giveaway;
    if (g && !g.ended) {
      const left = (new Date(g.ends_at) - Date.now()) / 1000;
      $("giveaway-countdown").textContent = left > 0 ? clock(left) : "drawing…";
    }
  }

  // ---- the viewer's frames ----

  // Only this viewer sees their own maximum: the server never sends it back.
  leadingText(auctionId, cents) {
    const max = this.myMax.get(auctionId);
    return `${BID_TEXT.leading(cents)}${max ? ` We bid for you up to your maximum of ${money(max)}.` : ""}`;
  }

  status(kind, text) {
    this.myStatus = { auctionId: this.auction?.id, kind, text };
    this.renderAuction();
  }

  async bid(fields, done) {
    const a = this.auction;
    const room = this.ctx.room();
    if (!a || !room || this.bidding) return;
    this.bidding = true;
    this.renderAuction();
    const reply = await room.request({ type: "bid", auction_id: a.id, ...fields });
    this.bidding = false;
    if (reply.type === "bid_result") {
      const current = reply.current_cents ?? a.current_cents;
      if (reply.status === "leading") {
        if (fields.max_cents) this.myMax.set(a.id, fields.max_cents);
        else this.myMax.delete(a.id);
        this.myStatus = { auctionId: a.id, kind: "ok", text: this.leadingText(a.id, current) };
        done?.();
      } else this.myStatus = { auctionId: a.id, kind: "bad", text: BID_TEXT[reply.status]?.(current) || reply.status };
    } else {
      const wait = reply.details?.retry_after_s;
      this.myStatus = { auctionId: a.id, kind: "bad", text: wait ? `${reply.message} (wait ${Math.ceil(wait)} s)` : reply.message || "The bid did not go through." };
    }
    this.renderAuction();
  }

  async enter() {
    const g = this.giveaway;
    const room = this.ctx.room();
    if (!g || !room || this.entering) return;
    this.entering = true;
    this.renderGiveaway();
    const reply = await room.request({ type: "enter", giveaway_id: g.id });
    this.entering = false;
    if (reply.type === "error") this.giveawayStatus = { id: g.id, kind: "bad", text: reply.message || "You cannot enter." };
    else {
      this.entered.add(g.id);
      this.giveawayStatus = { id: g.id, kind: "ok", text: "You are in the draw. Good luck!" };
    }
    this.renderGiveaway();
  }
}
