// The admin console's audit log tab: sign-ins, sign-outs and admin actions, newest first, filtered by
// action (or a prefix such as "seller."), actor, target and dates, a page at a time.
import { api, h, showError } from "/static/js/api.js";
import { $, loadPage, when, who } from "/static/js/admin-common.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = 7;
// The filters of the last search, resolved (an actor's email turned into its id), so "Show more" goes on
// with what the rows above were found with even if the inputs have been edited since.
let filters = {};

/** Show the first page of the log for the filters in the form, or (`more`) the next page. */
export async function loadAudit(more) {
  if (!more) filters = await readFilters();
  return loadPage("audit", "/api/admin/audit", { limit: "50", ...filters }, $("audit-table").tBodies[0], auditRow,
    COLUMNS, "No entries match.", more);
}

async function readFilters() {
  const params = {};
  const action = $("audit-action").value.trim();
  if (action) params.action = action;
  const actor = $("audit-actor").value.trim();
  if (actor) params.actor = await userId(actor);
  const target = $("audit-target").value.trim();
  if (target) params.target = target;
  // Dates are the admin's own days: from the start of `since` to the end of `until`, sent as instants.
  const since = $("audit-since").value;
  if (since) params.since = new Date(`${since}T00:00`).toISOString();
  const until = $("audit-until").value;
  if (until) {
    const end = new Date(`${until}T00:00`);
    end.setDate(end.getDate() + 1);
    params.until = end.toISOString();
  }
  return params;
}

// An actor typed as a user id is used as it is; an email (or part of one) is found through the wallet
// search, which must name one user.
async function userId(text) {
  if (UUID.test(text)) return text;
  const page = await api("GET", `/api/admin/wallets?q=${encodeURIComponent(text)}&limit=25`);
  const exact = page.items.filter((u) => u.email.toLowerCase() === text.toLowerCase());
  const found = exact.length ? exact : page.items;
  if (found.length === 1) return found[0].user_id;
  throw new Error(found.length ? `Several users match "${text}": enter a full email.` : `No user matches "${text}".`);
}

// {"reason": "fraud", "amount_cents": 250} -> "reason: fraud; amount_cents: 250".
function compact(details) {
  return Object.entries(details || {})
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join("; ");
}

function auditRow(entry) {
  const target = h("td", {});
  if (entry.target_id) {
    target.append(h("span", { class: "muted" }, entry.target_type || ""), " ", h("code", {}, entry.target_id));
    // Wallets and accounts are named by their user's id: say whose.
    if (["wallet", "user"].includes(entry.target_type) && UUID.test(entry.target_id)) {
      const name = h("div", { class: "muted" });
      target.append(name);
      who(entry.target_id).then((text) => (name.textContent = text === entry.target_id ? "" : text));
    }
  }
  return h(
    "tr",
    { dataset: { auditId: String(entry.id) } },
    h("td", {}, when(entry.at)),
    h("td", {}, entry.actor_email || entry.actor_id || "—"),
    h("td", {}, h("code", {}, entry.action)),
    target,
    h("td", {}, entry.address || ""),
    h("td", { class: "user-agent", title: entry.user_agent || "" }, entry.user_agent || ""),
    h("td", { class: "details" }, compact(entry.details)),
  );
}

/** Wire the filter form and "Show more"; call once when the console starts. */
export function setupAudit() {
  $("audit-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit(false).catch(showError);
  });
  $("audit-clear").addEventListener("click", () => {
    $("audit-filters").reset();
    loadAudit(false).catch(showError);
  });
  $("audit-more").addEventListener("click", () => loadAudit(true).catch(showError));
}
