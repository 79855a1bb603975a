// The client core against a real edge (twistd -n ctedge on loopback).
import { test } from "node:test";
import assert from "node:assert/strict";
import * as Y from "yjs";
import { startEdge, startProxy, host, guest, eventually, snapshot } from "./helpers.js";

test("host and two guests converge on concurrent text edits", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "src/main.py": "print('hi')\n", "README.md": "# Title\n" } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  assert.equal(a.workspace.read("src/main.py"), "print('hi')\n");
  assert.deepEqual(snapshot(b.workspace), snapshot(h.workspace));

  a.workspace.text("src/main.py").insert(0, "# Ada\n");
  b.workspace.text("src/main.py").insert(0, "# Bob\n");
  h.workspace.text("README.md").insert(7, "Host edit, ünïcödé 🎉\n");
  h.workspace.addFile("new.txt", "fresh");
  await eventually(() => {
    const s = JSON.stringify(snapshot(h.workspace));
    return s === JSON.stringify(snapshot(a.workspace)) && s === JSON.stringify(snapshot(b.workspace))
      && h.workspace.read("src/main.py").includes("# Ada") && h.workspace.read("src/main.py").includes("# Bob")
      && a.workspace.read("new.txt") === "fresh";
  }, "all three converge");
  assert.match(b.workspace.read("README.md"), /ünïcödé 🎉/);
  // Guests edit texts; the host alone adds paths: one a guest adds goes again.
  a.workspace.files.set("guest-added.txt", new Y.Text("nope"));
  await eventually(() => [h, a, b].every((p) => p.workspace.read("guest-added.txt") === undefined), "the host removed the guest's path");
});

test("a guest whose connection is killed resumes with no edit lost either way", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "start\n" } });
  const a = await guest(t, h.connection.link, { name: "Ada", connectionOptions: { resumeDelays: [700] } });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  const states = [];
  a.connection.on("state", (s) => states.push(s));
  const resumed = a.connection.waitFor("resumed", { timeoutMs: 15000 });
  const away = h.connection.waitFor("participant-away", { timeoutMs: 20000 });

  a.connection.drop(); // the TCP connection dies without a goodbye
  await away;
  for (let i = 0; i < 20; i++) {
    h.workspace.text("a.txt").insert(0, `h${i} `);
    b.workspace.text("a.txt").insert(b.workspace.text("a.txt").length, ` b${i}`);
    a.workspace.text("a.txt").insert(0, `a${i} `); // sent while disconnected: kept, resent after resume
  }
  const report = await resumed;
  assert.equal(report.recovered, true);
  assert.deepEqual(states.slice(0, 2), ["reconnecting", "resumed"]);
  await eventually(() => {
    const text = h.workspace.read("a.txt");
    return text === a.workspace.read("a.txt") && text === b.workspace.read("a.txt")
      && [...Array(20).keys()].every((i) => text.includes(`h${i} `) && text.includes(` b${i}`) && text.includes(`a${i} `));
  }, "all edits everywhere after the resume");
  assert.equal(a.connection.resumes, 1);
  await eventually(() => a.connection.unacked.length < 30, "the edge acknowledged A's resent frames");
});

test("resumed with recovered: false resynchronises the document", async (t) => {
  const edge = await startEdge(t, { CT_REPLAY_MAX_FRAMES: "16" });
  const h = await host(t, edge, { files: { "a.txt": "" } });
  const a = await guest(t, h.connection.link, { name: "Ada", connectionOptions: { resumeDelays: [1500] } });
  const resumed = a.connection.waitFor("resumed", { timeoutMs: 15000 });
  const away = h.connection.waitFor("participant-away", { timeoutMs: 20000 });
  a.connection.drop();
  await away;
  for (let i = 0; i < 60; i++) h.workspace.text("a.txt").insert(h.workspace.text("a.txt").length, `${i},`);
  const report = await resumed;
  assert.equal(report.recovered, false, JSON.stringify(report));
  const expected = [...Array(60).keys()].map((i) => `${i},`).join("");
  await eventually(() => a.workspace.read("a.txt") === expected, "A resynchronised the whole text");
  assert.equal(a.workspace.synced, true);
});

test("a workspace over 1 MiB reaches a late joiner in chunks; a big live update too", async (t) => {
  const edge = await startEdge(t);
  const files = {};
  for (let i = 0; i < 3; i++) files[`big/${i}.txt`] = `${i}`.repeat(600 * 1024); // 1.8 MB of text
  const h = await host(t, edge, { files });
  let chunks = 0;
  const countChunks = (connection) => connection.on("frame", ({ data }) => { if (data[0] === 0x7f) chunks += 1; });
  const a = await guest(t, h.connection.link, { name: "Ada", beforeJoin: countChunks });
  assert.deepEqual(snapshot(a.workspace), snapshot(h.workspace));
  assert.ok(chunks >= 4, `the sync came in ${chunks} chunks`);
  chunks = 0;
  const chunkedLive = "é".repeat(450 * 1024); // 900 KiB of UTF-8: one update above 512 KiB
  h.workspace.addFile("live.txt", chunkedLive);
  await eventually(() => a.workspace.read("live.txt") === chunkedLive, "the big update arrived whole");
  assert.equal(chunks, 2);
  a.workspace.text("big/0.txt").insert(0, "edited ");
  await eventually(() => h.workspace.read("big/0.txt").startsWith("edited 000"), "an edit on a big file went back");
});

test("awareness: names, files and cursors reach the others; a leaver's entry goes", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "hello" } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  a.workspace.setCursor("a.txt", { anchor: { type: null, tname: null, item: null, assoc: 0 }, head: null });
  await eventually(() => {
    const peer = b.workspace.peers().find((p) => p.participant === a.connection.participant);
    return peer && peer.state.user.name === "Ada" && peer.state.file === "a.txt";
  }, "B sees Ada in a.txt");
  await eventually(() => h.workspace.peers().some((p) => p.state.user?.name === "Bob"), "the host sees Bob");
  // A newcomer gets everyone's state at once (sent to it on its participant-joined).
  const c = await guest(t, h.connection.link, { name: "Cy" });
  await eventually(() => ["Host", "Ada", "Bob"].every((n) => c.workspace.peers().some((p) => p.state.user?.name === n)),
    "the newcomer sees the host, Ada and Bob");
  await a.connection.leave();
  await eventually(() => !b.workspace.peers().some((p) => p.state.user?.name === "Ada")
    && !h.workspace.peers().some((p) => p.state.user?.name === "Ada"), "Ada's entry is gone");
});

test("read-only: guests see the policy; only the host's edits apply", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "host" }, policy: { readOnly: true, unshared: [{ path: "logo.png", size: 9, reason: "binary" }] } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  await eventually(() => a.workspace.policy.readOnly && b.workspace.policy.readOnly, "guests got the policy");
  assert.equal(a.workspace.writable, false);
  assert.deepEqual(a.workspace.policy.unshared, [{ path: "logo.png", size: 9, reason: "binary" }]);
  a.workspace.text("a.txt").insert(0, "guest ");
  h.workspace.text("a.txt").insert(4, "!");
  await eventually(() => b.workspace.read("a.txt") === "host!" && a.workspace.read("a.txt") === "guest host!", "the host's edit reached both");
  assert.equal(h.workspace.read("a.txt"), "host!");
  // The host lifts read-only: edits flow again.
  h.workspace.setPolicy({ readOnly: false });
  await eventually(() => !a.workspace.policy.readOnly && !b.workspace.policy.readOnly, "read-only lifted");
  b.workspace.text("a.txt").insert(0, "bob ");
  await eventually(() => h.workspace.read("a.txt") === "bob host!", "Bob's edit reached the host");
});

test("Node's ws with its default options (offers permessage-deflate) works; the edge declines it", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "x.txt": "x" } });
  assert.equal(h.connection._socket.extensions, "");
  const a = await guest(t, h.connection.link, { name: "Ada" });
  assert.equal(a.workspace.read("x.txt"), "x");
});

test("final closes: a removed guest and an ended session are reported with their code", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "x.txt": "x" } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  const aEnded = a.connection.waitFor("ended", { timeoutMs: 20000 });
  const left = h.connection.waitFor("participant-left", { timeoutMs: 20000 });
  h.connection.kick(a.connection.participant);
  assert.equal((await aEnded).code, "removed");
  assert.equal(a.connection.state, "ended");
  assert.equal((await left).reason, "removed");
  const bEnded = b.connection.waitFor("ended", { timeoutMs: 20000 });
  const hEnded = h.connection.waitFor("ended", { timeoutMs: 20000 });
  h.connection.end();
  assert.equal((await bEnded).code, "session-ended");
  assert.equal((await hEnded).code, "session-ended");
  await assert.rejects(b.connection.send(new Uint8Array([1])), /session-ended/);
});

test("a wrong join token is refused with its code", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge);
  const link = h.connection.link.replace(/token=[^&#]+/, "token=wrong");
  await assert.rejects(guest(t, link, { sync: false }), (e) => e.code === "forbidden");
});

test("a guest asks everyone when the host does not answer within the fallback time", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "shared" } });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  h.workspace.destroy(); // the host's connection stays, but nobody answers for it now
  const warned = [];
  const c = await guest(t, h.connection.link, { name: "Cy", workspaceOptions: { syncFallbackMs: 300 }, sync: false });
  c.workspace.on("warning", (w) => warned.push(w));
  await c.workspace.waitFor("synced", { timeoutMs: 10000 });
  assert.equal(c.workspace.read("a.txt"), "shared");
  assert.ok(warned.some((w) => /asking everyone/.test(w)), warned.join("\n"));
  assert.equal(b.workspace.read("a.txt"), "shared");
});

test("the edge acknowledges frames: what the client keeps for resending stays bounded", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "" } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  for (let i = 0; i < 700; i++) h.workspace.text("a.txt").insert(0, "x");
  await eventually(() => a.workspace.read("a.txt")?.length === 700, "A got every edit");
  await eventually(() => h.connection.unacked.length < 256, `host keeps ${h.connection.unacked.length} frames`);
  assert.ok(a.connection.ackedSeq >= 128, `A acknowledged up to ${a.connection.ackedSeq}`);
});

test("the host resumes after a drop (its host secret); a newcomer meanwhile syncs from a guest", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "one" }, connectionOptions: { resumeDelays: [2500] } });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  const away = b.connection.waitFor("participant-away", { timeoutMs: 20000 });
  const hostResumed = h.connection.waitFor("resumed", { timeoutMs: 15000 });
  h.connection.drop();
  await away;
  // The host is away: the newcomer asks everyone at once, and Bob answers.
  const c = await guest(t, h.connection.link, { name: "Cy" });
  assert.equal(h.connection.state, "reconnecting", "Cy synced while the host was away");
  assert.equal(c.workspace.read("a.txt"), "one");
  b.workspace.text("a.txt").insert(3, " two");
  h.workspace.text("a.txt").insert(0, "zero "); // while away: resent after the resume
  assert.equal((await hostResumed).recovered, true);
  await eventually(() => [h, b, c].every((p) => p.workspace.read("a.txt") === "zero one two"), "all three converge");
});

test("a guest that leaves is reported as left; its connection ends with 'left'", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge);
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const left = h.connection.waitFor("participant-left", { timeoutMs: 20000 });
  const ended = a.connection.waitFor("ended", { timeoutMs: 20000 });
  await a.connection.leave();
  assert.equal((await left).reason, "left");
  assert.equal((await ended).code, "left");
  assert.equal(h.connection.participants.has(a.connection.participant), false);
});

test("frames under another key are dropped with a warning, never fatal", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "a.txt": "secret" } });
  const wrongLink = h.connection.link.replace(/#key=.*/, "#key=" + "A".repeat(43));
  const warnings = [];
  const a = await guest(t, wrongLink, { name: "Eve", sync: false, beforeJoin: (c) => c.on("warning", (w) => warnings.push(w)) });
  await eventually(() => warnings.some((w) => /does not decrypt/.test(w)), "a decrypt warning");
  assert.equal(a.workspace.read("a.txt"), undefined);
  assert.equal(a.connection.isOpen, true);
  const b = await guest(t, h.connection.link, { name: "Bob" }); // the others are not affected
  assert.equal(b.workspace.read("a.txt"), "secret");
});

test("ctstickiness: the host's value comes back in 'hosted', rides in the link, and guests take it from there (their header)", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { connectionOptions: { stickiness: "lb-value_1" } });
  assert.equal(h.connection.stickiness, "lb-value_1");
  assert.match(h.connection.link, /&ctstickiness=lb-value_1#key=/);
  const a = await guest(t, h.connection.link, { name: "Ada", sync: false });
  assert.equal(a.connection.stickiness, "lb-value_1");
  const generated = await host(t, edge);
  assert.match(generated.connection.stickiness, /^[A-Za-z0-9_-]{16}$/);
});

test("notices reach everyone or one participant, with the sender", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge);
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  const seenByB = [];
  b.workspace.on("notice", (n) => seenByB.push(n));
  const toHost = h.workspace.waitFor("notice", { timeoutMs: 20000 });
  a.workspace.notice({ level: "warning", code: "file-too-large", message: "too big", path: "a.txt" }, 1);
  assert.deepEqual(await toHost, { from: a.connection.participant, level: "warning", code: "file-too-large", message: "too big", path: "a.txt" });
  const toB = b.workspace.waitFor("notice", { timeoutMs: 20000 });
  h.workspace.notice({ code: "hello", message: "hi all" });
  assert.deepEqual(await toB, { from: 1, level: "info", code: "hello", message: "hi all" });
  assert.equal(seenByB.length, 1, "B did not get the notice meant for the host");
});

test("a connection gone silent (half-open TCP) is noticed by the pings, dropped and resumed", async (t) => {
  const edge = await startEdge(t);
  const proxy = await startProxy(t, edge.url);
  const h = await host(t, edge, { files: { "a.txt": "" } });
  const viaProxy = h.connection.link.replace(edge.url, proxy.url);
  const a = await guest(t, viaProxy, { name: "Ada", connectionOptions: { pingIntervalMs: 300 } });
  const warnings = [];
  a.connection.on("warning", (w) => warnings.push(w));
  const resumed = a.connection.waitFor("resumed", { timeoutMs: 10000 });
  proxy.freeze(); // nothing passes any more, and nothing closes
  h.workspace.text("a.txt").insert(0, "while frozen");
  a.workspace.text("a.txt").insert(0, "from Ada, ");
  await resumed;
  assert.ok(warnings.some((w) => /nothing heard/.test(w)), warnings.join("\n"));
  await eventually(() => h.workspace.read("a.txt") === a.workspace.read("a.txt")
    && /while frozen/.test(h.workspace.read("a.txt")) && /from Ada, /.test(h.workspace.read("a.txt")), "converged after the resume");
});

test("a resume after the resume window is refused: the session is over for that guest", async (t) => {
  const edge = await startEdge(t, { CT_RESUME_WINDOW: "1" });
  const h = await host(t, edge);
  const a = await guest(t, h.connection.link, { name: "Ada", connectionOptions: { resumeDelays: [2500] } });
  const left = h.connection.waitFor("participant-left", { timeoutMs: 15000 });
  const ended = a.connection.waitFor("ended", { timeoutMs: 15000 });
  a.connection.drop();
  assert.equal((await left).reason, "timeout");
  const report = await ended;
  assert.equal(report.code, "resume-expired", JSON.stringify(report));
  assert.equal(a.connection.resumes, 0);
});

test("resume attempts that get no answer are given up in time and tried again until one passes", async (t) => {
  const edge = await startEdge(t);
  const proxy = await startProxy(t, edge.url);
  const h = await host(t, edge, { files: { "a.txt": "" } });
  const viaProxy = h.connection.link.replace(edge.url, proxy.url);
  const a = await guest(t, viaProxy, { name: "Ada", connectionOptions: { pingIntervalMs: 300, handshakeTimeoutMs: 400, resumeDelays: [100] } });
  const warnings = [];
  a.connection.on("warning", (w) => warnings.push(w));
  const resumed = a.connection.waitFor("resumed", { timeoutMs: 20000 });
  proxy.freeze({ newToo: true }); // the network is dead: connections open but nothing passes
  h.workspace.text("a.txt").insert(0, "host ");
  a.workspace.text("a.txt").insert(0, "ada ");
  await eventually(() => warnings.filter((w) => /no answer from/.test(w)).length >= 2, "two resume attempts timed out");
  assert.equal(a.connection.state, "reconnecting");
  proxy.thaw();
  await resumed;
  await eventually(() => h.workspace.read("a.txt") === a.workspace.read("a.txt") && h.workspace.read("a.txt").length === 9, "converged");
});

test("leave while reconnecting and close during a join settle at once", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge);
  const a = await guest(t, h.connection.link, { name: "Ada", sync: false, connectionOptions: { resumeDelays: [5000] } });
  const reconnecting = a.connection.waitFor("state", { predicate: (s) => s === "reconnecting", timeoutMs: 20000 });
  a.connection.drop();
  await reconnecting;
  const ended = a.connection.waitFor("ended", { timeoutMs: 2000 });
  await a.connection.leave();
  assert.equal((await ended).code, "left");

  const { SessionConnection } = await import("../index.js");
  const { default: WebSocket } = await import("ws");
  const b = await SessionConnection.fromLink(h.connection.link, { name: "Bob", WebSocket });
  const joining = b.join();
  b.close();
  await assert.rejects(joining, (e) => e.code === "closed");
  assert.equal(b.state, "ended");
});
