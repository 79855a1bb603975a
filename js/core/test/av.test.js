// Pure tests of js/core/av.js: the av-signal codec, who is polite, getStats summaries, and
// the call's signalling decisions on an in-memory connection with a stand-in
// RTCPeerConnection (the real ones are tested in Chromium: tests/webclient/test_av.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Emitter, AvCall, av, messages } from "../index.js";

const { encodeSignal, decodeSignal, isPolite, summariseStats, SignalError, MAX_SIGNAL_BYTES } = av;

test("av-signal: kind 0x08, JSON body, checked on the way in", () => {
  const bytes = encodeSignal({ type: "offer", sdp: "v=0\r\n" });
  assert.equal(bytes[0], 0x08);
  assert.equal(messages.KIND.AV_SIGNAL, 0x08);
  assert.deepEqual(decodeSignal(bytes.subarray(1)), { type: "offer", sdp: "v=0\r\n" });
  assert.deepEqual(decodeSignal(encodeSignal({ type: "candidate", candidate: null }).subarray(1)), { type: "candidate", candidate: null });
  const c = decodeSignal(encodeSignal({ type: "candidate", candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0, extra: 1 } }).subarray(1));
  assert.deepEqual(c.candidate, { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: null });
  assert.deepEqual(decodeSignal(new TextEncoder().encode('{"type":"screen","on":true,"stream":"s1"}')), { type: "screen", on: true, stream: "s1", stop: false });
  const enc = (text) => new TextEncoder().encode(text);
  for (const bad of ["[]", "null", "{}", '{"type":"boom"}', '{"type":"offer"}', '{"type":"candidate","candidate":{}}', "not json", "\xff"]) {
    assert.throws(() => decodeSignal(enc(bad)), SignalError, bad);
  }
  assert.throws(() => decodeSignal(new Uint8Array(MAX_SIGNAL_BYTES + 1)), SignalError);
  assert.throws(() => encodeSignal({ type: "offer", sdp: "x".repeat(MAX_SIGNAL_BYTES) }), SignalError);
  assert.throws(() => encodeSignal({ type: "nope" }), SignalError);
});

test("the higher participant id is polite", () => {
  assert.equal(isPolite(3, 2), true);
  assert.equal(isPolite(2, 3), false);
});

test("getStats summary: selected pair relayed or direct, inbound audio and video", () => {
  const report = new Map(Object.entries({
    t: { id: "t", type: "transport", selectedCandidatePairId: "p" },
    p: { id: "p", type: "candidate-pair", localCandidateId: "l", remoteCandidateId: "r" },
    l: { id: "l", type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tcp" },
    r: { id: "r", type: "remote-candidate", candidateType: "host" },
    a: { id: "a", type: "inbound-rtp", kind: "audio", bytesReceived: 100, packetsReceived: 5, audioLevel: 0.2, totalAudioEnergy: 0.1 },
    v: { id: "v", type: "inbound-rtp", kind: "video", bytesReceived: 1000, packetsReceived: 9, framesDecoded: 3 },
    o: { id: "o", type: "outbound-rtp", kind: "audio", bytesSent: 50, packetsSent: 2 },
  }));
  const s = summariseStats(report);
  assert.equal(s.relayed, true);
  assert.equal(s.relayProtocol, "tcp");
  assert.deepEqual(s.audio, { bytes: 100, packets: 5, audioLevel: 0.2, totalAudioEnergy: 0.1 });
  assert.equal(s.video.framesDecoded, 3);
  assert.equal(s.outbound.bytes, 50);
  assert.equal(summariseStats(new Map()).relayed, null);
});

class FakeConnection extends Emitter {
  constructor(participant) {
    super();
    this.participant = participant;
    this.iceServers = [{ urls: ["stun:127.0.0.1:3478"] }];
    this.sent = [];
    this.controls = [];
  }
  send(bytes, to = 0) {
    this.sent.push({ to, signal: decodeSignal(bytes.subarray(1)) });
  }
  control(message) {
    this.controls.push(message);
  }
  signal(sender, signal) {
    this.emit("frame", { sender, seq: 1, data: encodeSignal(signal) });
  }
}

class FakePeerConnection {
  constructor(config) {
    this.config = config;
    this.senders = [];
    this.closed = false;
    this.signalingState = "stable";
    this.connectionState = "new";
  }
  addTrack(track) {
    const sender = { track };
    this.senders.push(sender);
    return sender;
  }
  getSenders() {
    return this.senders;
  }
  removeTrack(sender) {
    this.senders = this.senders.filter((s) => s !== sender);
  }
  setConfiguration(config) {
    this.config = config;
  }
  restartIce() {
    this.restarted = (this.restarted || 0) + 1;
  }
  close() {
    this.closed = true;
  }
}

function fakeStream(id, kinds = ["audio"]) {
  const tracks = kinds.map((kind, i) => ({ kind, id: `${id}-${i}`, enabled: true, stopped: false, stop() { this.stopped = true; } }));
  return {
    id,
    getTracks: () => [...tracks],
    getAudioTracks: () => tracks.filter((t) => t.kind === "audio"),
    getVideoTracks: () => tracks.filter((t) => t.kind === "video"),
    addTrack: (t) => tracks.push(t),
    removeTrack: (t) => tracks.splice(tracks.indexOf(t), 1),
  };
}

test("a call: join, a newcomer gets a reply and an offerer, mute, leave closes connections", () => {
  const conn = new FakeConnection(2);
  const call = new AvCall(conn, { RTCPeerConnection: FakePeerConnection, iceTransportPolicy: "relay" });
  assert.equal(call.available, true);
  const stream = fakeStream("mic");
  call.join(stream);
  assert.deepEqual(conn.sent.shift(), { to: 0, signal: { type: "join", reply: false } });
  // Participant 3 joins: we answer it, tell our state and make the connection (we offer).
  conn.signal(3, { type: "join" });
  assert.deepEqual(conn.sent.map((s) => [s.to, s.signal.type]), [[3, "join"], [3, "mute"]]);
  assert.equal(conn.sent[0].signal.reply, true);
  const peer = call.peers.get(3);
  assert.equal(peer.polite, false);
  assert.equal(peer.pc.config.iceTransportPolicy, "relay");
  assert.equal(peer.pc.senders.length, 1);
  // Participant 4's reply to our join: no connection from us (it offers).
  conn.signal(4, { type: "join", reply: true });
  assert.equal(call.peers.has(4), false);
  assert.equal(call.members.get(4).inCall, true);
  // New ICE servers reach live connections.
  conn.iceServers = [{ urls: ["turn:127.0.0.1:3478?transport=tcp"], username: "u", credential: "c" }];
  conn.emit("ice-servers", {});
  assert.equal(peer.pc.config.iceServers[0].username, "u");
  // A resume: announce ourselves again and restart ICE.
  conn.sent.length = 0;
  conn.emit("state", "resumed");
  assert.deepEqual(conn.sent.map((s) => [s.to, s.signal.type, s.signal.reply]), [[0, "join", true]]);
  assert.equal(peer.pc.restarted, 1);
  // Mute: the track is disabled, everyone told.
  call.setMuted(true);
  assert.equal(stream.getAudioTracks()[0].enabled, false);
  assert.deepEqual(conn.sent.at(-1).signal, { type: "mute", muted: true, camera: false });
  // Counters for the edge: no names, no addresses.
  call.report([{ participant: 3, connectionState: "connected", relayed: true }]);
  assert.deepEqual(conn.controls.at(-1), { type: "av-report", inCall: true, peers: 1, relayed: 1, direct: 0 });
  // 3 leaves the session: its connection closes.
  conn.emit("participant-left", { participant: 3 });
  assert.equal(peer.pc.closed, true);
  assert.equal(call.peers.size, 0);
  // We leave: tracks stopped, others told.
  conn.signal(5, { type: "join" });
  const other = call.peers.get(5);
  call.leave();
  assert.equal(other.pc.closed, true);
  assert.equal(stream.getTracks().length ? stream.getTracks()[0].stopped : true, true);
  assert.equal(conn.sent.at(-1).signal.type, "leave");
  call.report();
  assert.deepEqual(conn.controls.at(-1), { type: "av-report", inCall: false, peers: 0, relayed: 0, direct: 0 });
});

test("screen sharing: one sharer; only the host can stop someone's share", () => {
  const conn = new FakeConnection(2);
  const call = new AvCall(conn, { RTCPeerConnection: FakePeerConnection });
  call.join(fakeStream("mic"));
  conn.signal(3, { type: "join" });
  const screen = fakeStream("screen", ["video"]);
  assert.equal(call.startScreen(screen), true);
  assert.equal(call.peers.get(3).pc.senders.length, 2);
  assert.deepEqual(conn.sent.at(-1), { to: 0, signal: { type: "screen", on: true, stream: "screen", stop: false } });
  conn.signal(3, { type: "screen", on: false, stop: true }); // not the host: ignored
  assert.equal(call.screenStream, screen);
  conn.signal(1, { type: "screen", on: false, stop: true }); // the host
  assert.equal(call.screenStream, null);
  assert.equal(call.peers.get(3).pc.senders.length, 1);
  // Someone else shares: we cannot start.
  conn.signal(3, { type: "screen", on: true, stream: "theirs" });
  assert.equal(call.sharer, 3);
  assert.equal(call.startScreen(fakeStream("mine", ["video"])), false);
  conn.signal(3, { type: "screen", on: false });
  assert.equal(call.sharer, null);
  // A malformed signal is a warning, never fatal.
  const warnings = [];
  call.on("warning", (w) => warnings.push(w));
  conn.emit("frame", { sender: 3, seq: 9, data: new Uint8Array([0x08, 0x7b]) });
  assert.equal(warnings.length, 1);
});

test("another camera replaces the track in the same senders, the old one stopped after", async () => {
  const conn = new FakeConnection(2);
  const call = new AvCall(conn, { RTCPeerConnection: FakePeerConnection });
  call.join(fakeStream("mic"));
  conn.signal(3, { type: "join" });
  const first = fakeStream("cam0", ["video"]).getVideoTracks()[0];
  call.setCamera(first);
  const pc = call.peers.get(3).pc;
  const sender = pc.senders.find((s) => s.track === first);
  sender.replaceTrack = async (track) => { sender.track = track; };
  const second = fakeStream("cam1", ["video"]).getVideoTracks()[0];
  await call.replaceVideoTrack(second);
  assert.equal(pc.senders.length, 2); // no sender more: no renegotiation
  assert.equal(sender.track, second);
  assert.equal(first.stopped, true);
  assert.equal(second.stopped, false);
  assert.deepEqual(call.localStream.getVideoTracks(), [second]);
  assert.equal(call.cameraOn, true);
});

test("a mesh holds at most 6 people: a seventh is not connected", () => {
  const conn = new FakeConnection(2);
  const call = new AvCall(conn, { RTCPeerConnection: FakePeerConnection });
  const warnings = [];
  call.on("warning", (w) => warnings.push(w));
  call.join(fakeStream("mic"));
  for (const id of [3, 4, 5, 6, 7]) conn.signal(id, { type: "join" });
  assert.equal(call.peers.size, 5);
  conn.signal(8, { type: "join" });
  conn.signal(9, { type: "offer", sdp: "v=0\r\n" });
  assert.equal(call.peers.size, 5);
  assert.equal(warnings.length, 2);
});
