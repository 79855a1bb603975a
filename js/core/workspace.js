// Workspace: the shared workspace of application layer v1 on a SessionConnection. A Yjs
// document whose `files` map holds path -> Y.Text; sync (step 1/2), incremental updates,
// awareness (y-protocols), the host's policy, notices and chunking, per docs/protocol.md.
// Works for guests (browser, Node) and hosts (a Node host sharing an in-memory document).

import * as Y from "yjs";
import * as awarenessProtocol from "y-protocols/awareness";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { Emitter } from "./events.js";
import { BROADCAST, HOST_PARTICIPANT } from "./wire.js";
import {
  KIND, MessageError, Reassembler, chunkMessage, decodeMessage, encodeAwareness, encodeNotice,
  encodePolicy, encodeSyncStep1, encodeSyncStep2, encodeUpdate, parsePolicy, pathProblem, utf8Length,
  DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_WORKSPACE_BYTES, CHUNK_THRESHOLD,
} from "./messages.js";

export const SYNC_FALLBACK_MS = 5000;
const MAX_AWARENESS_ENTRIES = 64; // per message; one participant has one or a few

/** Splits an awareness update into [{clientID, clock, json}] (throws on a malformed one). */
export function decodeAwarenessEntries(update) {
  const decoder = decoding.createDecoder(update);
  const count = decoding.readVarUint(decoder);
  if (count > MAX_AWARENESS_ENTRIES) throw new MessageError(`awareness update with ${count} entries`);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const clientID = decoding.readVarUint(decoder);
    const clock = decoding.readVarUint(decoder);
    const json = decoding.readVarString(decoder);
    entries.push({ clientID, clock, json });
  }
  return entries;
}

export function encodeAwarenessEntries(entries) {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, entries.length);
  for (const { clientID, clock, json } of entries) {
    encoding.writeVarUint(encoder, clientID);
    encoding.writeVarUint(encoder, clock);
    encoding.writeVarString(encoder, json);
  }
  return encoding.toUint8Array(encoder);
}

/**
 * Events:
 *   synced     ()                  the first sync-step2 arrived (guests; a host is synced)
 *   policy     (policy)            the host's policy (readOnly, caps, unshared files)
 *   notice     ({from, level, code, message, path?})
 *   awareness  ({added, updated, removed})  remote cursors and names changed
 *   files      ()                  a path was added or removed
 *   warning    (text)              a message dropped (malformed, refused, over a limit)
 */
export class Workspace extends Emitter {
  /**
   * @param {SessionConnection} connection  create the Workspace before host()/join()
   * @param {object} [options]
   * @param {Y.Doc} [options.doc]           the document (a host fills it before sharing)
   * @param {object} [options.user]         {name, color, colorLight} for awareness
   * @param {object} [options.policy]       host: the initial policy
   */
  constructor(connection, { doc = new Y.Doc(), user = null, policy = {}, timers = globalThis, syncFallbackMs = SYNC_FALLBACK_MS, chunkThreshold = CHUNK_THRESHOLD } = {}) {
    super();
    this.connection = connection;
    this.doc = doc;
    this.files = doc.getMap("files");
    this.awareness = new awarenessProtocol.Awareness(doc);
    this.policy = parsePolicy(policy);
    this.synced = false;
    this.timers = timers;
    this.syncFallbackMs = syncFallbackMs;
    this.chunkThreshold = chunkThreshold;
    this._reassembler = new Reassembler();
    this._nextChunkId = (globalThis.crypto.getRandomValues(new Uint32Array(1))[0] & 0x7fffffff) || 1;
    this._clientsOf = new Map(); // participant -> Set of awareness clientIDs it owns
    this._ownerOf = new Map(); // awareness clientID -> participant
    this._fallback = null;
    this._destroyed = false;
    this._user = user;
    this.awareness.setLocalState({ user: null, file: null, cursor: null });
    if (user) this.setUser(user);

    this._bytes = null;
    this._onDocUpdate = (update, origin) => {
      this._bytes = null;
      if (origin === this || this._destroyed) return;
      if (!this.connection.session) return; // before host()/join(): the sync carries it
      this._send(encodeUpdate(update), BROADCAST);
    };
    this._onAwarenessUpdate = ({ added, updated, removed }, origin) => {
      if (origin !== "local" || this._destroyed) return;
      const mine = [...added, ...updated, ...removed].filter((id) => id === this.doc.clientID);
      if (mine.length && this.connection.session && this.connection.isOpen) {
        this._send(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(this.awareness, mine)), BROADCAST);
      }
    };
    this._onFilesChange = (event) => {
      if (this.isHost && event.transaction.origin === this) this._refuseRemotePaths(event);
      this.emit("files");
    };
    this._onAwarenessChange = (change, origin) => {
      if (origin !== "local") this.emit("awareness", change);
    };
    doc.on("update", this._onDocUpdate);
    this.awareness.on("update", this._onAwarenessUpdate);
    this.awareness.on("change", this._onAwarenessChange);
    this.files.observe(this._onFilesChange);

    this._offs = [
      connection.on("frame", (frame) => this._frame(frame)),
      connection.on("state", (state, detail) => this._state(state, detail)),
      connection.on("participant-joined", (m) => this._participantJoined(m)),
      connection.on("participant-left", (m) => this._participantLeft(m.participant)),
    ];
    if (connection.isOpen) this._state("open", null);
  }

  get isHost() {
    return this.connection.participant === HOST_PARTICIPANT;
  }

  /** Whether this participant may edit (the host always; guests unless read-only). */
  get writable() {
    return this.isHost || !this.policy.readOnly;
  }

  // ------------------------------------------------------------------ documents

  /** The Y.Text of a path, or undefined (also for a value that is not a Y.Text). */
  text(path) {
    const value = this.files.get(path);
    return value instanceof Y.Text ? value : undefined;
  }

  /** Paths in the workspace, sorted (invalid paths or values a peer wrote are left out). */
  paths() {
    return [...this.files.keys()].filter((p) => pathProblem(p) === null && this.text(p)).sort();
  }

  /** Text of a path (or undefined). */
  read(path) {
    return this.text(path)?.toString();
  }

  /** UTF-8 bytes of every shared file (counted again only after the document changed). */
  workspaceBytes() {
    if (this._bytes === null) {
      let total = 0;
      for (const t of this.files.values()) if (t instanceof Y.Text) total += utf8Length(t.toString());
      this._bytes = total;
    }
    return this._bytes;
  }

  /**
   * Host: adds (or replaces) a file; returns null when shared, else the `unshared` reason
   * (`too-large`, `workspace-full`) — such files belong in the policy's `unshared` list.
   * Throws for an invalid path.
   */
  addFile(path, content) {
    const problem = pathProblem(path);
    if (problem) throw new Error(`${problem}: ${JSON.stringify(path)}`);
    const size = utf8Length(content);
    if (size > this.policy.maxFileBytes) return "too-large";
    const old = this.text(path);
    const oldSize = old ? utf8Length(old.toString()) : 0;
    if (this.workspaceBytes() - oldSize + size > this.policy.maxWorkspaceBytes) return "workspace-full";
    const total = this.workspaceBytes() - oldSize + size;
    this.doc.transact(() => {
      const text = new Y.Text();
      text.insert(0, content);
      this.files.set(path, text);
    });
    this._bytes = total; // a host adding many files counts each once
    return null;
  }

  removeFile(path) {
    this.files.delete(path);
  }

  /**
   * Whether an edit that makes `path` `newBytes` UTF-8 bytes long stays within the cap;
   * an editor refuses the edit when not, and tells with notice() (`file-too-large`).
   */
  editFits(path, newBytes) {
    return newBytes <= this.policy.maxFileBytes;
  }

  // The host adds and removes paths; a path a guest added (or an invalid one) is removed
  // again by the host (docs/protocol.md), after the remote transaction is over.
  _refuseRemotePaths(event) {
    const added = [...event.changes.keys].filter(([, change]) => change.action === "add").map(([key]) => key);
    if (!added.length) return;
    queueMicrotask(() => {
      if (this._destroyed) return;
      this.doc.transact(() => {
        for (const path of added) this.files.delete(path);
      });
      this.emit("warning", `removed paths a guest added: ${added.slice(0, 5).join(", ")}${added.length > 5 ? ", ..." : ""}`);
    });
  }

  // ------------------------------------------------------------------ awareness

  /** Sets this participant's name and colours (awareness `user`). */
  setUser({ name, color = "#30bced", colorLight = null }) {
    this._user = { name, color, colorLight: colorLight ?? `${color}33` };
    this._publishLocal();
  }

  /** The file this participant has open (or null) and its cursor (Y.RelativePosition JSON). */
  setCursor(file, cursor = null) {
    const state = this.awareness.getLocalState() || {};
    this.awareness.setLocalState({ ...state, file, cursor: file ? cursor : null });
  }

  _publishLocal() {
    const state = this.awareness.getLocalState() || {};
    const user = this._user ? { ...this._user, participant: this.connection.participant ?? null } : null;
    this.awareness.setLocalState({ ...state, user });
  }

  /** Remote participants' awareness states: [{clientID, participant, state}]. */
  peers() {
    const out = [];
    for (const [clientID, state] of this.awareness.getStates()) {
      if (clientID === this.doc.clientID) continue;
      out.push({ clientID, participant: this._ownerOf.get(clientID) ?? null, state });
    }
    return out;
  }

  // ------------------------------------------------------------------ policy and notices

  /** Host: sets the policy and sends it to everyone. */
  setPolicy(policy) {
    if (!this.isHost) throw new Error("only the host sets the policy");
    this.policy = parsePolicy({ ...this.policy, ...policy });
    this._send(encodePolicy(this.policy), BROADCAST);
    this.emit("policy", this.policy);
  }

  /** Sends a notice (shown to people) to everyone or one participant. */
  notice({ level = "info", code, message, path }, to = BROADCAST) {
    const notice = { level, code, message };
    if (path !== undefined) notice.path = path;
    this._send(encodeNotice(notice), to);
  }

  // ------------------------------------------------------------------ sync

  /**
   * Asks for the state (as after `joined`): to the host when it is connected, else to
   * everyone; with no answer within syncFallbackMs, to everyone.
   */
  requestSync({ preferHost = true } = {}) {
    this.synced = this.isHost && !preferHost ? this.synced : false;
    const host = this.connection.participants.get(HOST_PARTICIPANT);
    const to = preferHost && !this.isHost && host && host.connected !== false ? HOST_PARTICIPANT : BROADCAST;
    this._sendStep1(true, to);
    this._clearFallback();
    if (to !== BROADCAST) {
      this._fallback = this.timers.setTimeout(() => {
        this._fallback = null;
        if (!this.synced && !this._destroyed && this.connection.isOpen) {
          this.emit("warning", "no sync answer from the host: asking everyone");
          this._sendStep1(true, BROADCAST);
        }
      }, this.syncFallbackMs);
    }
  }

  _sendStep1(initial, to) {
    this._send(encodeSyncStep1(Y.encodeStateVector(this.doc), initial), to);
  }

  _clearFallback() {
    if (this._fallback !== null) this.timers.clearTimeout(this._fallback);
    this._fallback = null;
  }

  _state(state, detail) {
    if (this._destroyed) return;
    if (state === "open") {
      this._publishLocal(); // now with our participant id; broadcasts our awareness
      if (this.isHost) {
        this.synced = true;
        this.emit("synced");
      } else {
        this.requestSync();
      }
    } else if (state === "resumed") {
      if (detail && detail.recovered === false) {
        // The replay lost something addressed to us: sync again from any peer.
        this.emit("warning", "resumed without full replay: resynchronising");
        this.requestSync({ preferHost: !this.isHost });
      }
    } else if (state === "ended") {
      this.destroy();
    }
  }

  _participantJoined(message) {
    const id = message.participant?.id;
    if (typeof id !== "number") return;
    if (this.isHost) this._send(encodePolicy(this.policy), id);
    if (this.awareness.getLocalState()) {
      this._send(encodeAwareness(awarenessProtocol.encodeAwarenessUpdate(this.awareness, [this.doc.clientID])), id);
    }
  }

  _participantLeft(participant) {
    this._reassembler.forget(participant);
    const clients = this._clientsOf.get(participant);
    this._clientsOf.delete(participant);
    if (!clients) return;
    for (const c of clients) this._ownerOf.delete(c);
    awarenessProtocol.removeAwarenessStates(this.awareness, [...clients], this);
  }

  // ------------------------------------------------------------------ receiving

  _frame({ sender, data }) {
    if (this._destroyed) return;
    if (typeof data === "string") return; // application messages are binary
    try {
      let message = decodeMessage(data);
      if (message.kind === KIND.CHUNK) {
        const whole = this._reassembler.add(sender, message);
        if (whole === null) return;
        message = decodeMessage(whole);
        if (message.kind === KIND.CHUNK) throw new MessageError("a chunk inside a chunked message");
      }
      this._handle(sender, message);
    } catch (e) {
      this.emit("warning", `dropped a message from participant ${sender}: ${e.message}`);
    }
  }

  _fromAuthority(sender) {
    return !this.policy.readOnly || sender === HOST_PARTICIPANT;
  }

  _handle(sender, message) {
    switch (message.kind) {
      case KIND.SYNC_STEP1: {
        let update;
        try {
          update = Y.encodeStateAsUpdate(this.doc, message.stateVector);
        } catch (e) {
          throw new MessageError(`bad state vector (${e.message})`);
        }
        this._send(encodeSyncStep2(update), sender);
        if (message.initial) this._sendStep1(false, sender);
        return;
      }
      case KIND.SYNC_STEP2:
      case KIND.UPDATE: {
        if (!this._fromAuthority(sender)) {
          this.emit("warning", `ignored an edit from participant ${sender}: the workspace is read-only`);
          return;
        }
        try {
          Y.applyUpdate(this.doc, message.update, this);
        } catch (e) {
          throw new MessageError(`bad Yjs update (${e.message})`);
        }
        if (message.kind === KIND.SYNC_STEP2 && !this.synced) {
          this.synced = true;
          this._clearFallback();
          this.emit("synced");
        }
        return;
      }
      case KIND.AWARENESS:
        this._awareness(sender, message.update);
        return;
      case KIND.POLICY:
        if (sender !== HOST_PARTICIPANT) {
          this.emit("warning", `ignored a policy from participant ${sender}`);
          return;
        }
        this.policy = message.policy;
        this.emit("policy", this.policy);
        return;
      case KIND.NOTICE:
        this.emit("notice", { from: sender, ...message.notice });
        return;
      default:
        return; // a kind of a later version: ignored
    }
  }

  _awareness(sender, update) {
    let entries;
    try {
      entries = decodeAwarenessEntries(update);
    } catch (e) {
      throw new MessageError(`bad awareness update (${e.message})`);
    }
    const accepted = [];
    for (const entry of entries) {
      if (entry.clientID === this.doc.clientID) continue;
      const owner = this._ownerOf.get(entry.clientID);
      if (owner !== undefined && owner !== sender) continue; // another participant's entry
      let state;
      try {
        state = JSON.parse(entry.json);
      } catch {
        continue;
      }
      if (state !== null) {
        // The edge vouches for the sender, not for what the payload claims.
        if (typeof state !== "object" || !state.user || state.user.participant !== sender) continue;
      } else if (owner === undefined) {
        continue;
      }
      if (owner === undefined) {
        this._ownerOf.set(entry.clientID, sender);
        if (!this._clientsOf.has(sender)) this._clientsOf.set(sender, new Set());
        this._clientsOf.get(sender).add(entry.clientID);
      }
      accepted.push(entry);
    }
    if (accepted.length) awarenessProtocol.applyAwarenessUpdate(this.awareness, encodeAwarenessEntries(accepted), this);
  }

  // ------------------------------------------------------------------ sending

  _send(message, to) {
    let parts;
    try {
      parts = chunkMessage(message, this._nextChunkId, this.chunkThreshold);
    } catch (e) {
      this.emit("warning", `not sent: ${e.message}`);
      return;
    }
    if (parts.length > 1) this._nextChunkId = (this._nextChunkId + 1) >>> 0 || 1;
    for (const part of parts) {
      this.connection.send(part, to).catch((e) => this.emit("warning", `not sent: ${e.message}`));
    }
  }

  /** Detaches from the connection and stops the awareness timer (called on `ended`). */
  destroy() {
    if (this._destroyed) return;
    this._destroyed = true;
    this._clearFallback();
    for (const off of this._offs) off();
    this.doc.off("update", this._onDocUpdate);
    this.files.unobserve(this._onFilesChange);
    this.awareness.off("update", this._onAwarenessUpdate);
    this.awareness.off("change", this._onAwarenessChange);
    this.awareness.destroy();
  }
}
