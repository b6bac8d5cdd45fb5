// /reset-password: without ?token=, ask for a reset link by email (the answer is the same whether or not
// the address has an account); with the emailed ?token=, choose the new password, then sign in with it.
import { ApiError, api, renderHeader, showFormError, submitting } from "./api.js";

const token = new URLSearchParams(location.search).get("token");
const requestCard = document.getElementById("request-card");
const confirmCard = document.getElementById("confirm-card");

function showRequest(why) {
  requestCard.hidden = false;
  if (why) {
    document.getElementById("request-heading").textContent = "Ask for a new link";
    const form = document.getElementById("request");
    showFormError(form, new ApiError(422, "invalid_token", why, {}));
  }
}

document.getElementById("request").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const email = form.email.value.trim();
  await submitting(form, () => api("POST", "/api/auth/password-reset", { email })).then(
    () => {
      const sent = document.getElementById("request-sent");
      sent.textContent = `If ${email} is the email of an account, a link to reset its password is on its way. ` +
        "Check your inbox (and spam folder); it works for an hour.";
      sent.hidden = false;
      form.hidden = true;
    },
    () => null,
  );
});

document.getElementById("confirm").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  if (form.password.value !== form.again.value) {
    showFormError(form, new ApiError(422, "validation_error", "The two passwords differ.", {
      errors: [{ loc: ["again"], msg: "the two passwords differ", type: "mismatch" }],
    }));
    form.again.focus();
    return;
  }
  await submitting(form, () => api("POST", "/api/auth/password-reset/confirm", { token, password: form.password.value }))
    .then(
      () => {
        form.hidden = true;
        document.getElementById("confirm-done").hidden = false;
      },
      (err) => {
        if (err.code === "invalid_token") {
          confirmCard.hidden = true;
          showRequest(`This link did not work: ${err.message}`);
        }
      },
    );
});

renderHeader();
if (token) {
  confirmCard.hidden = false;
  document.getElementById("confirm-password").focus();
} else {
  showRequest("");
}
