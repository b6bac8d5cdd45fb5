// The admin console's backups tab: every backup (scheduled, from `livehub backup`, started here) newest
// first with its size, status and error; "Back up now" queues one, and the list follows it until it ends.
import { api, h, showError, toast } from "/static/js/api.js";
import { $, badge, loadPage, when } from "/static/js/admin-common.js";

const COLUMNS = 6;
const TRIGGERS = { schedule: "Schedule", cli: "Command line", admin: "Admin" };
let following = null;

function size(bytes) {
  if (bytes == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function backupRow(b) {
  const file = b.file_name ? h("code", { title: b.path || "" }, b.file_name) : h("span", { class: "muted" }, "—");
  return h(
    "tr",
    { dataset: { backupId: String(b.id), status: b.status } },
    h("td", {}, when(b.started_at)),
    h("td", {}, TRIGGERS[b.trigger] || b.trigger),
    h("td", {}, badge(b.status)),
    h("td", {}, file),
    h("td", { class: "num" }, size(b.size_bytes)),
    h("td", { class: "details" }, b.error || (b.sha256 ? h("span", { class: "muted", title: b.sha256 }, `sha256 ${b.sha256.slice(0, 12)}…`) : "")),
  );
}

/** Show the newest backups, or (`more`) the next page. */
export async function loadBackups(more) {
  await loadPage("backups", "/api/admin/backups", { limit: "20" }, $("backups-table").tBodies[0], backupRow, COLUMNS,
    "No backups yet.", more);
  follow();
}

// While a backup shown is running, the list is read again every few seconds (only the first page).
function follow() {
  clearTimeout(following);
  const running = $("backups-table").querySelector('tr[data-status="running"]');
  if (running && !$("backups").hidden) following = setTimeout(() => loadBackups(false).catch(showError), 2000);
}

/** Wire "Back up now" and "Show more"; call once when the console starts. */
export function setupBackups() {
  $("backup-now").addEventListener("click", async () => {
    $("backup-now").disabled = true;
    try {
      const { backup } = await api("POST", "/api/admin/backups");
      toast(`Backup ${backup.id} started`);
      await loadBackups(false);
    } catch (err) {
      showError(err);
    } finally {
      $("backup-now").disabled = false;
    }
  });
  $("backups-more").addEventListener("click", () => loadBackups(true).catch(showError));
}
