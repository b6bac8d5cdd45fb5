// Sign in or register, then go where the user was headed (?next=, only paths on this site).
import { api, currentUser, renderHeader, submitting } from "./api.js";

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this site: never "//evil.example" or "https://...".
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function done() {
  location.assign(nextPath());
}

document.getElementById("signin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { email: form.email.value.trim(), password: form.password.value };
  await submitting(form, () => api("POST", "/api/auth/login", body)).then(done, () => form.password.focus());
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
