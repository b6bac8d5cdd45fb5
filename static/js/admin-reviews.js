// The admin console's Reviews tab: hide a review by its id, with a reason (it leaves the product's list and
// rating; the audit log keeps who hid it and why). Review ids are in the product's reviews (the API).
import { api, h, submitting, toast } from "/static/js/api.js";
import { $ } from "/static/js/admin-common.js";

async function hide(event) {
  event.preventDefault();
  const form = event.target;
  const id = form.elements.review_id.value.trim();
  const result = await submitting(form, () =>
    api("POST", `/api/admin/reviews/${encodeURIComponent(id)}/hide`, { reason: form.elements.reason.value }),
  ).catch(() => null);
  if (!result) return;
  const r = result.review;
  $("hidden-reviews").prepend(
    h(
      "li",
      {},
      `Hidden: ${r.rating}/5 by ${r.author?.display_name || "a buyer"}`,
      r.text ? ` \u2014 \u201c${r.text}\u201d` : "",
    ),
  );
  form.reset();
  toast("Review hidden.", "ok");
}

export function setupReviews() {
  $("review-hide-form").addEventListener("submit", hide);
}
