// Test helpers: a real edge (`twistd -n ctedge`) as a child process, clients on it.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { SessionConnection, Workspace } from "../index.js";

// Node 18 (Debian 12's) has WebCrypto only as node:crypto's webcrypto; Node 20 has the global.
if (!globalThis.crypto?.subtle) globalThis.crypto = (await import("node:crypto")).webcrypto;

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The Python that runs the edge: CT_TEST_PYTHON (set by the pytest wrapper), else the repo's venv. */
export function python() {
  if (process.env.CT_TEST_PYTHON) return process.env.CT_TEST_PYTHON;
  for (const candidate of [path.join(ROOT, ".venv", "bin", "python"), "/work/main/.venv/bin/python"]) {
    if (existsSync(candidate)) return candidate;
  }
  return "python3";
}

/** Starts `twistd -n ctedge` on a free loopback port; resolves with {url, stop(), log()}. */
export async function startEdge(t, settings = {}, timeoutMs = 30000) {
  const dir = mkdtempSync(path.join(tmpdir(), "ct-js-edge-"));
  const logPath = path.join(dir, "twistd.log");
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CT_")));
  Object.assign(env, {
    PYTHONPATH: ROOT,
    CT_HTTP_LISTEN: "tcp:0:interface=127.0.0.1",
    CT_HTTPS_LISTEN: "",
    ...settings,
  });
  const child = spawn(python(), ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
    `--logfile=${logPath}`, "ctedge"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => { output += d; });
  child.stderr.on("data", (d) => { output += d; });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const log = () => (existsSync(logPath) ? readFileSync(logPath, "utf8") : "");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  t.after(stop);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = /services available on port (\d+) \(HTTP\)/.exec(log());
    if (match) return { url: `http://127.0.0.1:${match[1]}`, stop, log };
    if (child.exitCode !== null) throw new Error(`ctedge exited with ${child.exitCode}:\n${output}\n${log()}`);
    await sleep(50);
  }
  throw new Error(`ctedge did not report its port within ${timeoutMs} ms:\n${output}\n${log()}`);
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until check() is truthy; fails the test with `what` after timeoutMs. */
export async function eventually(check, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** A host with a workspace (files: {path: text}); closes at the end of the test. */
export async function host(t, edge, { name = "Host", files = {}, policy = {}, connectionOptions = {}, workspaceOptions = {} } = {}) {
  const connection = new SessionConnection({ server: edge.url, name, WebSocket, ...connectionOptions });
  const workspace = new Workspace(connection, { policy, ...workspaceOptions });
  for (const [p, text] of Object.entries(files)) workspace.addFile(p, text);
  workspace.setUser({ name, color: "#ff0000" });
  t.after(() => closeQuietly(connection, workspace));
  await connection.host({ title: "js core test" });
  return { connection, workspace };
}

/** A guest joined through the host's link, synced. */
export async function guest(t, link, { name = "Guest", sync = true, connectionOptions = {}, workspaceOptions = {}, beforeJoin = null } = {}) {
  const connection = await SessionConnection.fromLink(link, { name, WebSocket, ...connectionOptions });
  beforeJoin?.(connection);
  const workspace = new Workspace(connection, workspaceOptions);
  workspace.setUser({ name, color: "#00ff00" });
  t.after(() => closeQuietly(connection, workspace));
  const synced = sync ? workspace.waitFor("synced", { timeoutMs: 15000 }) : null;
  await connection.join();
  if (synced) await synced;
  return { connection, workspace };
}

export function closeQuietly(connection, workspace) {
  if (!connection.endedWith) connection.close();
  workspace?.destroy();
}

/** Every file's text, for comparing workspaces. */
export function snapshot(workspace) {
  return Object.fromEntries(workspace.paths().map((p) => [p, workspace.read(p)]));
}

/**
 * A TCP proxy on loopback in front of `target` (http://127.0.0.1:port). freeze() stops
 * forwarding on the open connections without closing them (a dead network: half-open
 * TCP); with {newToo: true} new connections are accepted but frozen too, until thaw().
 * Resolves with {url, freeze(), thaw(), connections}.
 */
export async function startProxy(t, target) {
  const net = await import("node:net");
  const { port: targetPort } = new URL(target);
  const pairs = new Set();
  let freezeNew = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), "127.0.0.1");
    const pair = { client, upstream, frozen: freezeNew };
    pairs.add(pair);
    client.on("data", (d) => { if (!pair.frozen) upstream.write(d); });
    upstream.on("data", (d) => { if (!pair.frozen) client.write(d); });
    const end = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy(); }
    return new Promise((resolve) => server.close(resolve));
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    freeze({ newToo = false } = {}) {
      freezeNew = newToo;
      for (const pair of pairs) pair.frozen = true;
    },
    thaw() { freezeNew = false; },
    get connections() { return pairs.size; },
  };
}
