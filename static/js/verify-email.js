// /verify-email?token=...: verifies the emailed link on load and says done or why not; a signed-in account
// that is not verified yet can ask for a new link here (at most one a minute, five a day).
import { api, currentUser, h, renderHeader, submitting } from "./api.js";

const status = document.getElementById("verify-status");
const resend = document.getElementById("resend");
const hint = document.getElementById("resend-hint");
const next = document.getElementById("verify-next");

function link(href, text) {
  return h("a", { href }, text);
}

function done(text) {
  status.textContent = text;
  next.replaceChildren("Go to ", link("/", "the shows"), ", or ", link("/seller", "start selling"), ".");
  next.hidden = false;
}

async function offerResend(why) {
  const user = await currentUser().catch(() => null);
  if (!user) {
    next.replaceChildren(link(`/signin?next=${encodeURIComponent("/verify-email")}`, "Sign in"), " to get a new link.");
    next.hidden = false;
    return;
  }
  if (user.email_verified) {
    done(`${why ? why + " " : ""}Your email address ${user.email} is verified already.`.trim());
    return;
  }
  hint.textContent = `We send the link to ${user.email}.`;
  resend.hidden = false;
}

resend.addEventListener("submit", async (e) => {
  e.preventDefault();
  await submitting(resend, () => api("POST", "/api/auth/verify-email/resend")).then(
    () => {
      status.textContent = "A new link is on its way. Open it from the email to verify your address.";
      resend.hidden = true;
    },
    () => null,
  );
});

async function start() {
  renderHeader();
  const token = new URLSearchParams(location.search).get("token");
  if (!token) {
    status.textContent = "Open the link from the email we sent you to verify your address.";
    await offerResend("");
    return;
  }
  try {
    await api("POST", "/api/auth/verify-email", { token });
    // The header and later pages ask again: the account is verified now.
    await currentUser({ refresh: true }).catch(() => null);
    done("Thank you: your email address is verified.");
  } catch (err) {
    status.textContent = `This link did not work: ${err.message}`;
    await offerResend(status.textContent);
  }
}

start();
