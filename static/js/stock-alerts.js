// The back office's stock tab (/seller#stock): the shop's default low-stock threshold, the variants at or
// under their threshold (each with its own threshold and its history), and one variant's stock history,
// newest first, a page at a time. Everything a user typed reaches the page as text (h()), never as HTML.
import { api, h, showError, submitting, toast } from "/static/js/api.js";

const $ = (id) => document.getElementById(id);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const history = { variant: null, cursor: null };

export function setupStock() {
  $("threshold-form").addEventListener("submit", saveDefault);
  $("history-more").addEventListener("click", () => loadHistory(false).catch(showError));
  $("history-close").addEventListener("click", () => {
    $("history").hidden = true;
    history.variant = null;
  });
}

export async function loadStock() {
  const [settings, low] = await Promise.all([api("GET", "/api/seller/settings"), api("GET", "/api/seller/low-stock")]);
  const input = $("threshold-default");
  input.value = String(settings.low_stock_threshold);
  input.disabled = false;
  $("threshold-form").querySelector("button").disabled = false;
  const body = $("low-stock-table").tBodies[0];
  $("low-stock-empty").hidden = low.items.length > 0;
  body.replaceChildren(...low.items.map(lowStockRow));
}

async function saveDefault(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const value = Number($("threshold-default").value);
  const saved = await submitting(form, () => api("PATCH", "/api/seller/settings", { low_stock_threshold: value })).catch(
    () => null,
  );
  if (!saved) return;
  toast(`Variants are low at ${saved.low_stock_threshold} or fewer unless they have their own threshold.`, "ok");
  await loadStock();
}

function lowStockRow(item) {
  const own = h("input", {
    type: "number", min: "0", step: "1", class: "narrow", name: "low_stock_threshold",
    value: item.own_threshold === null ? "" : String(item.own_threshold), placeholder: "shop's",
    "aria-label": `Own low-stock threshold of ${item.sku}`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    own,
    h("button", { type: "submit", "aria-label": `Save threshold of ${item.sku}` }, "Save"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = own.value.trim() === "" ? null : Number(own.value);
    const ok = await submitting(form, () =>
      api("PATCH", `/api/variants/${item.variant_id}`, { low_stock_threshold: value }),
    ).catch(() => null);
    if (!ok) return;
    toast(value === null ? `${item.sku} follows the shop's threshold.` : `${item.sku} is low at ${value} or fewer.`, "ok");
    await loadStock();
  });
  return h(
    "tr",
    { dataset: { variantId: item.variant_id } },
    h("td", {}, item.title),
    h("td", {}, item.sku, item.digital ? h("span", { class: "badge" }, "digital") : null),
    h("td", { class: "stock" }, String(item.stock)),
    h("td", {}, String(item.threshold), item.own_threshold === null ? h("span", { class: "muted" }, " (shop's)") : null),
    h("td", {}, form),
    h("td", {}, historyButton(item.variant_id, item.sku)),
  );
}

// A "History" button for a variant; also used by the products tab's variant rows.
export function historyButton(variantId, sku) {
  return h(
    "button",
    { type: "button", "aria-label": `Stock history of ${sku}`, onclick: () => openHistory(variantId).catch(showError) },
    "History",
  );
}

export async function openHistory(variantId) {
  history.variant = variantId;
  if (location.hash !== "#stock") location.hash = "#stock";
  await loadHistory(true);
  $("history").hidden = false;
  $("history-title").focus();
}

async function loadHistory(reset) {
  const params = new URLSearchParams({ limit: "20" });
  if (!reset && history.cursor) params.set("cursor", history.cursor);
  const page = await api("GET", `/api/variants/${history.variant}/stock-history?${params}`);
  const v = page.variant;
  $("history-title").textContent = `Stock history of ${v.title} (${v.sku})`;
  $("history-summary").textContent =
    `${v.stock} in stock; low at ${v.threshold} or fewer` + (v.own_threshold === null ? " (the shop's threshold)" : "");
  const rows = page.items.map((m) =>
    h(
      "tr",
      { dataset: { movementId: String(m.id) } },
      h("td", {}, when(m.created_at)),
      h("td", { class: m.delta < 0 ? "negative" : "positive" }, m.delta > 0 ? `+${m.delta}` : String(m.delta)),
      h("td", {}, String(m.stock_after)),
      h("td", {}, m.reason),
      h("td", {}, m.actor ? m.actor.name || "" : ""),
      h("td", {}, m.order_id ? h("a", { href: `/orders/${m.order_id}` }, m.reference) : m.reference || ""),
    ),
  );
  const body = $("history-table").tBodies[0];
  if (reset) body.replaceChildren(...rows);
  else body.append(...rows);
  history.cursor = page.next_cursor;
  $("history-more").hidden = !page.next_cursor;
}
