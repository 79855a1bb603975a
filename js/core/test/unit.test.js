// Pure tests: wire codec, crypto, join links, application-layer codec, chunker, awareness
// filtering (a Workspace on an in-memory stand-in connection: pure logic, no I/O).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as Y from "yjs";
import { Emitter, SessionKey, DecryptError, parseJoinLink, formatJoinLink, websocketUrl, Workspace, wire, messages } from "../index.js";
import { encodeAwarenessEntries } from "../workspace.js";
import { python, ROOT } from "./helpers.js";

const { KIND } = messages;

test("upstream and downstream frames: big-endian headers", () => {
  const up = wire.encodeUpstream(new Uint8Array([9, 8]), 0x01020304, true);
  assert.deepEqual([...up], [1, 1, 2, 3, 4, 9, 8]);
  assert.throws(() => wire.encodeUpstream(new Uint8Array(), -1));
  assert.throws(() => wire.encodeUpstream(new Uint8Array(), 2 ** 32));
  const down = wire.encodeDownstream(new Uint8Array([7]), 2 ** 40 + 5, 3, false);
  assert.equal(down.length, 14);
  const parsed = wire.decodeDownstream(down.buffer);
  assert.equal(parsed.flags, 0);
  assert.equal(parsed.seq, 2 ** 40 + 5);
  assert.equal(parsed.sender, 3);
  assert.deepEqual([...parsed.payload], [7]);
  assert.throws(() => wire.decodeDownstream(new Uint8Array(12)), /shorter than its header/);
});

test("control messages: JSON objects with a string type", () => {
  assert.deepEqual(wire.decodeControl('{"type":"ack","received":3}'), { type: "ack", received: 3 });
  for (const bad of ["nope", "[]", "null", '{"type":1}', "{}"]) assert.throws(() => wire.decodeControl(bad));
  assert.throws(() => wire.decodeControl(`{"type":"x","pad":"${"a".repeat(wire.MAX_DOWNSTREAM_CONTROL_BYTES)}"}`), /too large/);
  assert.throws(() => wire.decodeControl("[".repeat(100000)));
});

test("which closes are final (docs/protocol.md)", () => {
  for (const code of ["session-ended", "removed", "resume-expired", "forbidden", "superseded", "bad-message", "unsupported-version", "client-too-old"]) {
    assert.equal(wire.closeIsFinal(code, 1000), true, code);
  }
  for (const code of ["rate-limited", "handshake-timeout", "not-found", "shutting-down"]) {
    assert.equal(wire.closeIsFinal(code, 4000), false, code);
  }
  for (const close of [1002, 1003, 1007, 1008, 1009, 1010, 4010, 4011, 4009]) assert.equal(wire.closeIsFinal(null, close), true, String(close));
  for (const close of [1000, 1001, 1006, 4029, 4002, 4004, 3000, 4999]) assert.equal(wire.closeIsFinal(null, close), false, String(close));
  assert.equal(wire.closeCodeName(4011), "removed");
  assert.equal(wire.closeCodeName(1006), null);
});

test("AES-256-GCM: round trip, session id bound, tampering refused", async () => {
  const key = await SessionKey.generate();
  assert.equal(key.toText().length, 43);
  const again = await SessionKey.fromText(key.toText());
  const sealed = await key.encrypt(new TextEncoder().encode("secret"), "S1");
  assert.equal(sealed.length, 12 + 6 + 16);
  assert.equal(new TextDecoder().decode(await again.decrypt(sealed, "S1")), "secret");
  await assert.rejects(again.decrypt(sealed, "S2"), DecryptError);
  const tampered = sealed.slice();
  tampered[20] ^= 1;
  await assert.rejects(again.decrypt(tampered, "S1"), DecryptError);
  await assert.rejects(again.decrypt(new Uint8Array(27), "S1"), /too short/);
  await assert.rejects(SessionKey.fromText("abc"), /32 bytes|base64url/);
  await assert.rejects(SessionKey.fromText("not base64!"), /base64url/);
});

test("crypto interoperates with the Python client (ct/client/crypto.py)", async () => {
  const key = await SessionKey.generate();
  const sealed = await key.encrypt(new TextEncoder().encode("from JS ✓"), "sess");
  const script = [
    "import sys, base64",
    "from ct.client.crypto import SessionKey",
    "k = SessionKey.from_text(sys.argv[1])",
    "print(k.decrypt(bytes.fromhex(sys.argv[2]), b'sess').decode())",
    "sys.stdout.write(k.encrypt('from Python ✓'.encode(), b'sess').hex())",
  ].join("\n");
  const out = execFileSync(python(), ["-c", script, key.toText(), Buffer.from(sealed).toString("hex")],
    { env: { ...process.env, PYTHONPATH: ROOT }, encoding: "utf8" });
  const [first, second] = out.split("\n");
  assert.equal(first, "from JS ✓");
  const back = await key.decrypt(new Uint8Array(Buffer.from(second, "hex")), "sess");
  assert.equal(new TextDecoder().decode(back), "from Python ✓");
});

test("join links parse as ct/client/links.py parses them", () => {
  const links = [
    "https://ct.example.com/join/AbC123?token=tok#key=KEY_-x",
    "http://127.0.0.1:8080/join/s1?token=t%2Bx&ctstickiness=st1#key=k",
    "https://h/prefix/path/join/s?token=t",
    "https://h/join/s?token=a+b#other=1&key=z",
  ];
  const script = [
    "import sys, json",
    "from ct.client.links import parse_link",
    "out = []",
    "for l in sys.argv[1:]:",
    "    p = parse_link(l)",
    "    out.append(dict(server=p.server, session=p.session, token=p.token, key=p.key, stickiness=p.stickiness))",
    "print(json.dumps(out))",
  ].join("\n");
  const expected = JSON.parse(execFileSync(python(), ["-c", script, ...links], { env: { ...process.env, PYTHONPATH: ROOT }, encoding: "utf8" }));
  assert.deepEqual(links.map(parseJoinLink), expected);
  for (const bad of ["ftp://h/join/s?token=t", "https://h/s?token=t", "https://h/join/s", "https://h/join/s?token=", "not a url"]) {
    assert.throws(() => parseJoinLink(bad), /join link/, bad);
  }
  const link = formatJoinLink({ server: "https://h:8443", session: "s", token: "t/+", key: "K", stickiness: "x" });
  assert.deepEqual(parseJoinLink(link), { server: "https://h:8443", session: "s", token: "t/+", key: "K", stickiness: "x" });
  assert.equal(websocketUrl("https://h:8443/x"), "wss://h:8443/ws/session");
  assert.equal(websocketUrl("http://h", "presence"), "ws://h/ws/presence");
  assert.throws(() => websocketUrl("ftp://h"), /not an http/);
});

test("application messages: encode, decode, malformed ones refused", () => {
  const sv = new Uint8Array([1, 2, 3]);
  const step1 = messages.decodeMessage(messages.encodeSyncStep1(sv, true));
  assert.equal(step1.kind, KIND.SYNC_STEP1);
  assert.equal(step1.initial, true);
  assert.deepEqual([...step1.stateVector], [1, 2, 3]);
  assert.equal(messages.decodeMessage(messages.encodeSyncStep1(sv, false)).initial, false);
  assert.deepEqual([...messages.decodeMessage(messages.encodeUpdate(sv)).update], [1, 2, 3]);
  assert.equal(messages.decodeMessage(messages.encodeSyncStep2(sv)).kind, KIND.SYNC_STEP2);
  const policy = messages.decodeMessage(messages.encodePolicy({ readOnly: true, unshared: [{ path: "a.png", size: 3, reason: "binary" }, 5] })).policy;
  assert.equal(policy.readOnly, true);
  assert.equal(policy.maxFileBytes, 1024 * 1024);
  assert.equal(policy.maxWorkspaceBytes, 32 * 1024 * 1024);
  assert.deepEqual(policy.unshared, [{ path: "a.png", size: 3, reason: "binary" }]);
  const notice = messages.decodeMessage(messages.encodeNotice({ level: "warning", code: "too-large", message: "m", path: "p" })).notice;
  assert.deepEqual(notice, { level: "warning", code: "too-large", message: "m", path: "p" });
  assert.deepEqual(messages.decodeMessage(new Uint8Array([0x42, 1])), { kind: 0x42, unknown: true });
  assert.throws(() => messages.decodeMessage(new Uint8Array()), messages.MessageError);
  assert.throws(() => messages.decodeMessage(new Uint8Array([KIND.SYNC_STEP1])), messages.MessageError);
  assert.throws(() => messages.decodeMessage(new Uint8Array([KIND.POLICY, 0xff])), messages.MessageError);
  assert.throws(() => messages.decodeMessage(new Uint8Array([KIND.POLICY, ...new TextEncoder().encode("[1]")])), messages.MessageError);
  assert.throws(() => messages.decodeMessage(new Uint8Array([KIND.NOTICE, ...new TextEncoder().encode("{}")])), messages.MessageError);
  assert.throws(() => messages.decodeMessage(new Uint8Array([KIND.CHUNK, 0, 0])), messages.MessageError);
});

test("workspace paths and UTF-8 sizes", () => {
  for (const ok of ["a", "src/main.py", "d/é/🎉.txt", "x".repeat(1024)]) assert.equal(messages.pathProblem(ok), null, ok);
  for (const bad of ["", "/abs", "a//b", "a/./b", "../x", "a/..", "a\0b", "a\\b", "x".repeat(1025), "é".repeat(513), 5]) {
    assert.notEqual(messages.pathProblem(bad), null, String(bad));
  }
  for (const s of ["", "abc", "é", "€", "🎉", "a🎉é\u0000", "\ud800x"]) {
    assert.equal(messages.utf8Length(s), Buffer.byteLength(s, "utf8"), JSON.stringify(s));
  }
});

test("chunker: split, join, one partial message per sender, bounds", () => {
  const big = new Uint8Array(512 * 1024 * 2 + 7).map((_, i) => i % 251);
  const parts = messages.chunkMessage(big, 77);
  assert.equal(parts.length, 3);
  assert.ok(parts.every((p) => p.length <= 1 + 12 + 512 * 1024));
  assert.deepEqual(messages.chunkMessage(new Uint8Array(10), 1).length, 1);
  const r = new messages.Reassembler();
  const decoded = parts.map((p) => messages.decodeMessage(p));
  assert.equal(decoded[0].kind, KIND.CHUNK);
  assert.equal(r.add(5, decoded[0]), null);
  assert.equal(r.add(5, decoded[1]), null);
  assert.deepEqual(r.add(5, decoded[2]), big);
  assert.equal(r.partial.size, 0);

  // Two senders interleave; a new id from one sender discards its old partial message.
  r.add(5, decoded[0]);
  r.add(6, decoded[0]);
  const other = messages.chunkMessage(big, 78).map((p) => messages.decodeMessage(p));
  r.add(5, other[0]);
  assert.throws(() => r.add(5, decoded[1]), /unknown message|out of order/);
  r.add(6, decoded[1]);
  assert.deepEqual(r.add(6, decoded[2]), big);

  // Out of order, a wrong count, a start that is not part 0: dropped.
  r.add(7, decoded[0]);
  assert.throws(() => r.add(7, decoded[2]), /out of order/);
  assert.throws(() => r.add(7, decoded[1]), /unknown message/);
  assert.throws(() => r.add(8, { id: 1, index: 0, count: 0, part: new Uint8Array(1) }), /count/);
  assert.throws(() => r.add(8, { id: 1, index: 0, count: messages.MAX_CHUNK_COUNT + 1, part: new Uint8Array(1) }), /count/);

  // Past the byte cap the partial message is dropped.
  const small = new messages.Reassembler(1000);
  small.add(1, { id: 1, index: 0, count: 3, part: new Uint8Array(600) });
  assert.throws(() => small.add(1, { id: 1, index: 1, count: 3, part: new Uint8Array(600) }), /passes 1000 bytes/);
  assert.equal(small.partial.size, 0);
  small.add(2, { id: 1, index: 0, count: 3, part: new Uint8Array(1) });
  small.forget(2);
  assert.equal(small.partial.size, 0);
  assert.throws(() => messages.chunkMessage({ length: messages.MAX_MESSAGE_BYTES + 1, subarray() {} }, 1), /over/);
});

/** A stand-in connection (an emitter with send()): pure Workspace logic, no sockets. */
class FakeConnection extends Emitter {
  constructor(participant, participants = [1, 2, 3]) {
    super();
    this.participant = participant;
    this.session = "S";
    this.state = "open";
    this.sent = [];
    this.participants = new Map(participants.map((id) => [id, { id, connected: true }]));
  }
  get isOpen() { return true; }
  send(data, to) {
    this.sent.push({ data, to });
    return Promise.resolve();
  }
}

function awarenessFrom(clientID, state, clock = 1) {
  return messages.encodeAwareness(encodeAwarenessEntries([{ clientID, clock, json: JSON.stringify(state) }]));
}

test("awareness: a state is accepted only from the participant it names; a leaver's states go", () => {
  const conn = new FakeConnection(1);
  const ws = new Workspace(conn);
  try {
    const user = (participant) => ({ user: { name: "Ada", color: "#fff", participant }, file: null, cursor: null });
    conn.emit("frame", { sender: 2, seq: 1, data: awarenessFrom(1000, user(2)) });
    conn.emit("frame", { sender: 3, seq: 2, data: awarenessFrom(2000, user(2)) }); // claims to be 2: ignored
    conn.emit("frame", { sender: 3, seq: 3, data: awarenessFrom(1000, user(3), 5) }); // 2's clientID: ignored
    conn.emit("frame", { sender: 3, seq: 4, data: awarenessFrom(ws.doc.clientID, user(3), 5) }); // ours: ignored
    assert.deepEqual(ws.peers().map((p) => [p.clientID, p.participant, p.state.user.participant]), [[1000, 2, 2]]);
    conn.emit("frame", { sender: 3, seq: 5, data: new Uint8Array([KIND.AWARENESS, 0xff]) }); // malformed: dropped
    conn.emit("participant-left", { type: "participant-left", participant: 2 });
    assert.deepEqual(ws.peers(), []);
  } finally {
    ws.destroy();
  }
});

test("policy only from the host; read-only applies edits only from the host", () => {
  const conn = new FakeConnection(2);
  const ws = new Workspace(conn);
  const warnings = [];
  ws.on("warning", (w) => warnings.push(w));
  try {
    conn.emit("frame", { sender: 3, seq: 1, data: messages.encodePolicy({ readOnly: true }) });
    assert.equal(ws.policy.readOnly, false);
    conn.emit("frame", { sender: 1, seq: 2, data: messages.encodePolicy({ readOnly: true }) });
    assert.equal(ws.policy.readOnly, true);
    assert.equal(ws.writable, false);
    const other = new Y.Doc();
    other.getMap("files").set("a.txt", new Y.Text("guest"));
    conn.emit("frame", { sender: 3, seq: 3, data: messages.encodeUpdate(Y.encodeStateAsUpdate(other)) });
    assert.equal(ws.read("a.txt"), undefined);
    conn.emit("frame", { sender: 1, seq: 4, data: messages.encodeUpdate(Y.encodeStateAsUpdate(other)) });
    assert.equal(ws.read("a.txt"), "guest");
    conn.emit("frame", { sender: 1, seq: 5, data: new Uint8Array([KIND.UPDATE, 1, 2, 3]) }); // not a Yjs update
    assert.ok(warnings.some((w) => /read-only/.test(w)));
    assert.ok(warnings.some((w) => /bad Yjs update|dropped/.test(w)));
  } finally {
    ws.destroy();
  }
});

test("sync: step1 is answered with step2, and an initial one with our step1 too", () => {
  const conn = new FakeConnection(1);
  const ws = new Workspace(conn);
  try {
    ws.addFile("f.txt", "hello");
    conn.sent.length = 0;
    conn.emit("frame", { sender: 2, seq: 1, data: messages.encodeSyncStep1(Y.encodeStateVector(new Y.Doc()), true) });
    const kinds = conn.sent.map(({ data, to }) => [data[0], to]);
    assert.deepEqual(kinds, [[KIND.SYNC_STEP2, 2], [KIND.SYNC_STEP1, 2]]);
    const guest = new Y.Doc();
    Y.applyUpdate(guest, messages.decodeMessage(conn.sent[0].data).update);
    assert.equal(guest.getMap("files").get("f.txt").toString(), "hello");
    assert.equal(ws.addFile("big.txt", "x".repeat(1024 * 1024 + 1)), "too-large");
    assert.throws(() => ws.addFile("../x", "y"), /segment/);
  } finally {
    ws.destroy();
  }
});

test("the host removes a path a guest added (docs/protocol.md); guests keep remote paths", async () => {
  const conn = new FakeConnection(1);
  const ws = new Workspace(conn);
  const guestConn = new FakeConnection(2);
  const guestWs = new Workspace(guestConn);
  try {
    ws.addFile("host.txt", "h");
    const other = new Y.Doc();
    Y.applyUpdate(other, Y.encodeStateAsUpdate(ws.doc));
    other.getMap("files").set("guest.txt", new Y.Text("g"));
    other.getMap("files").get("host.txt").insert(1, "!");
    const update = messages.encodeUpdate(Y.encodeStateAsUpdate(other, Y.encodeStateVector(ws.doc)));
    conn.sent.length = 0;
    conn.emit("frame", { sender: 2, seq: 1, data: update });
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(ws.paths(), ["host.txt"]);
    assert.equal(ws.read("host.txt"), "h!");
    assert.ok(conn.sent.some(({ data, to }) => data[0] === KIND.UPDATE && to === 0), "the removal went to everyone");
    // A guest applies the same update as it is: the host's removal reaches it later.
    guestConn.emit("frame", { sender: 3, seq: 1, data: messages.encodeUpdate(Y.encodeStateAsUpdate(other)) });
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.deepEqual(guestWs.paths(), ["guest.txt", "host.txt"]);
    // A value that is not a Y.Text, or an invalid path, is not a file.
    const odd = new Y.Doc();
    odd.getMap("files").set("map.txt", new Y.Map());
    odd.getMap("files").set("../escape", new Y.Text("x"));
    guestConn.emit("frame", { sender: 3, seq: 2, data: messages.encodeUpdate(Y.encodeStateAsUpdate(odd)) });
    assert.deepEqual(guestWs.paths(), ["guest.txt", "host.txt"]);
    assert.equal(guestWs.text("map.txt"), undefined);
    assert.equal(guestWs.read("map.txt"), undefined);
  } finally {
    ws.destroy();
    guestWs.destroy();
  }
});

test("a host adding many files is bounded by the workspace cap, counted once per file", () => {
  const conn = new FakeConnection(1);
  const ws = new Workspace(conn, { policy: { maxWorkspaceBytes: 100 * 1024, maxFileBytes: 2048 } });
  try {
    const started = Date.now();
    const refused = [];
    for (let i = 0; i < 2000; i++) {
      const why = ws.addFile(`f/${i}.txt`, "é".repeat(512)); // 1 KiB each
      if (why) refused.push(why);
    }
    assert.equal(ws.paths().length, 100);
    assert.equal(refused.length, 1900);
    assert.ok(refused.every((r) => r === "workspace-full"));
    assert.equal(ws.workspaceBytes(), 100 * 1024);
    ws.text("f/0.txt").insert(0, "abc"); // an edit: counted again
    assert.equal(ws.workspaceBytes(), 100 * 1024 + 3);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  } finally {
    ws.destroy();
  }
});
