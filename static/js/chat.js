// A room's chat list, shared by the viewer page and the studio. Text is only ever set as text.
import { h } from "./api.js";

const MAX_MESSAGES = 200;
const ROLE_LABEL = { host: "host", moderator: "mod" };
const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export class ChatView {
  // actions(message) -> elements shown after a message (the studio's delete / timeout / ban).
  constructor(list, { actions } = {}) {
    this.list = list;
    this.actions = actions;
    this.ids = new Set();
  }

  reset(messages) {
    this.list.replaceChildren();
    this.ids.clear();
    for (const m of messages) this.add(m);
  }

  add(m) {
    if (this.ids.has(m.id)) return;
    this.ids.add(m.id);
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const role = ROLE_LABEL[m.user.role];
    const li = h(
      "li",
      { class: `chat-message${role ? " by-" + m.user.role : ""}`, dataset: { id: m.id, user: m.user.id } },
      h("span", { class: "who" }, m.user.name),
      role ? h("span", { class: "badge role" }, role) : null,
      " ",
      h("span", { class: "text" }, m.text),
      m.at ? h("time", { class: "muted small", datetime: m.at }, time.format(new Date(m.at))) : null,
      this.actions ? h("span", { class: "chat-actions" }, this.actions(m)) : null,
    );
    this.list.append(li);
    while (this.list.children.length > MAX_MESSAGES) {
      this.ids.delete(this.list.firstElementChild.dataset.id);
      this.list.firstElementChild.remove();
    }
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  // A moderator removed the message: keep its place, say so, drop its text.
  markDeleted(id) {
    const li = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (!li || li.classList.contains("deleted")) return;
    li.classList.add("deleted");
    li.querySelector(".text").textContent = "message removed by a moderator";
    li.querySelector(".chat-actions")?.remove();
  }

  note(text) {
    this.list.append(h("li", { class: "chat-note muted small" }, text));
    this.list.scrollTop = this.list.scrollHeight;
  }
}
