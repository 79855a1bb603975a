// The peer's host for the workspace step: a Node process holding a Y.Doc of DIR's files (one
// Y.Text per file in the "files" map, as ct-client share does), connected to y-websocket's
// server. Prints "ready" once synced. node yws-host.mjs ws://127.0.0.1:PORT ROOM DIR
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import WebSocket from "ws";

const [server, room, dir] = process.argv.slice(2);
const doc = new Y.Doc();
const files = doc.getMap("files");

function walk(path) {
  for (const name of readdirSync(path)) {
    const full = join(path, name);
    if (statSync(full).isDirectory()) walk(full);
    else files.set(relative(dir, full), new Y.Text(readFileSync(full, "utf8")));
  }
}
doc.transact(() => walk(dir));
const provider = new WebsocketProvider(server, room, doc, { WebSocketPolyfill: WebSocket });
provider.on("sync", (synced) => { if (synced) console.log(`ready ${files.size}`); });
setTimeout(() => process.exit(2), 600_000).unref();
