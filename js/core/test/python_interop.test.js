// The JavaScript core and the Python reference client (ct/client/session.py) in one
// session: frames, encryption and join links agree across the two implementations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { SessionConnection } from "../index.js";
import { startEdge, python, ROOT, sleep } from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Starts a Python process and resolves with its first stdout line. */
async function firstLine(t, args, timeoutMs = 30000) {
  const child = spawn(python(), args, { env: { ...process.env, PYTHONPATH: ROOT }, stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => { if (child.exitCode === null) child.kill("SIGKILL"); });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { err += d; });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const nl = out.indexOf("\n");
    if (nl >= 0) return out.slice(0, nl);
    if (child.exitCode !== null) break;
    await sleep(20);
  }
  throw new Error(`no line from ${args.join(" ")} within ${timeoutMs} ms:\n${out}\n${err}`);
}

test("a JavaScript guest and a Python host exchange encrypted text and binary payloads", async (t) => {
  const edge = await startEdge(t);
  const link = await firstLine(t, [path.join(here, "python_echo_host.py"), edge.url]);
  assert.match(link, /\/join\/.+\?token=.+#key=/, link);
  const conn = await SessionConnection.fromLink(link, { name: "Ada", WebSocket });
  t.after(() => conn.close());
  const frames = [];
  conn.on("frame", (f) => frames.push(f));
  const joined = await conn.join();
  assert.equal(joined.title, "python echo");
  await conn.send("héllo 🎉", 1);
  await conn.send(new Uint8Array([0, 1, 2, 255]), 1);
  const deadline = Date.now() + 10000;
  while (frames.length < 2 && Date.now() < deadline) await sleep(20);
  assert.equal(frames.length, 2, "two echoes within 10 s");
  assert.equal(frames[0].sender, 1);
  assert.equal(frames[0].data, "echo: héllo 🎉");
  assert.deepEqual([...frames[1].data], [...new TextEncoder().encode("echo:"), 0, 1, 2, 255]);
});
