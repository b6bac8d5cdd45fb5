// Deactivating and reactivating accounts from the admin console's wallets tab.
import { api, h, showError, submitting, toast } from "/static/js/api.js";

/** A user's wallet row as the API has it now (after a change, so the row shows what happened). */
export async function freshWallet(userId) {
  const page = await api("GET", `/api/admin/wallets?q=${encodeURIComponent(userId)}&limit=1`);
  return page.items[0];
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * The control for one account: "Deactivate…" (a reason, then the deactivation) or, once deactivated,
 * "Reactivate". `done(wallet, note)` is called with the account's row as it now is and a sentence
 * saying what the action did.
 */
export function accountAction(w, done) {
  if (w.deactivated_at) {
    const button = h(
      "button",
      {
        type: "button",
        "aria-label": `Reactivate ${w.email}`,
        onclick: async () => {
          button.disabled = true;
          try {
            await api("POST", `/api/admin/users/${w.user_id}/reactivate`);
            const note = w.seller_id
              ? "Reactivated: can sign in again; the shop stays suspended until approved."
              : "Reactivated: can sign in again.";
            toast(`${w.email}: ${note}`, "ok");
            done(await freshWallet(w.user_id).catch(() => ({ ...w, deactivated_at: null })), note);
          } catch (err) {
            button.disabled = false;
            showError(err);
          }
        },
      },
      "Reactivate",
    );
    return button;
  }
  const reason = h("input", {
    required: true, maxlength: "500", placeholder: "Reason", "aria-label": `Reason to deactivate ${w.email}`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    reason,
    h("button", { type: "submit", "aria-label": `Deactivate ${w.email}` }, "Deactivate"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await submitting(form, () =>
      api("POST", `/api/admin/users/${w.user_id}/deactivate`, { reason: reason.value }),
    ).catch(() => null);
    if (!result) return;
    const effects = ["signed out everywhere"];
    if (result.seller_id) effects.push("shop suspended");
    if (result.ended_streams) effects.push(`${plural(result.ended_streams, "live stream")} ended`);
    const note = `Deactivated: ${effects.join(", ")}.`;
    toast(`${w.email}: ${note}`, "ok");
    done(await freshWallet(w.user_id).catch(() => ({ ...w, deactivated_at: new Date().toISOString() })), note);
  });
  return h("details", { class: "inline" }, h("summary", {}, "Deactivate…"), form);
}
