// What the admin console's modules share: the page's state, dates, badges, who a user id is, and tables
// filled a page at a time from the API's cursor.
import { api, h, money } from "/static/js/api.js";

export const $ = (id) => document.getElementById(id);
// `me`: the signed-in admin's user id (an admin cannot deactivate themselves).
export const state = { currency: "USD", me: null, cursors: {}, people: new Map(), series: null };
export const fmt = (cents) => money(cents, state.currency);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export function badge(status, label = status.replace("_", " ")) {
  return h("span", { class: `badge status-${status}` }, label);
}

export function emptyRow(columns, text) {
  return h("tr", {}, h("td", { colspan: String(columns), class: "muted" }, text));
}

// Who a user id is ("Name <email>"), looked up once per page through the wallet search.
export function who(userId) {
  if (!state.people.has(userId)) {
    state.people.set(
      userId,
      api("GET", `/api/admin/wallets?q=${encodeURIComponent(userId)}&limit=1`).then(
        (page) => (page.items[0] ? `${page.items[0].display_name} <${page.items[0].email}>` : userId),
        () => userId,
      ),
    );
  }
  return state.people.get(userId);
}

export function personCell(userId) {
  const cell = h("td", { class: "person" }, "…");
  who(userId).then((text) => (cell.textContent = text));
  return cell;
}

// A page of a list into a table body; `more` shows the next page after the rows already there.
// A list's loads in the order they began: one that finishes after a newer one began (the tab's first load
// after a search) is dropped, so an older answer never redraws the rows someone is working in.
const listLoads = {};
export async function loadPage(name, path, params, body, render, columns, emptyText, more) {
  const query = new URLSearchParams(params);
  if (more && state.cursors[name]) query.set("cursor", state.cursors[name]);
  const load = (listLoads[name] = (listLoads[name] || 0) + 1);
  const page = await api("GET", `${path}?${query}`);
  if (listLoads[name] !== load) return;
  const rows = page.items.map(render);
  if (!more) body.replaceChildren(...(rows.length ? rows : [emptyRow(columns, emptyText)]));
  else body.append(...rows);
  state.cursors[name] = page.next_cursor;
  $(`${name}-more`).hidden = !page.next_cursor;
}
