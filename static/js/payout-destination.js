// Where a seller's (or guest host's) payouts go: the bank account, shown masked (holder, country, the last
// four characters), with Change and Remove, or the form to add one (GET/PUT/DELETE
// /api/me/payout-destination). The number is sent once and never comes back to the page.
import { api, h, submitting, toast } from "/static/js/api.js";

let formCount = 0;

function field(id, label, props) {
  return [h("label", { for: id }, label), h("input", { id, ...props })];
}

function describe(d) {
  const number = d.kind === "iban" ? `IBAN ending ${d.last4}` : `account ending ${d.last4}`;
  return `${d.holder_name} · ${number} · ${d.country}`;
}

// Draws the destination (or the form) into `slot`; `changed(destination or null)` is told after a save or
// a removal. Returns the destination shown (null when there is none).
export async function showPayoutDestination(slot, changed = () => {}) {
  const { destination } = await api("GET", "/api/me/payout-destination");
  if (destination) drawMasked(slot, destination, changed);
  else drawForm(slot, null, changed);
  return destination;
}

function drawMasked(slot, destination, changed) {
  const remove = h("button", { type: "button", "aria-label": "Remove payout destination" }, "Remove");
  const change = h("button", { type: "button" }, "Change");
  change.addEventListener("click", () => drawForm(slot, destination, changed));
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await api("DELETE", "/api/me/payout-destination");
    } catch {
      remove.disabled = false;
      return;
    }
    toast("Payout destination removed.", "ok");
    drawForm(slot, null, changed);
    changed(null);
  });
  slot.replaceChildren(
    h("p", { class: "payout-destination", dataset: { testid: "payout-destination" } }, describe(destination)),
    h("div", { class: "row" }, change, remove),
  );
}

function drawForm(slot, current, changed) {
  const n = ++formCount;
  const kind = h(
    "select",
    { id: `pd-kind-${n}`, "aria-label": "Bank details as" },
    h("option", { value: "iban" }, "IBAN"),
    h("option", { value: "account" }, "Account and routing number"),
  );
  kind.value = current?.kind || "iban";
  const iban = h("div", { class: "row" }, ...field(`pd-iban-${n}`, "IBAN", { name: "iban", maxlength: "50", autocomplete: "off" }));
  const account = h(
    "div",
    { class: "row" },
    ...field(`pd-account-${n}`, "Account number", { name: "account_number", maxlength: "50", autocomplete: "off" }),
    ...field(`pd-routing-${n}`, "Routing number", { name: "routing_number", maxlength: "50", autocomplete: "off", title: "routing, sort or transit code" }),
  );
  const showKind = () => {
    iban.hidden = kind.value !== "iban";
    account.hidden = kind.value === "iban";
  };
  kind.addEventListener("change", showKind);
  showKind();
  const form = h(
    "form",
    { class: "card stack", "aria-label": "Payout destination" },
    h("div", { class: "row" },
      ...field(`pd-holder-${n}`, "Account holder", { name: "holder_name", required: true, maxlength: "200", value: current?.holder_name || "" }),
      ...field(`pd-country-${n}`, "Country (2 letters)", { name: "country", required: true, maxlength: "2", size: "3", pattern: "[A-Za-z]{2}", title: "the bank's country, two letters (DE, US, GB…)", value: current?.country || "" }),
      h("label", { for: kind.id }, "Bank details as"), kind),
    iban,
    account,
    h("div", { class: "row" },
      h("button", { class: "primary", type: "submit" }, "Save payout destination"),
      current ? h("button", { type: "button", "data-cancel": "" }, "Cancel") : null),
    h("p", { class: "form-error", role: "alert" }),
  );
  form.querySelector("[data-cancel]")?.addEventListener("click", () => drawMasked(slot, current, changed));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body = { holder_name: data.get("holder_name"), country: String(data.get("country")).toUpperCase() };
    if (kind.value === "iban") body.iban = data.get("iban");
    else Object.assign(body, { account_number: data.get("account_number"), routing_number: data.get("routing_number") });
    const result = await submitting(form, () => api("PUT", "/api/me/payout-destination", body)).catch(() => null);
    if (!result) return;
    toast("Payout destination saved.", "ok");
    drawMasked(slot, result.destination, changed);
    changed(result.destination);
  });
  slot.replaceChildren(
    h("p", { class: "muted" }, current ? "Change where your payouts go." : "Add the bank account your payouts go to: payouts need one."),
    form,
  );
}
