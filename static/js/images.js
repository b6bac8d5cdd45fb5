// Product pictures on the pages: an <img> with every stored size in srcset (the browser picks the one the
// layout needs), lazy loading, and width/height so the page does not jump as pictures arrive; and the upload
// the back office makes (multipart, docs/API.md "Product images").
import { ApiError, h } from "/static/js/api.js";

// `sizes`: how wide the picture shows on the page (a CSS length or media list), so the browser knows which
// of the 160/480/1080 px files to fetch.
export function imageTag(image, { alt = "", sizes = "160px", className = "product-photo", eager = false } = {}) {
  const all = image.sizes && image.sizes.length ? image.sizes : [image];
  return h("img", {
    class: className,
    src: all[0].url,
    srcset: all.map((s) => `${s.url} ${s.width}w`).join(", "),
    sizes,
    width: String(image.width),
    height: String(image.height),
    alt,
    loading: eager ? "eager" : "lazy",
    decoding: "async",
  });
}

// The product's first picture, or null when it has none.
export function productImage(product, options = {}) {
  const first = product.images && product.images[0];
  return first ? imageTag(first, { alt: product.title, ...options }) : null;
}

// POST the file as multipart (the browser writes the boundary); the new image, or ApiError.
export function uploadImage(productId, file) {
  return uploadPicture(`/api/products/${productId}/images`, file);
}

// The same for any upload route answering {image} (a product's gallery, the account's avatar).
export async function uploadPicture(path, file) {
  const body = new FormData();
  body.append("file", file);
  let res;
  try {
    res = await fetch(path, { method: "POST", body, credentials: "same-origin" });
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached. Check your connection.", {});
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code || "error", e.message || res.statusText, e.details || {});
  }
  return data.image;
}
