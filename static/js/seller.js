// The seller back office (/seller): products and variants, stock, digital-code imports, orders, earnings
// and payouts. A signed-in user without a seller profile gets the application form instead.
// Everything a user typed reaches the page as text (h() and textContent), never as HTML.
import {
  api, ApiError, currentUser, h, money, newKey, renderHeader, showError, showTab, submitting, toast, toCents as cents,
} from "/static/js/api.js";
import { imageTag, uploadImage } from "/static/js/images.js";
import { showPayoutDestination } from "/static/js/payout-destination.js";
import { refundForm, shipForm } from "/static/js/orders.js";
import { loadReturns, loadReviews, loadShipping, returnActions, setupService } from "/static/js/seller-service.js";
import { historyButton, loadStock, setupStock } from "/static/js/stock-alerts.js";

const $ = (id) => document.getElementById(id);
const state = { seller: null, currency: "USD", categories: [], orderCursor: null, importing: null };
const fmt = (cents) => money(cents, state.currency);

// "size=M, colour=red" -> {size: "M", colour: "red"}
function parseOptions(text) {
  const options = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at < 1) throw new Error(`Options look like size=M, colour=red ("${part}" has no "=")`);
    options[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return options;
}

const describeOptions = (options) => Object.entries(options || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const statusLabel = (status) => status.replace("_", " ");

// -- tabs: plain links to #products, #orders, #earnings; one panel shown at a time ---------------------

const loaders = {
  products: loadProducts,
  orders: () => loadOrders(true),
  earnings: loadEarnings,
  shipping: loadShipping,
  returns: loadReturns,
  reviews: (fresh) => loadReviews(state.seller.id, fresh),
  stock: loadStock,
};

// -- products ------------------------------------------------------------------------------------------

async function loadCategories() {
  const tree = await api("GET", "/api/categories");
  const flat = [];
  const walk = (items, depth) => {
    for (const c of items) {
      flat.push({ id: c.id, name: `${"\u2014 ".repeat(depth)}${c.name}` });
      walk(c.children || [], depth + 1);
    }
  };
  walk(tree.items, 0);
  state.categories = flat;
  $("np-category").replaceChildren(
    h("option", { value: "" }, "None"),
    ...flat.map((c) => h("option", { value: c.id }, c.name)),
  );
}

// Every active product of the shop, a page at a time (a reload after a change shows them all again).
async function loadProducts(fresh = () => true) {
  const list = $("product-list");
  const products = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ seller: state.seller.id, limit: "100" });
    if (cursor) params.set("cursor", cursor);
    const page = await api("GET", `/api/products?${params}`);
    products.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && products.length < 1000);
  if (!fresh()) return;
  if (!products.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No products yet: create your first one above."));
    $("new-product").open = true;
    return;
  }
  list.replaceChildren(...products.map(productCard));
}

function productCard(product) {
  const titleId = `product-${product.id}`;
  return h(
    "article",
    { class: "card product", "aria-labelledby": titleId, dataset: { productId: product.id } },
    h(
      "div",
      { class: "row spread" },
      h("h3", { id: titleId }, product.title),
      h("span", { class: "badge" }, product.status),
    ),
    product.description ? h("p", { class: "muted" }, product.description) : null,
    galleryEditor(product),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "variants actions" },
        h("caption", { class: "visually-hidden" }, `Variants of ${product.title}`),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["SKU", "Options", "Price", "Available", "Stock"].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        h("tbody", {}, ...product.variants.map((v) => variantRow(product, v))),
      ),
    ),
    h("div", { class: "row" }, editForm(product), variantForm(product), archiveButton(product)),
  );
}

// The product's pictures in gallery order, each movable left/right and deletable, and an upload control.
// After any change the list reloads, so what shows is what the server stored.
function galleryEditor(product) {
  const images = product.images || [];
  const change = async (action, done) => {
    try {
      await action();
      toast(done, "ok");
      await loadProducts();
    } catch (err) {
      showError(err);
    }
  };
  const base = `/api/products/${product.id}/images`;
  const items = images.map((image, i) =>
    h(
      "li",
      { class: "gallery-item", dataset: { imageId: image.id } },
      imageTag(image, { alt: `Picture ${i + 1} of ${product.title}`, sizes: "120px" }),
      h(
        "div",
        { class: "row" },
        h("button", {
          type: "button", class: "small", disabled: i === 0, "aria-label": `Move picture ${i + 1} of ${product.title} left`,
          onclick: () => change(() => api("PATCH", `${base}/${image.id}`, { position: i - 1 }), "Picture moved."),
        }, "\u2190"),
        h("button", {
          type: "button", class: "small", disabled: i === images.length - 1,
          "aria-label": `Move picture ${i + 1} of ${product.title} right`,
          onclick: () => change(() => api("PATCH", `${base}/${image.id}`, { position: i + 1 }), "Picture moved."),
        }, "\u2192"),
        h("button", {
          type: "button", class: "small danger", "aria-label": `Delete picture ${i + 1} of ${product.title}`,
          onclick: () => {
            if (confirm("Delete this picture?")) change(() => api("DELETE", `${base}/${image.id}`), "Picture deleted.");
          },
        }, "Delete"),
      ),
    ),
  );
  const inputId = `pictures-${product.id}`;
  const input = h("input", {
    id: inputId, type: "file", name: "file", accept: "image/jpeg,image/png,image/webp", class: "visually-hidden",
    onchange: () => {
      const file = input.files[0];
      if (file) change(() => uploadImage(product.id, file), "Picture added.");
    },
  });
  return h(
    "section",
    { class: "gallery", "aria-label": `Pictures of ${product.title}` },
    items.length ? h("ul", { class: "gallery-list" }, ...items) : h("p", { class: "muted small" }, "No pictures yet."),
    h("label", { for: inputId, class: "button small" }, "Add a picture"),
    input,
    h("span", { class: "muted small" }, " JPEG, PNG or WebP"),
  );
}

function variantRow(product, variant) {
  const available = h("span", { class: "available" }, String(variant.available));
  let action;
  if (variant.digital) {
    action = h(
      "button",
      { type: "button", onclick: () => openImport(product, variant), "aria-label": `Import codes for ${variant.sku}` },
      "Import codes",
    );
  } else {
    const delta = h("input", {
      type: "number", step: "1", required: true, class: "narrow", name: "delta",
      "aria-label": `Stock change for ${variant.sku}`, placeholder: "+10 or -2",
    });
    const reason = h("input", {
      required: true, maxlength: "200", name: "reason", "aria-label": `Reason for ${variant.sku}`,
      placeholder: "Reason (restock, damaged…)",
    });
    const form = h(
      "form",
      { class: "row compact" },
      delta,
      reason,
      h("button", { type: "submit", "aria-label": `Adjust stock of ${variant.sku}` }, "Adjust"),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const change = Number(delta.value);
      if (!Number.isInteger(change) || change === 0) {
        toast("Enter a whole number of units to add (or a negative one to remove).", "error");
        return;
      }
      const result = await submitting(form, () =>
        api("POST", `/api/variants/${variant.id}/stock`, { delta: change, reason: reason.value },
          { headers: { "Idempotency-Key": newKey() } }),
      ).catch(() => null);
      if (!result) return;
      available.textContent = String(result.available);
      form.reset();
      toast(`Stock of ${variant.sku} is now ${result.available}.`, "ok");
    });
    action = form;
  }
  return h(
    "tr",
    { dataset: { variantId: variant.id } },
    h("td", {}, variant.sku, variant.digital ? h("span", { class: "badge" }, "digital") : null),
    h("td", {}, describeOptions(variant.options)),
    h("td", { class: "price" }, fmt(variant.price_cents), " ", priceForm(variant)),
    h("td", {}, available),
    h("td", {}, action, historyButton(variant.id, variant.sku)),
  );
}

function priceForm(variant) {
  const price = h("input", {
    type: "number", min: "0", step: "0.01", required: true, class: "narrow", value: (variant.price_cents / 100).toFixed(2),
    name: "price", dataset: { field: "price_cents" },
    "aria-label": `New price of ${variant.sku}`,
  });
  const form = h(
    "form",
    { class: "row compact" },
    price,
    h("button", { type: "submit", "aria-label": `Save price of ${variant.sku}` }, "Save"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await submitting(form, () =>
      api("PATCH", `/api/variants/${variant.id}`, { price_cents: cents(price.value) }),
    ).catch(() => null);
    if (ok) {
      toast(`${variant.sku} now costs ${fmt(cents(price.value))}.`, "ok");
      await loadProducts();
    }
  });
  return h("details", { class: "inline" }, h("summary", { "aria-label": `Change price of ${variant.sku}` }, "Change"), form);
}

function field(label, input) {
  const id = `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", {}, h("label", { for: id }, label), input);
}

function editForm(product) {
  const title = h("input", { name: "title", required: true, maxlength: "200", value: product.title });
  const description = h("textarea", { name: "description", rows: "2", maxlength: "10000" }, product.description);
  const form = h(
    "form",
    { class: "stack" },
    field("Title", title),
    field("Description", description),
    h("button", { type: "submit", class: "primary" }, "Save"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await submitting(form, () =>
      api("PATCH", `/api/products/${product.id}`, { title: title.value, description: description.value }),
    ).catch(() => null);
    if (ok) {
      toast("Product saved.", "ok");
      await loadProducts();
    }
  });
  return h("details", { class: "inline" }, h("summary", {}, "Edit"), form);
}

function variantForm(product) {
  const sku = h("input", { name: "sku", required: true, maxlength: "64", pattern: "[A-Za-z0-9._\\/\\-]+", title: "Letters, digits and . _ / -" });
  const options = h("input", { name: "options", placeholder: "size=L" });
  const price = h("input", { name: "price", dataset: { field: "price_cents" }, type: "number", min: "0", step: "0.01", required: true });
  const stock = h("input", { name: "stock", type: "number", min: "0", step: "1", value: "0" });
  const digital = h("input", { name: "digital", type: "checkbox" });
  const digitalId = `d-${product.id}`;
  digital.id = digitalId;
  const form = h(
    "form",
    { class: "form-grid" },
    field("SKU", sku),
    field("Options", options),
    field("Price", price),
    field("Stock", stock),
    h("div", { class: "check" }, digital, h("label", { for: digitalId }, "Digital codes")),
    h("div", {}, h("button", { type: "submit", class: "primary" }, "Add variant")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await submitting(form, async () => {
      const variant = {
        sku: sku.value,
        options: parseOptions(options.value),
        price_cents: cents(price.value),
        stock: digital.checked ? 0 : Number(stock.value || 0),
        digital: digital.checked,
      };
      return api("POST", `/api/products/${product.id}/variants`, { variants: [variant] });
    }).catch(() => null);
    if (ok) {
      toast(`Variant ${sku.value} added.`, "ok");
      await loadProducts();
    }
  });
  return h("details", { class: "inline" }, h("summary", {}, "Add variant"), form);
}

function archiveButton(product) {
  return h(
    "button",
    {
      type: "button",
      "aria-label": `Archive ${product.title}`,
      onclick: async () => {
        if (!confirm(`Archive "${product.title}"? It leaves your shop's listings; its orders stay.`)) return;
        try {
          await api("DELETE", `/api/products/${product.id}`);
          toast("Product archived.", "ok");
          await loadProducts();
        } catch (err) {
          showError(err);
        }
      },
    },
    "Archive",
  );
}

async function createProduct(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const digital = data.get("digital") === "on";
  const product = await submitting(form, () =>
    api("POST", "/api/products", {
      title: data.get("title"),
      description: data.get("description") || "",
      category_id: data.get("category_id") || null,
      variants: [
        {
          sku: data.get("sku"),
          options: parseOptions(data.get("options") || ""),
          price_cents: cents(data.get("price")),
          stock: digital ? 0 : Number(data.get("stock") || 0),
          digital,
        },
      ],
    }),
  ).catch(() => null);
  if (!product) return;
  form.reset();
  $("new-product").open = false;
  toast(`"${product.product.title}" is listed.`, "ok");
  await loadProducts();
}

// -- digital codes: CSV upload with progress, then the import report -----------------------------------

function openImport(product, variant) {
  state.importing = { product, variant };
  $("import-title").textContent = `Import codes into ${product.title} (${variant.sku})`;
  $("import-form").reset();
  $("import-progress").hidden = true;
  $("import-report").replaceChildren();
  const dialog = $("import");
  if (!dialog.open) dialog.showModal();
  $("import-file").focus();
}

// fetch() cannot report upload progress; XMLHttpRequest can. Errors come back as ApiError like api().
function upload(path, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Content-Type", "text/csv");
    xhr.setRequestHeader("Idempotency-Key", newKey());
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    });
    xhr.upload.addEventListener("load", () => onProgress(1));
    xhr.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(data);
      } else {
        const e = (data && data.error) || {};
        reject(new ApiError(xhr.status, e.code || "error", e.message || xhr.statusText || "Upload failed", e.details));
      }
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, "network", "The server cannot be reached. Check your connection.", {})),
    );
    xhr.send(body);
  });
}

async function importCodes(event) {
  event.preventDefault();
  const target = state.importing;
  const file = $("import-file").files[0];
  if (!target || !file) return;
  const bar = $("import-bar");
  const status = $("import-status");
  bar.value = 0;
  status.textContent = "Uploading… 0%";
  $("import-progress").hidden = false;
  $("import-report").replaceChildren();
  const form = $("import-form");
  const report = await submitting(form, () =>
    upload(`/api/variants/${target.variant.id}/units`, file, (fraction) => {
      const percent = Math.round(fraction * 100);
      bar.value = percent;
      status.textContent = percent < 100 ? `Uploading… ${percent}%` : "Uploaded, checking the codes…";
    }),
  ).catch(() => null);
  if (!report) {
    status.textContent = "Import failed.";
    return;
  }
  bar.value = 100;
  status.textContent = "100% uploaded";
  showReport(report);
  await loadProducts();
}

function showReport(report) {
  const summary = h(
    "p",
    { class: "import-summary" },
    `Imported ${report.imported} ${report.imported === 1 ? "code" : "codes"}.`,
    report.rejected.length
      ? ` ${report.rejected.length} ${report.rejected.length === 1 ? "row was" : "rows were"} not imported:`
      : " Every row was imported.",
  );
  const parts = [summary];
  if (report.rejected.length) {
    parts.push(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "report" },
          h("caption", { class: "visually-hidden" }, "Rows not imported"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Line"), h("th", { scope: "col" }, "Why"))),
          h(
            "tbody",
            {},
            ...report.rejected.map((r) => h("tr", {}, h("td", {}, String(r.line)), h("td", {}, r.error))),
          ),
        ),
      ),
    );
  }
  $("import-report").replaceChildren(...parts);
}

// -- orders ----------------------------------------------------------------------------------------------

async function loadOrders(reset) {
  const body = $("orders-table").tBodies[0];
  if (reset) state.orderCursor = null;
  const status = $("orders-status").value;
  const params = new URLSearchParams({ limit: "20" });
  if (status) params.set("status", status);
  if (state.orderCursor) params.set("cursor", state.orderCursor);
  const page = await api("GET", `/api/seller/orders?${params}`);
  const rows = page.items.map(orderRow);
  if (reset) body.replaceChildren(...rows);
  else body.append(...rows);
  if (reset && !rows.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No orders yet.")));
  }
  state.orderCursor = page.next_cursor;
  $("orders-more").hidden = !page.next_cursor;
}

function orderRow(order) {
  const row = h("tr", { dataset: { orderId: order.id } });
  fillOrderRow(row, order);
  return row;
}

function fillOrderRow(row, order) {
  const items = order.items.map((i) => `${i.quantity} \u00d7 ${i.title} (${i.sku})`).join("; ");
  const actions = h("div", { class: "row compact" });
  const canShip = ["paid", "partially_refunded"].includes(order.status) && !order.shipped_at;
  if (canShip) actions.append(shipForm(order, (updated) => fillOrderRow(row, updated)));
  // The seller's word moves the order on (returns and reviews open); the earnings still wait for the buyer
  // to confirm, or for the hold.
  const canDeliver = ["shipped", "partially_refunded"].includes(order.status) && order.shipped_at && !order.delivered_at;
  if (canDeliver) {
    actions.append(
      h(
        "button",
        {
          type: "button",
          "aria-label": `Mark order ${order.number} delivered`,
          onclick: async (event) => {
            event.target.disabled = true;
            try {
              const updated = await api("POST", `/api/orders/${order.id}/deliver`);
              fillOrderRow(row, updated.order);
              toast(`Order ${order.number} marked delivered.`, "ok");
            } catch (err) {
              event.target.disabled = false;
              showError(err);
            }
          },
        },
        "Mark delivered",
      ),
    );
  }
  const decide = returnActions(order, (updated) => fillOrderRow(row, updated));
  if (decide) actions.append(decide);
  if (["paid", "shipped", "delivered", "partially_refunded"].includes(order.status)) {
    actions.append(refundForm(order, (updated) => fillOrderRow(row, updated), state.currency));
  }
  const total = [h("span", { class: "price" }, fmt(order.total_cents))];
  if (order.refunded_cents) total.push(h("div", { class: "muted" }, `refunded ${fmt(order.refunded_cents)}`));
  row.replaceChildren(
    h("td", {}, order.number),
    h("td", {}, when(order.created_at)),
    h("td", {}, items),
    h("td", {}, ...total),
    h("td", {}, h("span", { class: `badge status-${order.status}` }, statusLabel(order.status))),
    h("td", {}, actions),
  );
}

// -- earnings and payouts --------------------------------------------------------------------------------

function figure(label, value, note) {
  return h("div", { class: "figure" }, h("span", { class: "label" }, label), h("strong", {}, value),
    note ? h("span", { class: "muted" }, note) : null);
}

async function loadEarnings() {
  const [earnings, payouts] = await Promise.all([
    api("GET", "/api/seller/earnings"),
    api("GET", "/api/seller/payouts?limit=50"),
  ]);
  $("earnings-figures").replaceChildren(
    figure("Available for payout", fmt(earnings.available_cents)),
    figure("Pending", fmt(earnings.pending_cents), "until delivery or the hold ends"),
    figure("Payouts requested", fmt(earnings.payouts_requested_cents)),
  );
  $("payout-amount").max = Math.max(earnings.available_cents, 0) / 100;
  // Not over a destination form being filled in (a payout decided meanwhile reloads the figures).
  if (!$("payout-destination").querySelector("form:focus-within")) {
    payoutsNeedDestination(await showPayoutDestination($("payout-destination"), payoutsNeedDestination));
  }
  $("payouts-table").tBodies[0].replaceChildren(
    ...(payouts.items.length
      ? payouts.items.map((p) =>
          h(
            "tr",
            {},
            h("td", {}, when(p.requested_at)),
            h("td", { class: "price" }, fmt(p.amount_cents)),
            h("td", {}, h("span", { class: `badge status-${p.status === "paid" ? "paid-out" : p.status}` }, p.status)),
            h("td", {}, [p.reason || p.provider_reference || "", p.destination ? `to ${p.destination.kind === "iban" ? "IBAN" : "account"} …${p.destination.last4}` : ""].filter(Boolean).join(" · ")),
          ),
        )
      : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No payouts yet."))]),
  );
  $("earnings-table").tBodies[0].replaceChildren(
    ...(earnings.recent.length
      ? earnings.recent.map((e) =>
          h(
            "tr",
            {},
            h("td", {}, e.order_number),
            h("td", {}, e.role),
            h("td", { class: "price" }, fmt(e.amount_cents)),
            h("td", {}, e.reversed_cents ? fmt(e.reversed_cents) : ""),
            h("td", {}, e.status === "pending" ? `pending until ${when(e.available_after)}` : "available"),
          ),
        )
      : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No earnings yet."))]),
  );
}

// A payout needs a destination: without one the request form waits, saying so.
function payoutsNeedDestination(destination) {
  $("payout-needs-destination").hidden = Boolean(destination);
  for (const control of $("payout-form").elements) control.disabled = !destination;
}

// Earnings released, or a payout decided (bell.js hears both on /ws/me): the figures again, if shown.
function earningsChanged() {
  if (!$("earnings").hidden) loadEarnings().catch(() => null);
}
window.addEventListener("livehub:earnings", earningsChanged);
window.addEventListener("livehub:notification", (event) => {
  if (event.detail.kind === "payout_decided") earningsChanged();
});

async function requestPayout(event) {
  event.preventDefault();
  const form = event.target;
  const result = await submitting(form, () =>
    api("POST", "/api/seller/payouts", { amount_cents: cents($("payout-amount").value) },
      { headers: { "Idempotency-Key": newKey() } }),
  ).catch(() => null);
  if (!result) return;
  form.reset();
  toast(`Payout of ${fmt(result.payout.amount_cents)} requested: an admin will approve it.`, "ok");
  await loadEarnings();
}

// -- start ----------------------------------------------------------------------------------------------

async function apply(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  const result = await submitting(form, () =>
    api("POST", "/api/sellers/apply", { shop_name: data.get("shop_name"), description: data.get("description") || "" }),
  ).catch((err) => {
    // Selling needs a verified email address: the way to a new link, next to the reason.
    if (err.code === "email_unverified") {
      form.querySelector(".form-error").append(" ", h("a", { href: "/verify-email" }, "Get a new verification link"));
    }
    return null;
  });
  if (!result) return;
  showSeller(result.seller);
  // The header's link now leads to the shop.
  await currentUser({ refresh: true }).catch(() => null);
  await renderHeader();
}

function showSeller(seller) {
  state.seller = seller;
  $("title").textContent = seller.shop_name;
  $("apply").hidden = true;
  if (seller.status !== "approved") {
    $("pending").hidden = false;
    $("pending-text").textContent =
      seller.status === "suspended"
        ? "Your shop is suspended: its products are not listed and it cannot sell. Contact support."
        : "An admin is reviewing your shop. You can list products as soon as it is approved.";
    return false;
  }
  $("office").hidden = false;
  return true;
}

async function start() {
  const user = await renderHeader();
  $("loading").hidden = true;
  if (!user) {
    $("signed-out").hidden = false;
    return;
  }
  $("apply-form").addEventListener("submit", apply);
  if (!user.seller_id) {
    $("title").textContent = "Sell on LiveHub";
    $("apply").hidden = false;
    if (!user.email_verified) {
      $("apply-verify").hidden = false;
    }
    return;
  }
  const { seller } = await api("GET", `/api/sellers/${user.seller_id}`);
  if (!showSeller(seller)) return;
  const wallet = await api("GET", "/api/wallet").catch(() => null);
  if (wallet) state.currency = wallet.currency;
  $("product-form").addEventListener("submit", createProduct);
  $("import-form").addEventListener("submit", importCodes);
  $("import-close").addEventListener("click", () => $("import").close());
  $("import").addEventListener("close", () => (state.importing = null));
  $("orders-status").addEventListener("change", () => loadOrders(true).catch(showError));
  $("orders-more").addEventListener("click", () => loadOrders(false).catch(showError));
  $("payout-form").addEventListener("submit", requestPayout);
  setupService();
  setupStock();
  window.addEventListener("hashchange", () => showTab(loaders));
  await loadCategories().catch(showError);
  showTab(loaders);
}

start().catch(showError);
