// A guest on the JavaScript client core (js/core, as the browser app uses it), driven by
// tests/client/test_share_caps_e2e.py: joins the link given as argument, then answers JSON
// commands on stdin, one per line, with one JSON line each on stdout:
//   {"op": "snapshot"}                      -> {"snapshot": {path: text}}
//   {"op": "insert", "path", "at", "text"}  -> {"ok": true} (at: UTF-16 units, as Yjs counts)
// A notice that arrives is printed as {"notice": {from, level, code, message, path?}}.
// The first line out is {"synced": true}, once the first sync is done.
import { createRequire } from "node:module";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const core = path.join(here, "..", "..", "js", "core", "index.js");
const { SessionConnection, Workspace } = await import(core);
const WebSocket = createRequire(path.join(here, "..", "..", "js", "package.json"))("ws");

const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");
const conn = await SessionConnection.fromLink(process.argv[2], { name: process.argv[3] || "ada", WebSocket });
const workspace = new Workspace(conn, { user: { name: process.argv[3] || "ada", color: "#30bced" } });
workspace.on("notice", (notice) => out({ notice }));
const synced = workspace.waitFor("synced", { timeoutMs: 15000 });
await conn.join();
await synced;
out({ synced: true });

const snapshot = () => Object.fromEntries(workspace.paths().map((p) => [p, workspace.read(p)]));
const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "snapshot") out({ snapshot: snapshot() });
  else if (command.op === "insert") {
    workspace.text(command.path).insert(command.at, command.text);
    out({ ok: true });
  } else out({ error: `unknown op ${command.op}` });
});
lines.on("close", () => { conn.close(); workspace.destroy(); process.exit(0); });
