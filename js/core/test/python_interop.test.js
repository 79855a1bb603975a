// The JavaScript core and the Python reference client (ct/client/session.py) in one
// session: frames, encryption and join links agree across the two implementations.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { SessionConnection, Workspace } from "../index.js";
import { startEdge, python, ROOT, sleep, eventually, snapshot } from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** A Python child speaking JSON lines: next() resolves with its next stdout line. */
async function pythonChild(t, args) {
  const child = spawn(python(), args, { env: { ...process.env, PYTHONPATH: ROOT }, stdio: ["pipe", "pipe", "pipe"] });
  t.after(() => { if (child.exitCode === null) child.kill("SIGKILL"); });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8"); // characters split across reads are joined whole
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => { out += d; });
  child.stderr.on("data", (d) => { err += d; });
  return {
    child,
    warnings: [],
    async next(timeoutMs = 30000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const nl = out.indexOf("\n");
        if (nl >= 0) {
          const line = out.slice(0, nl);
          out = out.slice(nl + 1);
          return line;
        }
        if (child.exitCode !== null) break;
        await sleep(20);
      }
      throw new Error(`no line from ${args.join(" ")} within ${timeoutMs} ms:\n${out}\n${err}`);
    },
    async ask(command) {
      child.stdin.write(JSON.stringify(command) + "\n");
      for (;;) {
        const answer = JSON.parse(await this.next());
        if (!answer.warning) return answer;
        this.warnings.push(answer.warning);
      }
    },
  };
}

test("a JavaScript guest and a Python host exchange encrypted text and binary payloads", async (t) => {
  const edge = await startEdge(t);
  const link = await (await pythonChild(t, [path.join(here, "python_echo_host.py"), edge.url])).next();
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

test("a Python host (ct/collab, pycrdt) and a JavaScript guest converge, non-BMP text included", async (t) => {
  const edge = await startEdge(t);
  const files = { "a.txt": "a😀b", "dir/ü.md": "# Grüße 🎉\n" };
  const py = await pythonChild(t, [path.join(here, "python_collab_host.py"), edge.url, JSON.stringify(files)]);
  const link = await py.next();
  assert.match(link, /#key=/, link);
  const conn = await SessionConnection.fromLink(link, { name: "Ada", WebSocket });
  const workspace = new Workspace(conn, { user: { name: "Ada" } });
  t.after(() => { conn.close(); workspace.destroy(); });
  const synced = workspace.waitFor("synced", { timeoutMs: 15000 });
  await conn.join();
  await synced;
  assert.deepEqual(snapshot(workspace), files);

  // JS edits in UTF-16 units: index 3 is after the emoji (a surrogate pair).
  workspace.text("a.txt").insert(3, "X");
  await eventually(async () => (await py.ask({ op: "snapshot" })).snapshot["a.txt"] === "a😀Xb", "Python sees the JS edit after the emoji");
  // Python edits in code points: index 2 is after the emoji.
  await py.ask({ op: "edit", path: "a.txt", start: 2, end: 3, text: "🦊" });
  await eventually(() => workspace.read("a.txt") === "a😀🦊b", "JS sees the Python edit after the emoji");
  await py.ask({ op: "put", path: "new/ß.txt", text: "ñ 👍" });
  workspace.text("dir/ü.md").insert(workspace.text("dir/ü.md").length, "más ✓");
  const sorted = (files) => JSON.stringify(Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1)));
  await eventually(async () => sorted((await py.ask({ op: "snapshot" })).snapshot) === sorted(snapshot(workspace))
    && workspace.read("new/ß.txt") === "ñ 👍", "both hold the same files");
  assert.equal(workspace.read("dir/ü.md"), "# Grüße 🎉\nmás ✓");
});

test("`ct-client share DIR` hosts and a JavaScript guest edits with it: disk and document agree, emoji included", async (t) => {
  const { mkdtempSync, writeFileSync, readFileSync, mkdirSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const edge = await startEdge(t);
  const dir = mkdtempSync(path.join(tmpdir(), "ct-js-share-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, "src"));
  writeFileSync(path.join(dir, "src", "main.py"), "print('a😀b')\n");
  writeFileSync(path.join(dir, "notes.md"), "Grüße\n");
  writeFileSync(path.join(dir, "logo.bin"), Buffer.from([0, 1, 2, 255]));
  const share = await pythonChild(t, ["-m", "ct.client.cli", "share", dir, "--server", edge.url, "--name", "alice"]);
  let link = "";
  for (let i = 0; i < 20 && !/\/join\//.test(link); i++) link = (await share.next()).trim();
  assert.match(link, /^http:\/\/.+\/join\/.+#key=.+$/, link);

  const conn = await SessionConnection.fromLink(link, { name: "Ada", WebSocket });
  const workspace = new Workspace(conn, { user: { name: "Ada", color: "#30bced" } });
  t.after(() => { if (!conn.endedWith) conn.close(); workspace.destroy(); });
  const synced = workspace.waitFor("synced", { timeoutMs: 15000 });
  const policy = workspace.waitFor("policy", { timeoutMs: 15000 });
  await conn.join();
  await synced;
  assert.deepEqual(snapshot(workspace), { "notes.md": "Grüße\n", "src/main.py": "print('a😀b')\n" });
  const received = await policy;
  assert.equal(received.readOnly, false);
  assert.deepEqual(received.unshared, [{ path: "logo.bin", size: 4, reason: "binary" }]);
  // The Python host's awareness (participant 1) is accepted; ours reaches it.
  await eventually(() => workspace.peers().some((p) => p.participant === 1 && p.state.user?.participant === 1), "the host's awareness");

  // The JS guest types after the emoji (UTF-16 index 10 = after "print('a😀"): the file on disk has it.
  workspace.text("src/main.py").insert(10, "X🦊");
  const disk = (p) => { try { return readFileSync(path.join(dir, p), "utf8"); } catch { return null; } };
  await eventually(() => disk("src/main.py") === "print('a😀X🦊b')\n", "the guest's edit reached the disk", 20000);
  // An edit on disk by any editor reaches the guest.
  writeFileSync(path.join(dir, "notes.md"), "Grüße 🎉 from disk\n");
  await eventually(() => workspace.read("notes.md") === "Grüße 🎉 from disk\n", "the disk edit reached the guest", 20000);
  // A file created on disk is shared.
  writeFileSync(path.join(dir, "new.txt"), "ñ\n");
  await eventually(() => workspace.read("new.txt") === "ñ\n", "a new file reached the guest", 20000);
  const ended = conn.waitFor("ended", { timeoutMs: 15000 });
  share.child.stdin.write("/end\n");
  assert.equal((await ended).code, "session-ended");
});

test("a JavaScript host and `ct-client join LINK --mirror DIR` (Python) converge, both ways", async (t) => {
  const { mkdtempSync, writeFileSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const edge = await startEdge(t);
  const conn = new SessionConnection({ server: edge.url, name: "JsHost", WebSocket });
  const workspace = new Workspace(conn, { user: { name: "JsHost", color: "#ff8800" } });
  t.after(() => { if (!conn.endedWith) conn.close(); workspace.destroy(); });
  workspace.addFile("a.txt", "a😀b\n");
  workspace.addFile("deep/dir/ü.md", "# Grüße\n");
  await conn.host({ title: "js host" });
  const dir = mkdtempSync(path.join(tmpdir(), "ct-js-mirror-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const mirror = path.join(dir, "m");
  const guest = await pythonChild(t, ["-m", "ct.client.cli", "join", conn.link, "--name", "bob", "--mirror", mirror]);
  let line = "";
  for (let i = 0; i < 30 && !/^\* synced/.test(line); i++) line = await guest.next();
  assert.match(line, /^\* synced/);
  const disk = (p) => { try { return readFileSync(path.join(mirror, p), "utf8"); } catch { return null; } };
  await eventually(() => disk("a.txt") === "a😀b\n" && disk("deep/dir/ü.md") === "# Grüße\n", "the mirror holds the files");

  workspace.text("a.txt").insert(3, "X"); // after the emoji, in UTF-16 units
  await eventually(() => disk("a.txt") === "a😀Xb\n", "the host's edit reached the mirror");
  writeFileSync(path.join(mirror, "deep/dir/ü.md"), "# Grüße 🎉\n");
  await eventually(() => workspace.read("deep/dir/ü.md") === "# Grüße 🎉\n", "the mirror's disk edit reached the host", 20000);
  await eventually(() => workspace.peers().some((p) => p.state.user?.name === "bob"), "bob's awareness");
  const left = conn.waitFor("participant-left", { timeoutMs: 15000 });
  guest.child.stdin.end(); // end of input leaves the session
  assert.equal((await left).reason, "left");
});

test("chunked messages pass between Python and JavaScript both ways (a 1.2 MB sync, a 600 KB edit)", async (t) => {
  const edge = await startEdge(t);
  const files = { "one.txt": "1".repeat(400 * 1024), "two.txt": "ü".repeat(200 * 1024), "three.txt": "3😀".repeat(400 * 1024 / 6) };
  const py = await pythonChild(t, [path.join(here, "python_collab_host.py"), edge.url, "{}"]);
  const link = await py.next();
  for (const [p, text] of Object.entries(files)) assert.deepEqual(await py.ask({ op: "put", path: p, text }), { ok: true });
  const conn = await SessionConnection.fromLink(link, { name: "Ada", WebSocket });
  const workspace = new Workspace(conn, { user: { name: "Ada" } });
  t.after(() => { conn.close(); workspace.destroy(); });
  let chunks = 0;
  conn.on("frame", ({ data }) => { if (data[0] === 0x7f) chunks += 1; });
  const synced = workspace.waitFor("synced", { timeoutMs: 20000 });
  await conn.join();
  await synced;
  assert.deepEqual(snapshot(workspace), Object.fromEntries(Object.entries(files).sort()));
  assert.ok(chunks >= 3, `the Python host's sync came in ${chunks} chunks`);
  const big = "é🎉".repeat(100 * 1024); // 600 KiB of UTF-8 in one transaction
  workspace.text("one.txt").insert(0, big);
  await eventually(async () => {
    const answer = await py.ask({ op: "snapshot" });
    if (answer.snapshot["one.txt"] === big + files["one.txt"]) return true;
    throw new Error(`one.txt has ${answer.snapshot["one.txt"].length} UTF-16 units; warnings: ${py.warnings.join("; ")}`);
  }, "the Python host joined the JS chunks");
});
