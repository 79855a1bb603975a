// Pure helpers of the browser app (no DOM): colours, languages, the file tree, the words
// of the full-page messages. Kept apart so Node can test them.

export const PALETTE = ["#1a73e8", "#d93025", "#188038", "#e37400", "#9334e6", "#00838f", "#c2185b", "#5f6368"];

/** A participant's colour from its id (the same on every page). */
export function colorFor(participant) {
  const n = Number.isSafeInteger(participant) && participant > 0 ? participant - 1 : 0;
  return PALETTE[n % PALETTE.length];
}

const LANGUAGES = {
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "jsx",
  ts: "typescript", mts: "typescript", cts: "typescript", tsx: "tsx",
  py: "python", pyi: "python", java: "java",
  css: "css", html: "html", htm: "html", json: "json",
  md: "markdown", markdown: "markdown",
};

/** The language of a path by its extension (null: plain text). */
export function languageOf(path) {
  const name = path.slice(path.lastIndexOf("/") + 1).toLowerCase();
  const dot = name.lastIndexOf(".");
  if (dot <= 0) return null;
  return LANGUAGES[name.slice(dot + 1)] ?? null;
}

/**
 * A folder tree from shared paths and the policy's unshared files:
 * {name, path, folders: Map name -> node, files: [{name, path, unshared?: {size, reason}}]}.
 */
export function buildTree(paths, unshared = []) {
  const root = { name: "", path: "", folders: new Map(), files: [] };
  const place = (path, entry) => {
    const parts = path.split("/");
    let node = root;
    for (let i = 0; i < parts.length - 1; i++) {
      const sub = parts.slice(0, i + 1).join("/");
      if (!node.folders.has(parts[i])) node.folders.set(parts[i], { name: parts[i], path: sub, folders: new Map(), files: [] });
      node = node.folders.get(parts[i]);
    }
    node.files.push({ name: parts[parts.length - 1], path, ...entry });
  };
  const shared = new Set(paths);
  for (const path of paths) place(path, {});
  for (const u of unshared) if (!shared.has(u.path)) place(u.path, { unshared: { size: u.size, reason: u.reason } });
  const sort = (node) => {
    node.files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    node.folders = new Map([...node.folders.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    for (const child of node.folders.values()) sort(child);
  };
  sort(root);
  return root;
}

const REASONS = {
  binary: "binary file, not shared",
  "too-large": "over the size limit, not shared",
  "workspace-full": "past the workspace limit, not shared",
};

export function unsharedReason(reason) {
  return REASONS[reason] ?? "not shared";
}

/** The file to open first: a README at the top, else the first path. */
export function firstFile(paths) {
  const readme = paths.find((p) => !p.includes("/") && /^readme(\.|$)/i.test(p));
  return readme ?? paths[0] ?? null;
}

/** Human size: 20480 -> "20 KB". */
export function formatSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

const ENDED_REASONS = {
  "host-left": "The host left, which ends the session.",
  "host-timeout": "The host's connection was lost for too long.",
  "ended-by-host": "The host ended the session.",
  "ended-by-admin": "An administrator ended the session.",
  "edge-shutdown": "The server was shut down.",
};

/**
 * The full page for how a session ended for this page: {kind, title, text}. `code` is the
 * SessionConnection's `ended` code; `reason` the edge's session-ended reason, if any.
 */
export function endPage(code, reason = null) {
  switch (code) {
    case "session-ended":
      return { kind: "ended", title: "The session has ended", text: [ENDED_REASONS[reason] ?? "The session is over.", "Your edits up to the end reached the host's files."] };
    case "removed":
      return { kind: "removed", title: "You were removed from the session", text: ["The host (or an administrator) removed you.", "Ask the host for a new link to come back."] };
    case "not-found":
      return { kind: "not-found", title: "This session is not here", text: ["It has ended, or the link is wrong or incomplete.", "Ask the host for a new link if the session is still running."] };
    case "resume-expired":
      return { kind: "resume-expired", title: "You were away too long", text: ["The connection was lost for longer than the session keeps a seat.", "Reload the page to join again."] };
    case "forbidden":
      return { kind: "forbidden", title: "This link is not valid", text: ["The server refused the link's token: it is wrong, incomplete or from an older session.", "Copy the whole link from the host again."] };
    case "superseded":
      return { kind: "superseded", title: "Opened somewhere else", text: ["This seat is now used by another tab or window.", "Reload to join here again."] };
    case "session-full":
      return { kind: "full", title: "The session is full", text: ["No more participants can join it."] };
    case "left":
      return { kind: "left", title: "You left the session", text: ["Reload the page to join again."] };
    default:
      return { kind: "disconnected", title: "Disconnected", text: ["The connection to the server could not be restored.", "Reload the page to join again."] };
  }
}

/** Banner words per connection state (null: no banner). */
export function bannerFor(state) {
  switch (state) {
    case "connecting": return { kind: "connecting", text: "Connecting…" };
    case "reconnecting": return { kind: "reconnecting", text: "Connection lost. Reconnecting…" };
    case "resumed": return { kind: "resumed", text: "Reconnected." };
    case "resyncing": return { kind: "resyncing", text: "Reconnected. Catching up with the others…" };
    default: return null;
  }
}
