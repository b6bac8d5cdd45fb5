// The account page (/account): profile (picture, name, phone; the email is shown), password, saved addresses
// (add, edit, delete, make default) and the sessions signed in (sign one out, or all the others).
import { api, currentUser, h, showError, submitting, toast } from "./api.js";
import { imageTag, uploadPicture } from "./images.js";
import { addressBody, addressFields, addressLine, dateTime, requireUser, shopHeader } from "./shop.js";

const $ = (id) => document.getElementById(id);

function showProfile(user) {
  $("email").textContent = user.email;
  // Verified by the emailed link (selling needs it); otherwise the way to a new link.
  $("email-verified").replaceChildren(
    ...(user.email_verified ? ["(verified)"] : ["(not verified: ", h("a", { href: "/verify-email" }, "verify it"), ")"]),
  );
  $("profile-name").value = user.display_name;
  $("profile-phone").value = user.phone || "";
}

// ---- avatar: a chosen file is uploaded at once (the server checks and resizes it), shown as the server
// stored it, and worn only once the user says so (PATCH /api/me {avatar_image_id}).

let avatar = null; // the picture worn now
let candidate = null; // uploaded, shown, not yet worn

function showAvatar() {
  const shown = candidate || avatar;
  $("avatar-preview").replaceChildren(
    shown ? imageTag(shown, { alt: candidate ? "Your new picture" : "Your picture", sizes: "80px", className: "avatar", eager: true }) : h("span", { class: "avatar", role: "img", "aria-label": "No picture" }),
  );
  $("avatar-note").textContent = candidate
    ? "This is how your new picture looks. Use it?"
    : avatar ? "Your picture." : "No picture yet.";
  $("avatar-use").hidden = !candidate;
  $("avatar-cancel").hidden = !candidate;
  $("avatar-remove").hidden = !avatar || !!candidate;
}

async function wearAvatar(imageId, done) {
  try {
    const { user } = await api("PATCH", "/api/me", { avatar_image_id: imageId });
    avatar = user.avatar;
    candidate = null;
    showAvatar();
    await currentUser({ refresh: true });
    toast(done, "ok");
  } catch (err) {
    showError(err);
  }
}

$("avatar-file").addEventListener("change", async (event) => {
  const input = event.target;
  const file = input.files && input.files[0];
  if (!file) return;
  input.disabled = true;
  $("avatar-note").textContent = "Uploading…";
  let problem = null;
  try {
    candidate = await uploadPicture("/api/me/avatar", file);
  } catch (err) {
    problem = err.message;
  }
  input.disabled = false;
  input.value = "";
  showAvatar();
  // Why the server refused it (not a picture, too big), next to the control that sent it.
  if (problem) $("avatar-note").textContent = `That file was not taken: ${problem}`;
});
$("avatar-use").addEventListener("click", () => wearAvatar(candidate.id, "Picture saved."));
$("avatar-cancel").addEventListener("click", () => {
  candidate = null;
  showAvatar();
});
$("avatar-remove").addEventListener("click", () => wearAvatar(null, "Picture removed."));

$("profile").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = await submitting(form, () => api("PATCH", "/api/me", {
    display_name: form.elements.display_name.value.trim(),
    phone: form.elements.phone.value.trim() || null,
  })).catch(() => null);
  if (result) {
    showProfile(result.user);
    await currentUser({ refresh: true });
    shopHeader();
    toast("Profile saved.", "ok");
  }
});

$("password").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = await submitting(form, () => api("POST", "/api/me/password", {
    current_password: form.elements.current_password.value,
    new_password: form.elements.new_password.value,
  })).catch(() => null);
  if (result) {
    form.reset();
    const others = result.ended_sessions;
    toast(`Password changed.${others ? ` Signed out ${others} other session${others === 1 ? "" : "s"}.` : ""}`, "ok");
    await loadSessions();
  }
});

// ---- addresses --------------------------------------------------------------------------------

function addressItem(a) {
  const editForm = h("form", { class: "stack", novalidate: true }, ...addressFields(`edit-${a.id}`, a),
    h("button", { type: "submit" }, "Save changes"), h("p", { class: "form-error", role: "alert" }));
  editForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = addressBody(editForm); // before submitting() disables the controls (FormData skips those)
    const result = await submitting(editForm, () => api("PATCH", `/api/me/addresses/${a.id}`, body)).catch(() => null);
    if (result) {
      toast("Address saved.", "ok");
      await loadAddresses();
    }
  });
  const act = (label, call, done) => h("button", {
    type: "button",
    onclick: async () => {
      try {
        await call();
        toast(done, "ok");
        await loadAddresses();
      } catch (err) {
        showError(err);
      }
    },
  }, label);
  return h("li", { class: "stack", dataset: { address: a.id } },
    h("p", {}, addressLine(a), a.phone ? ` · ${a.phone}` : "", " ", a.is_default ? h("span", { class: "badge" }, "Default") : null),
    h("div", { class: "row compact" },
      a.is_default ? null : act("Make default", () => api("PATCH", `/api/me/addresses/${a.id}`, { is_default: true }), "Default address changed."),
      act("Delete", () => api("DELETE", `/api/me/addresses/${a.id}`), "Address deleted.")),
    h("details", { class: "inline" }, h("summary", {}, "Edit…"), editForm));
}

async function loadAddresses() {
  const { items } = await api("GET", "/api/me/addresses");
  $("address-list").replaceChildren(...items.map(addressItem));
  $("addresses-empty").hidden = items.length > 0;
}

$("address-fields").replaceChildren(...addressFields("new-address"));
$("address-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = { ...addressBody(form), is_default: $("address-default").checked };
  const result = await submitting(form, () => api("POST", "/api/me/addresses", body)).catch(() => null);
  if (result) {
    form.reset();
    $("add-address").open = false;
    toast("Address saved.", "ok");
    await loadAddresses();
  }
});

// ---- sessions ---------------------------------------------------------------------------------

function sessionItem(s) {
  const what = [s.user_agent || "Unknown browser", s.address ? `from ${s.address}` : null].filter(Boolean).join(" ");
  const end = h("button", { type: "button", "aria-label": `Sign out ${what}` }, "Sign out");
  end.addEventListener("click", async () => {
    try {
      await api("DELETE", `/api/me/sessions/${s.id}`);
      if (s.current) {
        location.href = "/signin";
        return;
      }
      toast("Signed out there.", "ok");
      await loadSessions();
    } catch (err) {
      showError(err);
    }
  });
  return h("li", { class: "row spread", dataset: { session: s.id } },
    h("span", {}, what, h("br"),
      h("span", { class: "muted small" }, `Signed in ${dateTime.format(new Date(s.created_at))} · last used ${dateTime.format(new Date(s.last_seen_at))}`)),
    s.current ? h("span", { class: "badge" }, "This browser") : end);
}

async function loadSessions() {
  const { sessions } = await api("GET", "/api/me/sessions");
  $("sessions").replaceChildren(...sessions.map(sessionItem));
  $("end-others").hidden = sessions.length < 2;
}

$("end-others").addEventListener("click", async () => {
  try {
    const r = await api("DELETE", "/api/me/sessions");
    toast(`Signed out ${r.ended_sessions} other session${r.ended_sessions === 1 ? "" : "s"}.`, "ok");
    await loadSessions();
  } catch (err) {
    showError(err);
  }
});

requireUser().then(async (user) => {
  shopHeader();
  showProfile(user);
  avatar = user.avatar;
  showAvatar();
  await Promise.all([loadAddresses(), loadSessions()]);
  if (location.hash === "#addresses") $("addresses").scrollIntoView();
}).catch(showError);
