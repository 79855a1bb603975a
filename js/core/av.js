// Audio/video calls of a session: a full mesh of RTCPeerConnections, one per other
// participant in the call, signalled by `av-signal` messages (application layer kind 0x08,
// docs/protocol.md) inside the end-to-end-encrypted session channel. Media is DTLS-SRTP
// between participants; ICE servers (STUN/TURN with fresh credentials) come from the edge's
// `ice-servers` message. No DOM: the browser app (js/app/av.js) gives it media streams and
// shows what it emits; Node or an IDE plugin may pass its own RTCPeerConnection.
//
// Negotiation is the "perfect negotiation" pattern: both sides may offer; on a collision
// the polite side (the higher participant id) rolls back, the impolite one ignores the
// other's offer.

import { Emitter } from "./events.js";
import { KIND } from "./messages.js";

export const AV_SIGNAL = KIND.AV_SIGNAL;
export const MAX_SIGNAL_BYTES = 64 * 1024; // an SDP with a few tracks is ~10 KB
export const MAX_CALL_PARTICIPANTS = 6; // a mesh beyond this needs an SFU (docs/av.md)
export const SIGNAL_TYPES = Object.freeze(["join", "leave", "offer", "answer", "candidate", "mute", "screen"]);
const HOST_PARTICIPANT = 1;
const BROADCAST = 0;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** A malformed `av-signal` body (dropped with a warning, never fatal). */
export class SignalError extends Error {
  constructor(message) {
    super(message);
    this.name = "SignalError";
  }
}

/** Encodes one signal ({type, ...}) as an application message: 0x08 | UTF-8 JSON. */
export function encodeSignal(signal) {
  if (!signal || !SIGNAL_TYPES.includes(signal.type)) throw new SignalError(`unknown signal type ${signal?.type}`);
  const body = encoder.encode(JSON.stringify(signal));
  if (body.length > MAX_SIGNAL_BYTES) throw new SignalError(`signal larger than ${MAX_SIGNAL_BYTES} bytes`);
  const out = new Uint8Array(1 + body.length);
  out[0] = AV_SIGNAL;
  out.set(body, 1);
  return out;
}

function isString(value, max) {
  return typeof value === "string" && value.length <= max;
}

/** Decodes and checks the body of an `av-signal` message (after the kind byte). */
export function decodeSignal(body) {
  if (body.length > MAX_SIGNAL_BYTES) throw new SignalError(`signal larger than ${MAX_SIGNAL_BYTES} bytes`);
  let signal;
  try {
    signal = JSON.parse(strictDecoder.decode(body));
  } catch (e) {
    throw new SignalError(`signal is not UTF-8 JSON (${e.message})`);
  }
  if (!signal || typeof signal !== "object" || Array.isArray(signal)) throw new SignalError("signal is not a JSON object");
  switch (signal.type) {
    case "join":
    case "leave":
      return { type: signal.type, reply: signal.reply === true };
    case "offer":
    case "answer":
      if (!isString(signal.sdp, MAX_SIGNAL_BYTES)) throw new SignalError(`${signal.type} without sdp`);
      return { type: signal.type, sdp: signal.sdp };
    case "candidate": {
      const c = signal.candidate;
      if (c === null) return { type: "candidate", candidate: null };
      if (!c || typeof c !== "object" || !isString(c.candidate, 4096)) throw new SignalError("candidate without candidate");
      return {
        type: "candidate",
        candidate: {
          candidate: c.candidate,
          sdpMid: isString(c.sdpMid, 64) ? c.sdpMid : null,
          sdpMLineIndex: Number.isSafeInteger(c.sdpMLineIndex) ? c.sdpMLineIndex : null,
          usernameFragment: isString(c.usernameFragment, 256) ? c.usernameFragment : null,
        },
      };
    }
    case "mute":
      return { type: "mute", muted: signal.muted === true, camera: signal.camera === true };
    case "screen":
      return {
        type: "screen",
        on: signal.on === true,
        stream: isString(signal.stream, 256) ? signal.stream : null,
        stop: signal.stop === true,
      };
    default:
      throw new SignalError(`unknown signal type ${JSON.stringify(signal.type)?.slice(0, 40)}`);
  }
}

/** The polite side of a pair (perfect negotiation): the higher participant id. */
export function isPolite(self, other) {
  return self > other;
}

/**
 * Summary of one peer connection's getStats() report: the selected candidate pair
 * (relayed through TURN or direct) and inbound audio/video counters.
 */
export function summariseStats(report) {
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const out = {
    relayed: null, localCandidate: null, remoteCandidate: null, protocol: null, relayProtocol: null,
    audio: { bytes: 0, packets: 0, audioLevel: 0, totalAudioEnergy: 0 },
    video: { bytes: 0, packets: 0, framesDecoded: 0 },
    outbound: { bytes: 0, packets: 0 },
  };
  let pair = null;
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded"))) pair = s;
    }
  }
  if (pair) {
    const local = byId.get(pair.localCandidateId);
    const remote = byId.get(pair.remoteCandidateId);
    out.localCandidate = local?.candidateType ?? null;
    out.remoteCandidate = remote?.candidateType ?? null;
    out.protocol = local?.protocol ?? null;
    out.relayProtocol = local?.relayProtocol ?? null;
    out.relayed = out.localCandidate === "relay" || out.remoteCandidate === "relay";
  }
  for (const s of byId.values()) {
    if (s.type === "inbound-rtp" && (s.kind || s.mediaType) === "audio") {
      out.audio.bytes += s.bytesReceived || 0;
      out.audio.packets += s.packetsReceived || 0;
      out.audio.audioLevel = Math.max(out.audio.audioLevel, s.audioLevel || 0);
      out.audio.totalAudioEnergy += s.totalAudioEnergy || 0;
    } else if (s.type === "inbound-rtp" && (s.kind || s.mediaType) === "video") {
      out.video.bytes += s.bytesReceived || 0;
      out.video.packets += s.packetsReceived || 0;
      out.video.framesDecoded += s.framesDecoded || 0;
    } else if (s.type === "outbound-rtp") {
      out.outbound.bytes += s.bytesSent || 0;
      out.outbound.packets += s.packetsSent || 0;
    }
  }
  return out;
}

/**
 * One participant's side of the call. Events:
 *   call        (inCall)                   this participant joined or left the call
 *   peers       (Map)                      someone joined/left the call, muted, shares
 *   track       ({participant, track, stream})
 *   screen      ({participant, on})        who shares (null: nobody)
 *   screen-stopped ({by})                  the host stopped this participant's share
 *   warning     (text)
 */
export class AvCall extends Emitter {
  /**
   * `connection`: a SessionConnection; `RTCPeerConnection` (default: the global one);
   * `iceTransportPolicy`: "all" (default) or "relay" (force TURN); `filterIceServers`:
   * a function that may narrow the edge's list (tests: only `?transport=tcp`);
   * `candidateFilter`: a function of a candidate line, false for one not to signal (tests
   * keep ICE on loopback).
   */
  constructor(connection, { RTCPeerConnection = globalThis.RTCPeerConnection, iceTransportPolicy = "all", filterIceServers = null, candidateFilter = null } = {}) {
    super();
    this.connection = connection;
    this.RTCPeerConnection = RTCPeerConnection;
    this.iceTransportPolicy = iceTransportPolicy;
    this.filterIceServers = filterIceServers;
    this.candidateFilter = candidateFilter;
    this.inCall = false;
    this.muted = false;
    this.localStream = null; // microphone (and camera) tracks
    this.screenStream = null;
    this.sharer = null; // participant id of the screen sharer, or null
    this.peers = new Map(); // participant -> peer state
    this.members = new Map(); // participant -> {muted, camera, screen} of everyone else in the call
    this._unsubscribe = [
      connection.on("frame", (frame) => this._frame(frame)),
      connection.on("participant-left", (m) => this._gone(m.participant)),
      connection.on("ice-servers", () => this._iceServersChanged()),
      connection.on("state", (state) => this._connectionState(state)),
      connection.on("ended", () => this.leave({ quiet: true })),
    ];
  }

  get available() {
    return Array.isArray(this.connection.iceServers);
  }

  get self() {
    return this.connection.participant;
  }

  configuration() {
    let iceServers = this.connection.iceServers || [];
    if (this.filterIceServers) iceServers = this.filterIceServers(iceServers);
    return { iceServers, iceTransportPolicy: this.iceTransportPolicy };
  }

  // ------------------------------------------------------------------ local actions

  /** Joins the call with `stream` (a MediaStream: the microphone, maybe a camera). */
  join(stream) {
    if (this.inCall) return;
    this.localStream = stream;
    this.inCall = true;
    this._send({ type: "join" });
    this.emit("call", true);
  }

  /** Leaves the call: every peer connection closed, local tracks stopped. */
  leave({ quiet = false } = {}) {
    if (!this.inCall) return;
    if (!quiet) this._send({ type: "leave" });
    for (const participant of [...this.peers.keys()]) this._closePeer(participant);
    this.members.clear();
    for (const stream of [this.localStream, this.screenStream]) stream?.getTracks().forEach((t) => t.stop());
    if (this.sharer === this.self) this.sharer = null;
    this.localStream = null;
    this.screenStream = null;
    this.inCall = false;
    this.emit("call", false);
    this.emit("peers", this.members);
  }

  /** Mutes or unmutes the microphone (the track stays; others are told). */
  setMuted(muted) {
    this.muted = !!muted;
    this.localStream?.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
    this._announceMute();
  }

  get cameraOn() {
    return !!this.localStream?.getVideoTracks().length;
  }

  /** Adds (a video track) or removes (null) the camera; renegotiates with everyone. */
  setCamera(track) {
    if (!this.inCall) return;
    for (const old of this.localStream.getVideoTracks()) {
      old.stop();
      this.localStream.removeTrack(old);
      for (const peer of this.peers.values()) this._removeSender(peer, old);
    }
    if (track) {
      this.localStream.addTrack(track);
      for (const peer of this.peers.values()) peer.pc.addTrack(track, this.localStream);
    }
    this._announceMute();
  }

  /** Replaces the microphone track (another device) without renegotiation. */
  async replaceAudioTrack(track) {
    if (!this.localStream) return;
    const old = this.localStream.getAudioTracks()[0];
    if (old) {
      this.localStream.removeTrack(old);
      old.stop();
    }
    track.enabled = !this.muted;
    this.localStream.addTrack(track);
    for (const peer of this.peers.values()) {
      const sender = peer.pc.getSenders().find((s) => s.track === old || (s.track === null && !peer.videoSenders.has(s)));
      if (sender) await sender.replaceTrack(track);
      else peer.pc.addTrack(track, this.localStream);
    }
  }

  /** Replaces the camera track (another device) without renegotiation: the same senders
   * carry it, so the others keep decoding. With the camera off, turns it on. */
  async replaceVideoTrack(track) {
    const old = this.localStream?.getVideoTracks()[0];
    if (!old) return this.setCamera(track);
    this.localStream.removeTrack(old);
    this.localStream.addTrack(track);
    for (const peer of this.peers.values()) {
      const sender = peer.pc.getSenders().find((s) => s.track === old);
      if (sender) await sender.replaceTrack(track);
      else peer.pc.addTrack(track, this.localStream);
    }
    old.stop();
  }

  /** Starts sharing `stream` (getDisplayMedia's); false when someone else shares. */
  startScreen(stream) {
    if (!this.inCall || (this.sharer !== null && this.sharer !== this.self)) return false;
    this.stopScreen();
    this.screenStream = stream;
    this.sharer = this.self;
    for (const track of stream.getTracks()) {
      track.addEventListener?.("ended", () => { if (this.screenStream === stream) this.stopScreen(); });
      for (const peer of this.peers.values()) peer.pc.addTrack(track, stream);
    }
    this._send({ type: "screen", on: true, stream: stream.id });
    this.emit("screen", { participant: this.self, on: true });
    return true;
  }

  stopScreen() {
    const stream = this.screenStream;
    if (!stream) return;
    this.screenStream = null;
    for (const track of stream.getTracks()) {
      track.stop();
      for (const peer of this.peers.values()) this._removeSender(peer, track);
    }
    if (this.sharer === this.self) this.sharer = null;
    this._send({ type: "screen", on: false });
    this.emit("screen", { participant: this.self, on: false });
  }

  /** The host stops another participant's screen share. */
  stopScreenOf(participant) {
    if (this.self !== HOST_PARTICIPANT) return false;
    this._send({ type: "screen", on: false, stop: true }, participant);
    return true;
  }

  /** Per peer: {participant, ...summariseStats}. */
  async stats() {
    const out = [];
    for (const [participant, peer] of this.peers) {
      try {
        out.push({
          participant, connectionState: peer.pc.connectionState, iceConnectionState: peer.pc.iceConnectionState,
          signalingState: peer.pc.signalingState, candidates: { ...peer.candidates }, ...summariseStats(await peer.pc.getStats()),
        });
      } catch (e) {
        out.push({ participant, error: String(e?.message || e) });
      }
    }
    return out;
  }

  /**
   * Reports the call's counters to the edge (`av-report`, docs/av.md): in the call or not,
   * peer connections, and how many of them are connected through a TURN relay or directly
   * (from `stats`, the result of stats()). Counters only: no names, no addresses.
   */
  report(stats = []) {
    const connected = stats.filter((s) => s.connectionState === "connected" && typeof s.relayed === "boolean");
    const peers = this.inCall ? Math.min(this.peers.size, 15) : 0;
    const relayed = Math.min(connected.filter((s) => s.relayed).length, peers);
    const direct = Math.min(connected.filter((s) => !s.relayed).length, peers - relayed);
    this.connection.control({ type: "av-report", inCall: this.inCall, peers, relayed, direct });
  }

  destroy() {
    this.leave();
    this._unsubscribe.forEach((off) => off());
  }

  // ------------------------------------------------------------------ signalling

  _send(signal, to = BROADCAST) {
    try {
      this.connection.send(encodeSignal(signal), to);
    } catch (e) {
      this.emit("warning", `av: not sent (${e.message})`);
    }
  }

  _announceMute() {
    if (this.inCall) this._send({ type: "mute", muted: this.muted, camera: this.cameraOn });
  }

  _frame({ sender, data }) {
    if (!(data instanceof Uint8Array) || data.length < 1 || data[0] !== AV_SIGNAL) return;
    let signal;
    try {
      signal = decodeSignal(data.subarray(1));
    } catch (e) {
      this.emit("warning", `av-signal from ${sender}: ${e.message}`);
      return;
    }
    if (sender === this.self) return;
    this._signal(sender, signal);
  }

  _signal(sender, signal) {
    if (signal.type === "screen") {
      this._screenSignal(sender, signal);
      if (!this.inCall) return;
    }
    if (!this.inCall) {
      // Not in the call: only remember who is (for the UI).
      if (signal.type === "join" || signal.type === "mute") this.members.set(sender, { ...(this.members.get(sender) || {}), inCall: true });
      else if (signal.type === "leave") this.members.delete(sender);
      this.emit("peers", this.members);
      return;
    }
    switch (signal.type) {
      case "join": {
        const fresh = !this.peers.has(sender);
        if (fresh && this.peers.size >= MAX_CALL_PARTICIPANTS - 1) {
          this.emit("warning", `av: call full, participant ${sender} not connected`);
          return;
        }
        this.members.set(sender, { ...(this.members.get(sender) || {}), inCall: true });
        if (!fresh && !signal.reply) {
          // It joined again (a reload, a resume): start over with it.
          this._closePeer(sender);
        }
        // Who offers: the one already in the call, to the newcomer (whose peer connection
        // starts with the offer). Fewer collisions, though perfect negotiation handles them.
        if (!signal.reply) this._peer(sender);
        if (!signal.reply) {
          this._send({ type: "join", reply: true }, sender);
          this._announceTo(sender);
        }
        this.emit("peers", this.members);
        return;
      }
      case "leave":
        this._gone(sender);
        return;
      case "mute":
        this.members.set(sender, { ...(this.members.get(sender) || {}), inCall: true, muted: signal.muted, camera: signal.camera });
        this.emit("peers", this.members);
        return;
      case "screen":
        return;
      default: {
        let peer = this.peers.get(sender);
        if (!peer && signal.type === "offer") {
          if (this.peers.size >= MAX_CALL_PARTICIPANTS - 1) {
            this.emit("warning", `av: call full, offer from participant ${sender} ignored`);
            return;
          }
          peer = this._peer(sender, { answering: true });
        }
        if (!peer) return;
        peer.queue = peer.queue.then(() => this._negotiate(peer, signal)).catch((e) => {
          this.emit("warning", `av: signalling with ${sender} failed (${e?.message || e})`);
        });
      }
    }
  }

  /** Tells a newcomer our mute state and screen share. */
  _announceTo(participant) {
    this._send({ type: "mute", muted: this.muted, camera: this.cameraOn }, participant);
    if (this.screenStream) this._send({ type: "screen", on: true, stream: this.screenStream.id }, participant);
  }

  _screenSignal(sender, signal) {
    if (signal.stop) {
      if (sender === HOST_PARTICIPANT && this.screenStream) {
        this.stopScreen();
        this.emit("screen-stopped", { by: sender });
      }
      return;
    }
    const member = { ...(this.members.get(sender) || {}), screen: signal.on ? signal.stream : null };
    this.members.set(sender, member);
    if (signal.on) this.sharer = sender;
    else if (this.sharer === sender) this.sharer = null;
    this.emit("screen", { participant: signal.on ? sender : null, on: signal.on });
    this.emit("peers", this.members);
  }

  async _negotiate(peer, signal) {
    const { pc } = peer;
    if (peer.closed) return;
    if (signal.type === "offer" || signal.type === "answer") {
      const offerCollision = signal.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
      peer.ignoreOffer = !peer.polite && offerCollision;
      if (peer.ignoreOffer) return;
      await pc.setRemoteDescription({ type: signal.type, sdp: signal.sdp });
      if (peer.tracksPending) {
        peer.tracksPending = false; // into the transceivers the offer made
        this._addLocalTracks(peer);
      }
      if (signal.type === "offer") {
        await pc.setLocalDescription();
        this._send({ type: "answer", sdp: this._sdp(pc.localDescription.sdp) }, peer.participant);
      }
    } else if (signal.type === "candidate") {
      peer.candidates.received += 1;
      try {
        await pc.addIceCandidate(signal.candidate ?? undefined);
      } catch (e) {
        if (!peer.ignoreOffer) throw e;
      }
    }
  }

  /** The peer connection with `participant`; `answering`: made for its first offer (our
   * tracks are added once that offer is set, so this side does not offer too). */
  _peer(participant, { answering = false } = {}) {
    const existing = this.peers.get(participant);
    if (existing) return existing;
    const pc = new this.RTCPeerConnection(this.configuration());
    const peer = {
      participant, pc, polite: isPolite(this.self, participant), makingOffer: false, ignoreOffer: false,
      queue: Promise.resolve(), closed: false, videoSenders: new Set(), remoteStreams: new Map(),
      candidates: { sent: 0, filtered: 0, received: 0 }, // diagnostics
      tracksPending: answering,
    };
    this.peers.set(participant, peer);
    pc.onnegotiationneeded = async () => {
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        if (!peer.closed) this._send({ type: pc.localDescription.type, sdp: this._sdp(pc.localDescription.sdp) }, participant);
      } catch (e) {
        this.emit("warning", `av: offer to ${participant} failed (${e?.message || e})`);
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (peer.closed) return;
      if (candidate && candidate.candidate && this.candidateFilter && !this.candidateFilter(candidate.candidate)) {
        peer.candidates.filtered += 1;
        return;
      }
      peer.candidates.sent += 1;
      this._send({ type: "candidate", candidate: candidate ? candidate.toJSON() : null }, participant);
    };
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === "failed" && !peer.closed) pc.restartIce();
      this.emit("peers", this.members);
    };
    pc.ontrack = ({ track, streams }) => {
      const stream = streams[0] || null;
      if (stream) peer.remoteStreams.set(stream.id, stream);
      this.emit("track", { participant, track, stream });
    };
    if (!answering) this._addLocalTracks(peer);
    return peer;
  }

  _addLocalTracks(peer) {
    const sending = new Set(peer.pc.getSenders().map((s) => s.track));
    for (const [stream, tracks] of [[this.localStream, this.localStream?.getTracks()], [this.screenStream, this.screenStream?.getTracks()]]) {
      for (const track of tracks || []) {
        if (sending.has(track)) continue;
        const sender = peer.pc.addTrack(track, stream);
        if (track.kind === "video" && stream === this.localStream) peer.videoSenders.add(sender);
      }
    }
  }

  /** An SDP without the candidates `candidateFilter` refuses. */
  _sdp(sdp) {
    if (!this.candidateFilter) return sdp;
    return sdp.split("\r\n").filter((line) => !line.startsWith("a=candidate:") || this.candidateFilter(line.slice(2))).join("\r\n");
  }

  _removeSender(peer, track) {
    const sender = peer.pc.getSenders().find((s) => s.track === track);
    if (sender) {
      peer.videoSenders.delete(sender);
      try {
        peer.pc.removeTrack(sender);
      } catch {
        // closed already
      }
    }
  }

  _closePeer(participant) {
    const peer = this.peers.get(participant);
    if (!peer) return;
    peer.closed = true;
    this.peers.delete(participant);
    try {
      peer.pc.close();
    } catch {
      // closed already
    }
    this.emit("peer-closed", { participant });
  }

  _gone(participant) {
    this._closePeer(participant);
    const was = this.members.delete(participant);
    if (this.sharer === participant) {
      this.sharer = null;
      this.emit("screen", { participant: null, on: false });
    }
    if (was) this.emit("peers", this.members);
  }

  _iceServersChanged() {
    this.emit("available", this.available);
    for (const peer of this.peers.values()) {
      try {
        peer.pc.setConfiguration(this.configuration());
      } catch (e) {
        this.emit("warning", `av: new ICE servers not applied (${e?.message || e})`);
      }
    }
  }

  _connectionState(state) {
    if (state !== "resumed" || !this.inCall) return;
    // Back after a cut: tell everyone we are (still) in the call, and restart ICE with
    // each peer, whose path may have changed (renegotiation through the resumed channel).
    this._send({ type: "join", reply: true });
    for (const peer of this.peers.values()) {
      try {
        peer.pc.restartIce();
      } catch (e) {
        this.emit("warning", `av: ICE restart failed (${e?.message || e})`);
      }
    }
  }
}
