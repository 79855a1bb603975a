// The browser guest app, served by the edge at /join/<session> (ct/webclient). It joins the
// session named by its own URL (token in the query, key in the fragment, which never
// leaves the page) through the client core (js/core), and shows the shared workspace:
// files, an editor bound to the open file's Y.Text, people with their cursors.

import { SessionConnection, Workspace, parseJoinLink, base64urlDecode } from "../core/index.js";
import { h, fill, safeColor } from "./dom.js";
import { Editor } from "./editor.js";
import { AvPanel } from "./av.js";
import { showSignIn, takeReturn } from "./signin.js";
import {
  buildTree, bannerFor, colorFor, endPage, firstFile, formatSize, unsharedReason,
} from "./model.js";

const HOST = 1;
const NAME_KEY = "ct.name";
const KEY_BYTES = 32;

function nonce() {
  return document.querySelector('meta[name="ct-csp-nonce"]')?.content || null;
}

/** Replaces the page with a full-page message (the session is over for this page). */
function showPage({ kind, title, text }) {
  document.body.className = "ct-page";
  document.body.dataset.ctPage = kind;
  document.title = `${title} · CodeTogether`;
  fill(document.body, h("div", { class: "ct-message" }, h("h1", {}, title), text.map((t) => h("p", {}, t))));
}

function storedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch {
    return ""; // storage disabled
  }
}

function rememberName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // storage disabled: asked again next time
  }
}

/** The checks that need no server: secure context, a complete link with a key. */
function preflight() {
  if (!window.isSecureContext || !globalThis.crypto?.subtle) {
    return {
      kind: "insecure", title: "This link needs HTTPS",
      text: ["Sessions are end-to-end encrypted in your browser, which browsers allow only on HTTPS pages or on this computer (localhost).",
        "Ask the host for an https:// link."],
    };
  }
  let link;
  try {
    link = parseJoinLink(location.href);
  } catch {
    return { kind: "no-session", title: "This is not a complete join link", text: ["Copy the whole link the host gave you."] };
  }
  if (!link.key) {
    return {
      kind: "no-key", title: "The link has no key",
      text: ["The part after # (the session key) is missing; some apps cut it off when they show links.",
        "Copy the whole link from the host, including #key=…"],
    };
  }
  let raw = null;
  try {
    raw = base64urlDecode(link.key);
  } catch {
    raw = null;
  }
  if (!raw || raw.length !== KEY_BYTES) {
    return { kind: "bad-key", title: "The link's key is damaged", text: ["Copy the whole link from the host again."] };
  }
  return null;
}

function askName() {
  return new Promise((resolve) => {
    const input = h("input", {
      id: "ct-name", name: "name", type: "text", maxlength: "64", required: true, autocomplete: "nickname",
      placeholder: "Your name", value: storedName(),
    });
    const form = h("form", { id: "ct-name-form", class: "ct-card" },
      h("h1", {}, "Join the session"),
      h("label", { for: "ct-name" }, "Your name, as the others will see it"),
      input,
      h("button", { id: "ct-join", type: "submit" }, "Join"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const name = input.value.trim().slice(0, 64);
      if (!name) return;
      rememberName(name);
      resolve(name);
    });
    document.body.className = "ct-app ct-welcome";
    fill(document.getElementById("app") || document.body, form);
    input.focus();
    if (input.value) input.select();
  });
}

class App {
  constructor(name, hostToken = null) {
    this.name = name;
    this.hostToken = hostToken; // from signing in, where guests must (signin.js)
    this.conn = null;
    this.workspace = null;
    this.editor = null;
    this.following = HOST; // follow the host's open file until told otherwise
    this.status = "connecting";
    this.statuses = []; // the last transitions, for tests and debugging
    this.sessionEndedReason = null;
    this.over = false;
    this.joined = false; // once joined, a lost connection is "disconnected", not "unreachable"
    this.title = "";
    this.collapsed = new Set();
    this._treeVersion = 0; // bumped when files or the policy change
    this._treeSignature = null;
    this._bannerTimer = null;
    this._renderQueued = false;
    this._layout();
  }

  _layout() {
    this.el = {
      title: h("span", { id: "ct-title", class: "ct-title" }),
      path: h("span", { id: "ct-path", class: "ct-path" }),
      readOnly: h("span", { id: "ct-readonly", class: "ct-badge", hidden: true }, "Read-only"),
      follow: h("span", { id: "ct-follow", class: "ct-follow" }),
      status: h("span", { id: "ct-status", class: "ct-status" }),
      banner: h("div", { id: "ct-banner", class: "ct-banner", role: "status", hidden: true }),
      tree: h("nav", { id: "ct-tree", class: "ct-tree", "aria-label": "Files" }),
      people: h("ul", { id: "ct-people", class: "ct-people" }),
      editor: h("div", { id: "ct-editor", class: "ct-editor" }),
      empty: h("div", { id: "ct-empty", class: "ct-empty" }, "Waiting for the files…"),
      toasts: h("div", { id: "ct-toasts", class: "ct-toasts", "aria-live": "polite" }),
    };
    const e = this.el;
    document.body.className = "ct-app";
    fill(document.getElementById("app") || document.body,
      h("div", { class: "ct-layout" },
        h("header", { class: "ct-top" },
          h("span", { class: "ct-brand" }, "CodeTogether"), e.title,
          h("span", { class: "ct-spacer" }), e.follow, e.status),
        e.banner,
        h("aside", { class: "ct-side ct-files" }, h("h2", {}, "Files"), e.tree),
        h("main", { class: "ct-main" },
          h("div", { class: "ct-tabbar" }, e.path, e.readOnly),
          h("div", { class: "ct-editor-wrap" }, e.editor, e.empty)),
        h("aside", { class: "ct-side ct-people-pane" }, h("h2", {}, "People"), e.people)),
      e.toasts);
    this._setStatus("connecting");
  }

  async start() {
    let conn;
    try {
      conn = await SessionConnection.fromLink(location.href, { name: this.name, WebSocket: window.WebSocket });
    } catch (e) {
      showPage({ kind: "bad-key", title: "The link's key is damaged", text: [String(e.message || e)] });
      return;
    }
    this.conn = conn;
    const workspace = new Workspace(conn, { user: null });
    this.workspace = workspace;
    this.editor = new Editor(this.el.editor, {
      awareness: workspace.awareness,
      nonce: nonce(),
      onTooLarge: (path) => this.toast("warning", `${path} would pass the ${formatSize(workspace.policy.maxFileBytes)} limit: that edit was not applied.`),
      onLocalEdit: () => {
        // Typing while following would be pulled away at the next switch: stop following.
        if (this.following !== null) {
          const name = this.conn.participants.get(this.following)?.name ?? "them";
          this._setFollowing(null);
          this.toast("info", `You typed, so you stopped following ${name}.`);
        }
      },
    });

    this.av = new AvPanel(conn, workspace, { container: document.querySelector(".ct-people-pane"), toast: (level, text) => this.toast(level, text) });
    conn.on("state", (state, detail) => this._state(state, detail));
    conn.on("participants", () => this.render());
    conn.on("session-ended", (m) => { this.sessionEndedReason = m.reason ?? null; });
    conn.on("participant-left", (m) => {
      if (m.participant === this.following) this._setFollowing(null);
    });
    conn.on("ended", ({ code }) => this._ended(code));
    conn.on("warning", (text) => console.warn("ct:", text));
    workspace.on("warning", (text) => console.warn("ct:", text));
    workspace.on("files", () => this._filesChanged());
    workspace.on("synced", () => this._synced());
    workspace.on("policy", () => this._policy());
    workspace.on("awareness", () => this._awareness());
    workspace.on("notice", (n) => this.toast(n.level, n.path ? `${n.path}: ${n.message}` : n.message));
    window.addEventListener("pagehide", () => {
      if (!this.over) conn.leave();
    });
    try {
      const joined = await conn.join({ hostToken: this.hostToken });
      this.joined = true;
      this.name = conn.participants.get(conn.participant)?.name || this.name; // a signed-in identity's
      this.title = joined.title || "";
      this.el.title.textContent = this.title;
      this._setTitle();
      workspace.setUser({ name: this.name, color: colorFor(conn.participant), colorLight: colorFor(conn.participant) + "33" });
      this.render();
    } catch {
      // `ended` (emitted too) shows why.
    }
  }

  // ---------------------------------------------------------------- connection state

  _state(state, detail) {
    if (state === "open") this._setStatus("connected");
    else if (state === "reconnecting") this._setStatus("reconnecting");
    else if (state === "resumed") {
      if (detail && detail.recovered === false) this._setStatus("resyncing");
      else this._setStatus("resumed");
    }
  }

  _synced() {
    if (this.status === "resyncing") this._setStatus("resumed");
    this._filesChanged();
  }

  _setStatus(status) {
    this.status = status;
    this.statuses.push(status);
    if (this.statuses.length > 50) this.statuses.shift();
    const labels = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", resumed: "Connected", resyncing: "Catching up…" };
    this.el.status.dataset.state = status;
    this.el.status.textContent = labels[status] ?? status;
    const banner = bannerFor(status);
    clearTimeout(this._bannerTimer);
    if (!banner) {
      this.el.banner.hidden = true;
      return;
    }
    this.el.banner.hidden = false;
    this.el.banner.dataset.state = banner.kind;
    this.el.banner.textContent = banner.text;
    if (status === "resumed") this._bannerTimer = setTimeout(() => { this.el.banner.hidden = true; }, 3000);
  }

  _ended(code) {
    if (this.over) return;
    this.over = true;
    this.editor?.destroy();
    if (!this.joined && code === "sign-in-required") {
      showSignIn(window, { again: Boolean(this.hostToken) });
      return;
    }
    if (!this.joined && (code === "closed" || code === "resume-failed")) {
      showPage({
        kind: "unreachable", title: "Cannot reach the server",
        text: ["The page could not open its connection to the server.",
          "Check your network; a proxy or firewall that blocks websockets to this site also causes this. Reload to try again."],
      });
      return;
    }
    showPage(endPage(code, this.sessionEndedReason));
  }

  _setTitle() {
    const parts = [this.editor?.path, this.title, "CodeTogether"].filter(Boolean);
    document.title = parts.join(" · ");
  }

  // ---------------------------------------------------------------- files

  _filesChanged() {
    this._treeVersion += 1;
    const ws = this.workspace;
    const path = this.editor.path;
    if (path !== null) {
      const current = ws.text(path);
      if (!current) {
        this.editor.forget(path);
        this._open(null);
        this.toast("info", `${path} was removed.`);
      } else if (current !== this.editor.ytext) {
        this._open(path); // the host replaced the file
      }
    }
    if (this.editor.path === null && ws.synced) {
      const followed = this._followedState();
      const wanted = followed?.file && ws.text(followed.file) ? followed.file : firstFile(ws.paths());
      if (wanted) this._open(wanted);
    }
    if (this.editor.path === null && ws.synced && ws.paths().length === 0) this.el.empty.textContent = "No files are shared.";
    this.render();
  }

  _open(path) {
    const ytext = path === null ? null : this.workspace.text(path);
    this.editor.open(ytext ? path : null, ytext ?? null);
    this.editor.setReadOnly(!this.workspace.writable);
    this.el.empty.hidden = !!ytext;
    this.el.editor.hidden = !ytext;
    this.el.path.textContent = ytext ? path : "";
    this.el.path.title = ytext ? path : "";
    this._setTitle();
    this.workspace.setCursor(ytext ? path : null, null);
    this.render();
  }

  /** A person picked a file: open it, and stop following whoever chose before. */
  pick(path) {
    if (this.following !== null) this._setFollowing(null);
    this._open(path);
    this.editor.focus();
  }

  _policy() {
    this._treeVersion += 1;
    const ws = this.workspace;
    this.editor.maxFileBytes = ws.policy.maxFileBytes;
    this.editor.setReadOnly(!ws.writable);
    this.el.readOnly.hidden = ws.writable;
    this.render();
  }

  // ---------------------------------------------------------------- people and following

  _followedState() {
    if (this.following === null) return null;
    for (const peer of this.workspace.peers()) {
      if (peer.participant === this.following && peer.state?.user) return peer.state;
    }
    return null;
  }

  _setFollowing(participant) {
    this.following = participant;
    if (participant !== null) this._follow();
    this.render();
  }

  _follow() {
    const state = this._followedState();
    if (!state || typeof state.file !== "string") return;
    if (state.file !== this.editor.path && this.workspace.text(state.file)) this._open(state.file);
    if (state.file === this.editor.path && state.cursor) this.editor.reveal(state.cursor);
  }

  _awareness() {
    if (this.following !== null) this._follow();
    this.render();
  }

  // ---------------------------------------------------------------- rendering

  render() {
    if (this._renderQueued || this.over) return;
    this._renderQueued = true;
    requestAnimationFrame(() => {
      this._renderQueued = false;
      if (this.over) return;
      this._renderTree();
      this._renderPeople();
    });
  }

  /** participant id -> {name, color, file} from awareness. */
  _presence() {
    const out = new Map();
    for (const peer of this.workspace.peers()) {
      const user = peer.state?.user;
      if (!user || peer.participant === null) continue;
      out.set(peer.participant, {
        name: String(user.name ?? ""), color: safeColor(user.color, colorFor(peer.participant)),
        file: typeof peer.state.file === "string" ? peer.state.file : null,
      });
    }
    return out;
  }

  _renderTree() {
    const ws = this.workspace;
    const presence = this._presence();
    // Cursors move all the time; the tree changes only with files, policy, the open file,
    // folders and who has which file open.
    const signature = JSON.stringify([this._treeVersion, this.editor.path, [...this.collapsed],
      [...presence.entries()].map(([id, p]) => [id, p.file, p.color, p.name])]);
    if (signature === this._treeSignature) return;
    this._treeSignature = signature;
    const here = new Map(); // path -> [colors]
    for (const p of presence.values()) {
      if (p.file) here.set(p.file, [...(here.get(p.file) ?? []), p]);
    }
    const tree = buildTree(ws.paths(), ws.policy.unshared);
    const folder = (node, depth) => {
      const items = [];
      for (const sub of node.folders.values()) {
        const open = !this.collapsed.has(sub.path);
        items.push(h("li", { class: "ct-folder" },
          h("button", {
            type: "button", class: "ct-folder-name", "aria-expanded": open ? "true" : "false", dataset: { folder: sub.path },
            style: { "padding-left": `${0.5 + depth * 0.9}rem` },
            onclick: () => {
              if (open) this.collapsed.add(sub.path);
              else this.collapsed.delete(sub.path);
              this.render();
            },
          }, h("span", { class: "ct-twisty" }, open ? "▾" : "▸"), sub.name),
          open ? folder(sub, depth + 1) : null));
      }
      for (const file of node.files) {
        const pad = { "padding-left": `${1.4 + depth * 0.9}rem` };
        if (file.unshared) {
          const why = `${unsharedReason(file.unshared.reason)}${file.unshared.size ? ` (${formatSize(file.unshared.size)})` : ""}`;
          items.push(h("li", {},
            h("span", { class: "ct-file ct-unshared", title: why, dataset: { path: file.path, reason: file.unshared.reason }, style: pad },
              file.name, h("span", { class: "ct-reason" }, why))));
          continue;
        }
        const dots = (here.get(file.path) ?? []).map((p) => h("span", { class: "ct-dot", title: p.name, style: { "background-color": p.color } }));
        items.push(h("li", {},
          h("button", {
            type: "button", class: `ct-file${file.path === this.editor.path ? " ct-active" : ""}`,
            dataset: { path: file.path }, style: pad, title: file.path,
            onclick: () => this.pick(file.path),
          }, h("span", { class: "ct-file-name" }, file.name), dots)));
      }
      return h("ul", {}, items);
    };
    fill(this.el.tree, folder(tree, 0));
  }

  _renderPeople() {
    const conn = this.conn;
    const presence = this._presence();
    const rows = [];
    const ids = [...conn.participants.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      const p = conn.participants.get(id);
      const me = id === conn.participant;
      const seen = presence.get(id);
      const color = me ? colorFor(id) : (seen?.color ?? colorFor(id));
      const file = me ? this.editor.path : seen?.file;
      const following = this.following === id;
      rows.push(h("li", { class: `ct-person${p.connected === false ? " ct-away" : ""}`, dataset: { participant: String(id) } },
        h("span", { class: "ct-swatch", style: { "background-color": color } }),
        h("span", { class: "ct-person-text" },
          h("span", { class: "ct-person-name", title: p.name }, h("span", { class: "ct-name-text" }, p.name),
            p.role === "host" ? h("span", { class: "ct-role" }, "host") : null,
            me ? h("span", { class: "ct-role" }, "you") : null,
            p.connected === false ? h("span", { class: "ct-role" }, "away") : null),
          file ? h("span", { class: "ct-person-file", title: file }, file) : null),
        me ? null : h("button", {
          type: "button", class: `ct-follow-button${following ? " ct-on" : ""}`, dataset: { follow: String(id) },
          "aria-pressed": following ? "true" : "false",
          onclick: () => this._setFollowing(following ? null : id),
        }, following ? "Following" : "Follow")));
    }
    fill(this.el.people, rows);
    const hostName = conn.participants.get(HOST)?.name;
    this.el.title.textContent = this.title || (hostName ? `${hostName}'s session` : "");
    const followed = this.following === null ? null : conn.participants.get(this.following);
    if (followed) {
      fill(this.el.follow, "Following ", h("strong", {}, followed.name), " ",
        h("button", { type: "button", id: "ct-unfollow", onclick: () => this._setFollowing(null) }, "Stop"));
    } else {
      const host = conn.participants.get(HOST);
      fill(this.el.follow, host && conn.participant !== HOST
        ? h("button", { type: "button", id: "ct-follow-host", onclick: () => this._setFollowing(HOST) }, `Follow ${host.name}`)
        : null);
    }
  }

  toast(level, text) {
    const el = h("div", { class: `ct-toast ct-${level === "warning" ? "warning" : "info"}`, role: "status" }, text);
    this.el.toasts.append(el);
    while (this.el.toasts.children.length > 4) this.el.toasts.firstChild.remove();
    setTimeout(() => el.remove(), 8000);
  }

  // ---------------------------------------------------------------- for tests and debugging

  hooks() {
    const app = this;
    return Object.freeze({
      get status() { return app.status; },
      get statuses() { return [...app.statuses]; },
      get path() { return app.editor?.path ?? null; },
      get participant() { return app.conn?.participant ?? null; },
      get following() { return app.following; },
      get av() { return app.av ?? null; },
      editorText: () => app.editor?.text() ?? null,
      fileText: (path) => app.workspace?.read(path) ?? null,
      paths: () => app.workspace?.paths() ?? [],
    });
  }
}

async function main() {
  const signedIn = takeReturn(); // back from a guest sign-in: the key is in the fragment again
  if (signedIn?.page) {
    showPage(signedIn.page);
    return;
  }
  const problem = preflight();
  if (problem) {
    showPage(problem);
    return;
  }
  const name = (signedIn && storedName()) || await askName();
  const app = new App(name, signedIn?.token ?? null);
  window.ctApp = app.hooks();
  await app.start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
