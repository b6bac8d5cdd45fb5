// The studio's auctions and giveaways: start one on a featured variant over the host's socket and follow
// its bids and entries live (docs/PROTOCOL.md: the `auction` and `giveaway` frames and events). The forms
// are in studio.html and never rebuilt, so what the host is typing survives every redraw.
import { h, money, showFormError, toCents, toast } from "./api.js";
import { lotTitle } from "./formats.js";
import { clock, variantLabel } from "./room.js";

const $ = (id) => document.getElementById(id);

function variantOptions(products, stock) {
  return products.flatMap((p) =>
    p.variants.map((v) => {
      const label = p.variants.length > 1 ? `${p.title} (${variantLabel(v)})` : p.title;
      return h("option", { value: v.id }, `${label} · ${money(v.price_cents)} · ${stock.get(v.id) ?? v.available} in stock`);
    }),
  );
}

export class StudioFormats {
  // ctx: {send(frame), stream(), stock(), flashRunning(), note(text)}
  constructor(ctx) {
    this.ctx = ctx;
    this.auction = null;
    this.giveaway = null;
    this.lastLogged = null; // the auction id and bid count last written to the bid log
    $("auction-form").addEventListener("submit", (e) => this.startAuction(e));
    $("giveaway-form").addEventListener("submit", (e) => this.startGiveaway(e));
    $("giveaway-draw").addEventListener("click", async () => {
      $("giveaway-draw").disabled = true;
      await this.ctx.send({ type: "end_giveaway" });
      $("giveaway-draw").disabled = false;
    });
    setInterval(() => this.tick(), 1000);
  }

  // A show was chosen: its variants in the pickers, what ran before cleared.
  reset() {
    this.auction = null;
    this.giveaway = null;
    this.lastLogged = null;
    $("bid-log").replaceChildren();
    this.fillPickers();
    this.render();
  }

  // The pickers' options with each variant's stock, keeping the host's choice (an open picker is not
  // rebuilt under them: when the variants are the same, only the texts change).
  fillPickers() {
    const s = this.ctx.stream();
    for (const id of ["au-variant", "ga-variant"]) {
      const sel = $(id);
      const fresh = variantOptions(s?.products || [], this.ctx.stock());
      const same = fresh.length === sel.options.length && fresh.every((o, i) => sel.options[i].value === o.value);
      if (same) {
        fresh.forEach((o, i) => sel.options[i].textContent !== o.textContent && (sel.options[i].textContent = o.textContent));
        continue;
      }
      const chosen = sel.value;
      sel.replaceChildren(...fresh);
      if ([...sel.options].some((o) => o.value === chosen)) sel.value = chosen;
    }
  }

  welcome(state) {
    this.setAuction(state.auction || (this.auction?.ended ? this.auction : null));
    this.giveaway = state.giveaway || (this.giveaway?.ended ? this.giveaway : null);
    this.render();
  }

  event(e) {
    if (e.type === "auction") {
      this.setAuction(e.auction || e);
      return true;
    }
    if (e.type === "giveaway") {
      const g = e.giveaway || e;
      if (g.ended && !this.giveaway?.ended) this.ctx.note(g.winner ? `Giveaway drawn: ${g.winner.name} wins.` : "Giveaway ended without entries.");
      this.giveaway = g;
      return true;
    }
    return false;
  }

  setAuction(a) {
    if (a && (a.id !== this.lastLogged?.id || (a.bids || 0) > this.lastLogged.bids) && a.leader) {
      if (a.id !== this.lastLogged?.id) $("bid-log").replaceChildren();
      // One line per change of the lead (a tick may carry several bids: the count says how many).
      $("bid-log").prepend(h("li", {}, `${money(a.current_cents)} · ${a.leader.name} · bid ${a.bids}`));
    }
    if (a) this.lastLogged = { id: a.id, bids: a.bids || 0 };
    if (a?.ended && !this.auction?.ended && this.auction?.id === a.id) {
      this.ctx.note(a.winner ? `Auction won by ${a.winner.name} at ${money(a.current_cents)}.` : "Auction ended without bids.");
    }
    this.auction = a || null;
  }

  auctionRunning() {
    return !!this.auction && !this.auction.ended;
  }

  render() {
    this.fillPickers();
    const live = this.ctx.stream()?.status === "live";
    const a = this.auction;
    const products = this.ctx.stream()?.products || [];
    $("auction-live").hidden = !a;
    if (a) {
      $("auction-live-product").textContent = lotTitle(a.product, a.variant_id, products);
      $("auction-live-mode").textContent = a.mode === "sudden_death" ? "Sudden death" : "Anti-snipe";
      $("auction-live-current").textContent = money(a.current_cents);
      $("auction-live-leader").textContent = a.leader ? `leading: ${a.leader.name}` : "no bids yet";
      $("auction-live-leader-line").hidden = !!a.ended;
      $("auction-live-bids").textContent = a.bids === 1 ? "1 bid" : `${a.bids || 0} bids`;
      $("auction-live-clock-line").hidden = !!a.ended;
      const winner = $("auction-live-winner");
      winner.hidden = !a.ended;
      winner.textContent = a.winner ? `Sold to ${a.winner.name} for ${money(a.current_cents)}` : "Ended without bids";
    }
    const auctionRuns = this.auctionRunning();
    $("auction-form").querySelector("button[type=submit]").disabled = !live || auctionRuns || this.ctx.flashRunning();
    const g = this.giveaway;
    $("giveaway-live").hidden = !g;
    if (g) {
      $("giveaway-live-product").textContent = lotTitle(g.product, g.variant_id, products);
      $("giveaway-live-entries").textContent = g.entries === 1 ? "1 entry" : `${g.entries || 0} entries`;
      $("giveaway-live-clock-line").hidden = !!g.ended;
      $("giveaway-live-hash").textContent = g.seed_hash || "";
      $("giveaway-live-seed-line").hidden = !g.seed;
      $("giveaway-live-seed").textContent = g.seed || "";
      const winner = $("giveaway-live-winner");
      winner.hidden = !g.ended;
      winner.textContent = g.winner ? `Winner: ${g.winner.name}` : "Nobody entered";
      $("giveaway-draw").hidden = !!g.ended;
    }
    $("giveaway-form").querySelector("button[type=submit]").disabled = !live || (!!g && !g.ended);
    this.tick();
  }

  tick() {
    const a = this.auction;
    if (a && !a.ended) $("auction-live-clock").textContent = clock((new Date(a.ends_at) - Date.now()) / 1000);
    const g = this.giveaway;
    if (g && !g.ended) $("giveaway-live-clock").textContent = clock((new Date(g.ends_at) - Date.now()) / 1000);
  }

  async startAuction(e) {
    e.preventDefault();
    const form = e.currentTarget;
    let frame;
    try {
      frame = {
        type: "auction",
        variant_id: form.variant.value,
        start_cents: toCents(form.start.value),
        duration_s: parseInt(form.duration.value, 10),
        mode: form.mode.value,
      };
      if (form.increment.value) frame.increment_cents = toCents(form.increment.value);
      if (form.extend.value && frame.mode === "standard") frame.extend_s = parseInt(form.extend.value, 10);
    } catch (err) {
      showFormError(form, err);
      return;
    }
    const reply = await this.ctx.send(frame);
    if (reply?.type === "ack") {
      form.querySelector(".form-error").textContent = "";
      toast("Auction started.", "ok");
    } else if (reply?.type === "error") showFormError(form, reply);
  }

  async startGiveaway(e) {
    e.preventDefault();
    const form = e.currentTarget;
    const frame = {
      type: "giveaway",
      variant_id: form.variant.value,
      duration_s: parseInt(form.duration.value, 10),
      eligibility: form.eligibility.value,
    };
    const reply = await this.ctx.send(frame);
    if (reply?.type === "ack") {
      form.querySelector(".form-error").textContent = "";
      toast("Giveaway started.", "ok");
    } else if (reply?.type === "error") showFormError(form, reply);
  }
}
