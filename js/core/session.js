// SessionConnection: one participant of one session over protocol v1 (docs/protocol.md).
// The JavaScript twin of ct/client/session.py: it encrypts what it sends, keeps what the
// edge has not acknowledged, tracks the last sequence number it received, acknowledges
// every `ackEvery` frames, and after an unexpected drop reconnects and resumes (the edge
// replays what it missed, the client resends what the edge did not get). No DOM: give it
// the browser's WebSocket or Node's `ws`.

import { Emitter } from "./events.js";
import { SessionKey, DecryptError } from "./crypto.js";
import { parseJoinLink, formatJoinLink, websocketUrl } from "./links.js";
import {
  PROTOCOL_VERSION, FLAG_TEXT, BROADCAST, ERROR_CODES, RESUME_RETRY,
  closeIsFinal, closeCodeName, encodeUpstream, decodeDownstream, encodeControl, decodeControl, toBytes,
} from "./wire.js";

export const CLIENT_NAME = "ct-js-core/1.0";

/** The session is over for this participant, or a host/join/resume was refused. */
export class SessionEnded extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "SessionEnded";
    this.code = code;
    this.reason = message;
  }
}

const NUMBERED = new Set(["participant-joined", "participant-left", "participant-away", "participant-back", "session-ended"]);
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function randomToken(bytes = 12) {
  const raw = globalThis.crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const b of raw) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Events (subscribe with `on(type, fn)`):
 *   state        (state, detail)  connecting | open | reconnecting | resumed | ended
 *   frame        ({sender, seq, data})   data: Uint8Array, or string for text frames
 *   participants (Map id -> {id, name, role, client, connected})  after any change
 *   participant-joined / -left / -away / -back, session-ended, ice-servers  (the edge's message)
 *   error        (the edge's `error` message: {code, message})
 *   resumed      (the `resumed` reply: {recovered, missed, received, ...})
 *   ended        ({code, message})  final: code is the close code name (removed,
 *                session-ended, resume-expired, ...), "left", "resume-failed" or "closed"
 *   warning      (text)  a frame that did not decrypt, a malformed message (dropped)
 */
export class SessionConnection extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.server    http(s)://host[:port] of the edge (or ws(s)://)
   * @param {string} options.name      this participant's display name (1-64)
   * @param {Function} options.WebSocket  a WebSocket constructor (the browser's, or `ws`)
   * @param {SessionKey} [options.key]  the session key (a host makes one when absent)
   * @param {object} [options.timers]   {setTimeout, clearTimeout} (tests)
   * @param {Function} [options.now]     milliseconds clock (tests)
   */
  constructor({
    server, name, WebSocket, key = null, client = CLIENT_NAME, autoResume = true,
    resumeDelays = [100, 250, 500, 1000, 2000], resumeAttempts = 60, ackEvery = 128,
    pingIntervalMs = 20000, handshakeTimeoutMs = 15000, stickiness = null, timers = globalThis,
    now = () => Date.now(),
  }) {
    super();
    if (typeof WebSocket !== "function") throw new TypeError("SessionConnection needs a WebSocket constructor");
    this.server = server;
    this.name = name;
    this.WebSocket = WebSocket;
    this.key = key;
    this.client = client;
    this.autoResume = autoResume;
    this.resumeDelays = resumeDelays;
    this.resumeAttempts = resumeAttempts;
    this.ackEvery = ackEvery;
    this.pingIntervalMs = pingIntervalMs;
    this.handshakeTimeoutMs = handshakeTimeoutMs;
    this.timers = timers;
    this.now = now;
    // ctstickiness: the same value on every request of this session keeps a load balancer
    // (without a locator) sending them all to one edge. Node sends it as a header; a
    // browser app sets it as a cookie (document.cookie) before connecting.
    this.stickiness = stickiness;
    this.state = "idle";
    this.session = null;
    this.participant = null;
    this.role = null;
    this.joinToken = null;
    this.resumeToken = null;
    this.title = null;
    this.limits = null;
    this.participants = new Map();
    this.lastSeq = 0;
    this.ackedSeq = 0;
    this.sent = 0;
    this.unacked = []; // [index, frame] not yet acknowledged by the edge, in order
    this.resumes = 0;
    this.iceServers = null;
    this.endedWith = null; // {code, message} once over
    this._socket = null;
    this._handshake = null; // {resolve, reject} while host/join/resume awaits its reply
    this._lastError = null;
    this._leaving = false;
    this._over = false;
    this._onClose = null;
    this._linkToken = null;
    this._receiving = Promise.resolve();
    this._sending = Promise.resolve();
    this._resumeTimer = null;
    this._pingTimer = null;
    this._lastHeard = 0;
  }

  /** A guest's connection from a join link (the key comes from its fragment). */
  static async fromLink(link, options) {
    const parsed = parseJoinLink(link);
    const key = parsed.key ? await SessionKey.fromText(parsed.key) : null;
    const conn = new SessionConnection({ ...options, server: parsed.server, key, stickiness: parsed.stickiness });
    conn._linkToken = { session: parsed.session, token: parsed.token };
    return conn;
  }

  /** The join link guests use (host side, after host()). */
  get link() {
    return formatJoinLink({
      server: this.server, session: this.session, token: this.joinToken,
      key: this.key ? this.key.toText() : null, stickiness: this.stickiness,
    });
  }

  get isOpen() {
    return this.state === "open" || this.state === "resumed";
  }

  // ------------------------------------------------------------------ public API

  /** Creates a session; resolves with the `hosted` reply. */
  async host({ title = null, team = null, teamToken = null, clientVersion = null } = {}) {
    if (!this.key) this.key = await SessionKey.generate();
    if (!this.stickiness) this.stickiness = randomToken();
    const message = { type: "host", v: PROTOCOL_VERSION, name: this.name, client: this.client };
    if (title) message.title = title;
    if (team) Object.assign(message, { team, teamToken });
    if (clientVersion) message.clientVersion = clientVersion;
    this.role = "host";
    return this._start(message);
  }

  /** Joins with a join token (or, without arguments, the one from fromLink()). */
  async join(session = this._linkToken?.session, token = this._linkToken?.token) {
    if (!session || !token) throw new Error("join needs a session and a join token");
    this.role = "guest";
    return this._start({ type: "join", v: PROTOCOL_VERSION, session, token, name: this.name, client: this.client });
  }

  /**
   * Sends a payload to everyone (to = 0) or one participant. Encrypted with the session
   * key; kept until the edge acknowledges it, so it survives a drop. Resolves once handed
   * to the socket or queued for resending.
   */
  send(data, to = BROADCAST) {
    if (this._over) return Promise.reject(new SessionEnded(this.endedWith?.code ?? "closed", "the session is over"));
    if (!this.session) return Promise.reject(new Error("send before the session is established"));
    const text = typeof data === "string";
    const raw = text ? encoder.encode(data) : toBytes(data);
    const task = async () => {
      const payload = this.key ? await this.key.encrypt(raw, this.session) : raw;
      const frame = encodeUpstream(payload, to, text);
      this.sent += 1;
      this.unacked.push([this.sent, frame]);
      if (this._socket && !this._handshake && this.isOpen) this._socket.send(frame);
    };
    const done = this._sending.then(task);
    this._sending = done.catch(() => {});
    return done;
  }

  /** Sends a control message now (dropped when not connected). */
  control(message) {
    if (this._socket && this._socket.readyState === 1) this._socket.send(encodeControl(message));
  }

  /** Host only: remove a guest. */
  kick(participant) {
    this.control({ type: "kick", participant });
  }

  /** Host only: end the session for everyone. */
  end() {
    this.control({ type: "end" });
  }

  /** Leaves on purpose (a host leaving ends the session); resolves when closed. */
  leave() {
    this._leaving = true;
    this._over = true;
    this._cancelTimers();
    const socket = this._socket;
    if (!socket || socket.readyState !== 1 || this._handshake) {
      // Not connected (or reconnecting): nobody to tell; the edge drops the seat in time.
      this.close("left", "left the session");
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // The edge closes with 1000 at once; if it does not, the connection is closed here.
      const timer = this.timers.setTimeout(() => {
        if (this._socket === socket) this.close("left", "left the session");
        resolve();
      }, this.handshakeTimeoutMs);
      this._onClose = () => {
        this.timers.clearTimeout(timer);
        resolve();
      };
      this.control({ type: "leave" });
    });
  }

  /** Cuts the connection without a goodbye (tests: a network drop; Node's `ws` only). */
  drop() {
    const socket = this._socket;
    if (!socket) return;
    if (typeof socket.terminate === "function") socket.terminate();
    else socket.close(3000, "dropped"); // browsers cannot abort: a close code the client resumes after
  }

  /** Stops everything without telling the edge (the seat stays away until its window passes). */
  close(code = "closed", message = "closed by the client") {
    this._over = true;
    this._cancelTimers();
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close();
    const handshake = this._handshake;
    this._handshake = null;
    handshake?.reject(new SessionEnded(code, message));
    this._finish(code, message);
  }

  // ------------------------------------------------------------------ connection

  async _start(first) {
    this._setState("connecting");
    try {
      return await this._open(first);
    } catch (e) {
      this._over = true;
      const err = e instanceof SessionEnded ? e : new SessionEnded("closed", String(e?.message ?? e));
      this._finish(err.code, err.reason);
      throw err;
    }
  }

  _open(first) {
    return new Promise((resolve, reject) => {
      const handshake = { resolve, reject };
      this._handshake = handshake;
      const url = websocketUrl(this.server, "session");
      const headers = this.stickiness ? { ctstickiness: this.stickiness } : {};
      let socket;
      try {
        // Browsers take (url, protocols) and ignore the options; Node's `ws` takes headers there.
        socket = new this.WebSocket(url, [], { headers });
      } catch (e) {
        this._handshake = null;
        reject(new SessionEnded("closed", `cannot open ${url}: ${e.message}`));
        return;
      }
      socket.binaryType = "arraybuffer";
      this._socket = socket;
      this._lastError = null;
      // A connection that neither opens nor answers (a dead network) is given up in time;
      // its close rejects the handshake, and a resume tries again.
      const timer = this.timers.setTimeout(() => {
        if (this._handshake === handshake && this._socket === socket) {
          this.emit("warning", `no answer from ${url} within ${this.handshakeTimeoutMs} ms`);
          this.drop();
        }
      }, this.handshakeTimeoutMs);
      handshake.resolve = (value) => { this.timers.clearTimeout(timer); resolve(value); };
      handshake.reject = (error) => { this.timers.clearTimeout(timer); reject(error); };
      socket.onopen = () => {
        if (socket !== this._socket) return;
        socket.send(encodeControl(first));
      };
      socket.onmessage = (event) => {
        if (socket !== this._socket) return;
        this._lastHeard = this.now();
        this._received(event.data);
      };
      socket.onerror = () => {}; // a close follows
      socket.onclose = (event) => {
        if (socket !== this._socket) return;
        // Let the messages already received be handled first (errors name the close).
        this._receiving = this._receiving.then(() => this._closed(event.code, event.reason || ""));
      };
    });
  }

  _received(data) {
    if (typeof data === "string") {
      let message;
      try {
        message = decodeControl(data);
      } catch (e) {
        this.emit("warning", `dropped a control message: ${e.message}`);
        return;
      }
      // Sequence tracking happens on arrival, handling in order after pending decryptions.
      if (!this._numberedIsNew(message)) return;
      this._receiving = this._receiving.then(() => this._control(message)).catch((e) => this.emit("warning", `control handling failed: ${e.message}`));
      return;
    }
    let frame;
    try {
      frame = decodeDownstream(data);
    } catch (e) {
      this.emit("warning", `dropped a data frame: ${e.message}`);
      return;
    }
    if (frame.seq <= this.lastSeq) return; // already had it (cannot happen with a correct edge)
    this.lastSeq = frame.seq;
    this._receiving = this._receiving.then(async () => {
      let body = frame.payload;
      // this.session is read in turn: a `joined` just ahead of this frame has set it by now.
      if (this.key) body = await this.key.decrypt(body, this.session);
      let payload = body;
      if (frame.flags & FLAG_TEXT) payload = decoder.decode(body);
      this.emit("frame", { sender: frame.sender, seq: frame.seq, data: payload });
    }).catch((e) => {
      const why = e instanceof DecryptError ? e.message : `bad frame (${e.message})`;
      this.emit("warning", `dropped frame ${frame.seq} from participant ${frame.sender}: ${why}`);
    }).then(() => this._maybeAck());
  }

  _numberedIsNew(message) {
    const seq = message.seq;
    if (message.type === "hosted" || message.type === "joined") {
      // The session's sequence starts here for us; frames right behind it are numbered after.
      if (typeof seq === "number") this.lastSeq = this.ackedSeq = seq;
      return true;
    }
    if (message.type === "resumed") return true;
    if (typeof seq !== "number") return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    return true;
  }

  _control(message) {
    const kind = message.type;
    if (kind === "hosted" || kind === "joined" || kind === "resumed") {
      this._handshakeReply(message);
      return;
    }
    if (kind === "ack") {
      this._trim(message.received);
      return;
    }
    if (kind === "pong") return;
    if (kind === "error") {
      if (typeof message.received === "number") this._trim(message.received);
      const closeCode = ERROR_CODES[message.code];
      if (closeCode === undefined || closeCode !== null) this._lastError = message; // a close follows
      this.emit("error", message);
      return;
    }
    if (kind === "ice-servers") this.iceServers = message.iceServers ?? null;
    if (typeof message.seq === "number") this._maybeAck();
    let changed = false;
    if (kind === "participant-joined" && message.participant && typeof message.participant.id === "number") {
      this.participants.set(message.participant.id, message.participant);
      changed = true;
    } else if (kind === "participant-left") {
      changed = this.participants.delete(message.participant);
    } else if (kind === "participant-away" || kind === "participant-back") {
      const p = this.participants.get(message.participant);
      if (p) {
        this.participants.set(p.id, { ...p, connected: kind === "participant-back" });
        changed = true;
      }
    }
    if (NUMBERED.has(kind) || kind === "ice-servers") this.emit(kind, message);
    else this.emit("message", message); // a message of a later protocol revision
    if (changed) this.emit("participants", this.participants);
  }

  _handshakeReply(message) {
    const kind = message.type;
    this.session = message.session;
    this.participant = message.participant;
    if (kind === "hosted") {
      this.joinToken = message.joinToken;
      this.resumeToken = message.hostSecret;
      this.stickiness = message.stickiness || this.stickiness;
      this.limits = message.limits ?? null;
      this.participants = new Map([[message.participant, {
        id: message.participant, name: this.name, role: "host", client: this.client, connected: true,
      }]]);
    } else if (kind === "joined") {
      this.resumeToken = message.resumeToken;
      this.title = message.title ?? null;
      this.limits = message.limits ?? null;
    }
    if (kind === "joined" || kind === "resumed") {
      this.participants = new Map((message.participants || []).map((p) => [p.id, p]));
    }
    const handshake = this._handshake;
    this._handshake = null;
    this._startPing();
    if (kind === "resumed") {
      this.resumes += 1;
      this._trim(message.received);
      for (const [, frame] of this.unacked) this._socket.send(frame); // what the edge did not get, in order
      this._setState("resumed", message);
      this.emit("resumed", message);
    } else {
      this._setState("open", message);
    }
    this.emit("participants", this.participants);
    handshake?.resolve(message);
  }

  _maybeAck() {
    if (this.lastSeq - this.ackedSeq >= this.ackEvery) {
      this.ackedSeq = this.lastSeq;
      this.control({ type: "ack", seq: this.lastSeq });
    }
  }

  _trim(received) {
    if (typeof received !== "number") return;
    let n = 0;
    while (n < this.unacked.length && this.unacked[n][0] <= received) n++;
    if (n) this.unacked.splice(0, n);
  }

  _closed(code, reason) {
    this._socket = null;
    this._stopPing();
    const error = this._lastError;
    this._lastError = null;
    const onClose = this._onClose;
    this._onClose = null;
    onClose?.(code);
    if (this._handshake) {
      // host/join/resume refused or cut: whoever waits on the handshake decides.
      const handshake = this._handshake;
      this._handshake = null;
      const code2 = error?.code ?? (reason && ERROR_CODES[reason] !== undefined ? reason : "closed");
      handshake.reject(new SessionEnded(code2, error?.message ?? `closed with ${code} ${reason}`.trim()));
      return;
    }
    if (this._leaving || this._over) {
      this._finish("left", "left the session");
    } else if (closeIsFinal(error?.code ?? null, code)) {
      const name = error?.code ?? closeCodeName(code) ?? "closed";
      this._finish(name, error?.message ?? `connection closed (${code} ${reason})`.trim());
    } else if (this.autoResume && this.session) {
      this._setState("reconnecting", { code, reason });
      this._resume(0);
    } else {
      this._finish("closed", `connection closed (${code})`);
    }
  }

  _resume(attempt) {
    if (this._over) return;
    if (attempt >= this.resumeAttempts) {
      this._finish("resume-failed", "could not reach the edge to resume");
      return;
    }
    const delay = this.resumeDelays[Math.min(attempt, this.resumeDelays.length - 1)];
    this._resumeTimer = this.timers.setTimeout(() => {
      this._resumeTimer = null;
      if (this._over) return;
      this._open({
        type: "resume", v: PROTOCOL_VERSION, session: this.session, participant: this.participant,
        token: this.resumeToken, lastSeq: this.lastSeq,
      }).catch((e) => {
        if (e instanceof SessionEnded && !RESUME_RETRY.has(e.code)) this._finish(e.code, e.reason);
        else this._resume(attempt + 1);
      });
    }, delay);
  }

  // A silent connection (a browser does not notice a dead network for minutes): ping every
  // pingIntervalMs; when nothing at all arrived for two intervals, drop it and resume.
  _startPing() {
    this._stopPing();
    if (!this.pingIntervalMs) return;
    this._lastHeard = this.now();
    const tick = () => {
      this._pingTimer = this.timers.setTimeout(tick, this.pingIntervalMs);
      if (!this._socket || this._handshake) return;
      if (this.now() - this._lastHeard > 2 * this.pingIntervalMs) {
        this.emit("warning", "nothing heard from the edge: reconnecting");
        this.drop();
        return;
      }
      this.control({ type: "ping" });
    };
    this._pingTimer = this.timers.setTimeout(tick, this.pingIntervalMs);
  }

  _stopPing() {
    if (this._pingTimer !== null) this.timers.clearTimeout(this._pingTimer);
    this._pingTimer = null;
  }

  _cancelTimers() {
    this._stopPing();
    if (this._resumeTimer !== null) this.timers.clearTimeout(this._resumeTimer);
    this._resumeTimer = null;
  }

  _setState(state, detail = null) {
    this.state = state;
    this.emit("state", state, detail);
  }

  _finish(code, message) {
    this._over = true;
    this._cancelTimers();
    if (this.endedWith) return;
    this.endedWith = { code, message };
    this._setState("ended", this.endedWith);
    this.emit("ended", this.endedWith);
  }
}
