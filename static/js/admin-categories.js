// The admin console's categories tab: the tree, a new category, and per category an edit form (name,
// slug, parent, position) and deletion with a choice of where its products go.
import { api, h, showError, submitting, toast } from "/static/js/api.js";
import { $ } from "/static/js/admin-common.js";

const TOP = "None (top level)";

// The tree in display order, each category with its depth and parent (the API's tree has no parent ids).
function flatten(items, depth = 0, parent = null, out = []) {
  for (const category of items) {
    out.push({ category, depth, parent });
    flatten(category.children || [], depth + 1, category, out);
  }
  return out;
}

function subtree(category, ids = new Set()) {
  ids.add(category.id);
  for (const child of category.children || []) subtree(child, ids);
  return ids;
}

function options(all, first, skip = new Set()) {
  return [
    h("option", { value: "" }, first),
    ...all
      .filter(({ category }) => !skip.has(category.id))
      .map(({ category, depth }) => h("option", { value: category.id }, `${"\u2014 ".repeat(depth)}${category.name}`)),
  ];
}

/** Show the tree and refresh every list of categories to choose from. */
export async function loadCategories() {
  const tree = await api("GET", "/api/categories");
  const all = flatten(tree.items);
  const list = (items) =>
    h(
      "ul",
      { class: "tree" },
      ...items.map((c) => {
        const entry = all.find((e) => e.category === c);
        const edit = editForm(entry, all);
        const remove = deleteForm(entry, all);
        return h(
          "li",
          { dataset: { categoryId: c.id } },
          h(
            "div",
            { class: "row compact" },
            h("span", {}, c.name),
            h("code", { class: "muted" }, c.slug),
            toggle(`Edit ${c.name}`, "Edit…", edit, remove),
            toggle(`Delete ${c.name}`, "Delete…", remove, edit),
          ),
          edit,
          remove,
          c.children && c.children.length ? list(c.children) : null,
        );
      }),
    );
  $("category-tree").replaceChildren(
    tree.items.length ? list(tree.items) : h("p", { class: "muted" }, "No categories yet."),
  );
  const parent = $("cat-parent");
  const chosen = parent.value;
  parent.replaceChildren(...options(all, TOP));
  // Unless the chosen parent was just deleted.
  parent.value = all.some((e) => e.category.id === chosen) ? chosen : "";
}

// A button that shows `panel` (closing `other`, the item's other form) or hides it again.
function toggle(label, text, panel, other) {
  const button = h("button", { type: "button", "aria-label": label, "aria-expanded": "false" }, text);
  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    other.hidden = true;
    for (const b of button.parentElement.querySelectorAll("button[aria-expanded]")) b.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) panel.querySelector("input, select").focus();
  });
  return button;
}

function field(form, id, label, control) {
  control.id = id;
  form.append(h("label", { for: id }, label), control);
  return control;
}

// Only what the admin changed is sent. The API does not say a category's position (the tree is in that
// order), so an empty position keeps it.
function editForm({ category: c, parent: current }, all) {
  const form = h("form", { class: "category-edit category-panel", hidden: true });
  const key = `cat-${c.id}`;
  const name = field(form, `${key}-name`, "Name", h("input", { required: true, maxlength: "200", value: c.name }));
  const slug = field(form, `${key}-slug`, "Slug", h("input", {
    required: true, maxlength: "64", pattern: "[a-z0-9]+(-[a-z0-9]+)*", value: c.slug,
    title: "lower-case letters and digits, words joined by -",
  }));
  const parent = field(form, `${key}-parent`, "Parent", h("select", {}, ...options(all, TOP, subtree(c))));
  parent.value = current ? current.id : "";
  const position = field(form, `${key}-position`, "Position", h("input", {
    type: "number", min: "0", max: "100000", placeholder: "as is", class: "narrow",
  }));
  form.append(h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Save")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const changes = {};
    if (name.value !== c.name) changes.name = name.value;
    if (slug.value !== c.slug) changes.slug = slug.value;
    if (parent.value !== (current ? current.id : "")) changes.parent_id = parent.value || null;
    if (position.value !== "") changes.position = Number(position.value);
    if (!Object.keys(changes).length) {
      toast("Nothing to change.");
      return;
    }
    const saved = await submitting(form, () => api("PATCH", `/api/admin/categories/${c.id}`, changes)).catch(() => null);
    if (!saved) return;
    toast(`Category ${saved.name} saved.`, "ok");
    await loadCategories();
  });
  return form;
}

function deleteForm({ category: c, parent }, all) {
  const form = h("form", { class: "category-delete category-panel", hidden: true });
  const target = h("select", { id: `cat-${c.id}-move-to` }, ...options(all, "No category", new Set([c.id])));
  form.append(
    h("label", { for: target.id }, "Move its products to"),
    target,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Delete")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = all.find((e) => e.category.id === target.value);
    const where = to ? `"${to.category.name}"` : "no category";
    let question = `Delete the category "${c.name}"? Its products move to ${where}`;
    if (c.children && c.children.length) question += `; its subcategories to ${parent ? `"${parent.name}"` : "the top level"}`;
    if (!confirm(`${question}.`)) return;
    const query = target.value ? `?move_to=${encodeURIComponent(target.value)}` : "";
    const result = await submitting(form, () => api("DELETE", `/api/admin/categories/${c.id}${query}`)).catch(
      () => null,
    );
    if (!result) return;
    const moved = result.moved_products;
    toast(`Category ${c.name} deleted; ${moved} product${moved === 1 ? "" : "s"} moved to ${where}.`, "ok");
    await loadCategories();
  });
  return form;
}

async function createCategory(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const created = await submitting(form, () =>
    api("POST", "/api/admin/categories", {
      name: data.get("name"),
      slug: data.get("slug"),
      parent_id: data.get("parent_id") || null,
      position: Number(data.get("position") || 0),
    }),
  ).catch(() => null);
  if (!created) return;
  form.reset();
  delete $("cat-slug").dataset.edited;
  toast(`Category ${created.name} created.`, "ok");
  await loadCategories().catch(showError);
}

// A slug suggested from the name until the admin edits the slug.
function suggestSlug() {
  const slug = $("cat-slug");
  if (slug.dataset.edited) return;
  slug.value = $("cat-name").value.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 64);
}

/** Wire the new-category form; call once when the console starts. */
export function setupCategories() {
  $("category-form").addEventListener("submit", createCategory);
  $("cat-name").addEventListener("input", suggestSlug);
  $("cat-slug").addEventListener("input", () => ($("cat-slug").dataset.edited = "1"));
}
