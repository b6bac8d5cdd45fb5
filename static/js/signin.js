// Sign in or register, then go where the user was headed (?next=, only paths on this site).
import { api, currentUser, renderHeader, submitting } from "./api.js";

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // The browser's own URL parser decides, not a look at the first characters: it strips tabs and
  // newlines and reads a backslash as "/", so "/\t/evil.example" leads to //evil.example.
  let url;
  try {
    url = new URL(next, location.origin);
  } catch {
    return "/";
  }
  // The whole URL, not its path: a path such as "//evil.example" (from "/.//evil.example") would be
  // read as another host once handed back to location.assign.
  return url.origin === location.origin ? url.href : "/";
}

function done() {
  location.assign(nextPath());
}

// With two-factor sign-in on, the server answers the right password with two_factor_required: the code
// field appears and the next submit sends the code along.
const codeStep = document.getElementById("signin-code-step");

document.getElementById("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { email: form.email.value.trim(), password: form.password.value };
  if (!codeStep.hidden && form.code.value.trim()) body.code = form.code.value.trim();
  await submitting(form, () => api("POST", "/api/auth/login", body)).then(done, (err) => {
    if (err.details.two_factor_required) {
      codeStep.hidden = false;
      form.code.required = true;
      form.code.value = "";
      form.code.focus();
    } else {
      form.password.focus();
    }
  });
});

document.getElementById("register").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { display_name: form.display_name.value.trim(), email: form.email.value.trim(), password: form.password.value };
  if (form.phone.value.trim()) body.phone = form.phone.value.trim();
  await submitting(form, () => api("POST", "/api/auth/register", body)).then(done, () => null);
});

renderHeader();
currentUser().then((user) => {
  if (user) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = `You are signed in as ${user.display_name}. Signing in again switches account.`;
    document.querySelector("main").prepend(p);
  }
}, () => null);
