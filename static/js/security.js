// The account's security page (/security): turn two-factor sign-in on (QR code or key, then a first code),
// see the recovery codes once, make new ones, turn it off.
import { api, currentUser, h, renderHeader, submitting } from "./api.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
// The codes go in the body, so a wrong one is this page's error, not a reason to ask again.
const BODY_CODE = { stepUp: false };

// Rows of "0"/"1" modules as one SVG path, with the quiet zone of four modules a scanner needs.
function drawQr(svg, rows) {
  const size = rows.length + 8;
  let d = "";
  rows.forEach((row, y) => {
    [...row].forEach((bit, x) => {
      if (bit === "1") d += `M${x + 4} ${y + 4}h1v1h-1z`;
    });
  });
  const background = document.createElementNS(SVG, "rect");
  background.setAttribute("width", size);
  background.setAttribute("height", size);
  background.setAttribute("fill", "#fff");
  const modules = document.createElementNS(SVG, "path");
  modules.setAttribute("d", d);
  modules.setAttribute("fill", "#000");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("shape-rendering", "crispEdges");
  svg.replaceChildren(background, modules);
}

function showCodes(codes) {
  $("codes-list").replaceChildren(...codes.map((c) => h("li", {}, h("code", {}, c))));
  $("codes").hidden = false;
}

async function show() {
  const state = await api("GET", "/api/me/two-factor");
  $("two-factor-state").textContent = state.enabled
    ? `On since ${new Date(state.enabled_at).toLocaleDateString()}. Recovery codes left: ${state.recovery_codes_left}.`
    : "Off.";
  $("setup").hidden = state.enabled;
  $("manage").hidden = !state.enabled;
  $("confirm").hidden = true;
}

$("setup").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const setup = await submitting(form, () => api("POST", "/api/me/two-factor/setup", { password: form.password.value }))
    .catch(() => null);
  if (!setup) return;
  form.reset();
  form.hidden = true;
  $("codes").hidden = true;
  drawQr($("qr"), setup.qr_matrix);
  $("secret").textContent = setup.secret;
  $("confirm").hidden = false;
  $("confirm-code").focus();
});

$("confirm").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { code: form.code.value.trim() };
  const result = await submitting(form, () => api("POST", "/api/me/two-factor/enable", body, BODY_CODE)).catch(() => null);
  if (!result) return;
  form.reset();
  await show();
  showCodes(result.recovery_codes);
});

$("regenerate").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { code: form.code.value.trim() };
  const result = await submitting(form, () => api("POST", "/api/me/two-factor/recovery-codes", body, BODY_CODE))
    .catch(() => null);
  if (!result) return;
  form.reset();
  await show();
  showCodes(result.recovery_codes);
});

$("disable").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { code: form.code.value.trim() };
  const done = await submitting(form, () => api("POST", "/api/me/two-factor/disable", body, BODY_CODE))
    .then(() => true, () => false);
  if (!done) return;
  form.reset();
  $("codes").hidden = true;
  await show();
});

renderHeader();
currentUser().then(async (user) => {
  $("loading").hidden = true;
  if (!user) {
    $("signed-out").hidden = false;
    return;
  }
  $("two-factor").hidden = false;
  await show();
}, () => {
  $("loading").textContent = "The server cannot be reached. Try again later.";
});
