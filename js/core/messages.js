// Application layer v1 codec (docs/protocol.md, "Application layer v1: the shared
// workspace"): what travels inside the encrypted payloads. Pure, no I/O; the JavaScript
// twin of ct/collab/messages.py.
//
//   plaintext = kind:u8 | body

export const KIND = Object.freeze({
  SYNC_STEP1: 0x01,
  SYNC_STEP2: 0x02,
  UPDATE: 0x03,
  AWARENESS: 0x04,
  POLICY: 0x05,
  NOTICE: 0x06,
  AV_SIGNAL: 0x08, // js/core/av.js: WebRTC call signalling (docs/av.md)
  CHUNK: 0x7f,
});
export const SYNC_INITIAL = 0x01;

export const CHUNK_THRESHOLD = 512 * 1024; // a message above this goes as chunks of this size
export const CHUNK_HEADER_SIZE = 12; // id:u32 | index:u32 | count:u32
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024; // one whole (joined) message
// A count no sender of 512 KiB parts needs; bounds the bookkeeping of a partial message.
export const MAX_CHUNK_COUNT = 65536;
export const MAX_PATH_BYTES = 1024;
export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
export const DEFAULT_MAX_WORKSPACE_BYTES = 32 * 1024 * 1024;
export const MAX_JSON_BODY_BYTES = 4 * 1024 * 1024; // policy and notice bodies (a policy lists unshared files)

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** A malformed application message (dropped and logged by the receiver, never fatal). */
export class MessageError extends Error {
  constructor(message) {
    super(message);
    this.name = "MessageError";
  }
}

function withKind(kind, body, prefix = null) {
  const extra = prefix === null ? 0 : 1;
  const out = new Uint8Array(1 + extra + body.length);
  out[0] = kind;
  if (extra) out[1] = prefix;
  out.set(body, 1 + extra);
  return out;
}

export function encodeSyncStep1(stateVector, initial) {
  return withKind(KIND.SYNC_STEP1, stateVector, initial ? SYNC_INITIAL : 0);
}
export function encodeSyncStep2(update) {
  return withKind(KIND.SYNC_STEP2, update);
}
export function encodeUpdate(update) {
  return withKind(KIND.UPDATE, update);
}
export function encodeAwareness(update) {
  return withKind(KIND.AWARENESS, update);
}
export function encodePolicy(policy) {
  return withKind(KIND.POLICY, encoder.encode(JSON.stringify(policy)));
}
export function encodeNotice(notice) {
  return withKind(KIND.NOTICE, encoder.encode(JSON.stringify(notice)));
}

function jsonObject(body, what) {
  if (body.length > MAX_JSON_BODY_BYTES) throw new MessageError(`${what} larger than ${MAX_JSON_BODY_BYTES} bytes`);
  let value;
  try {
    value = JSON.parse(strictDecoder.decode(body));
  } catch (e) {
    throw new MessageError(`${what} is not UTF-8 JSON (${e.message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new MessageError(`${what} is not a JSON object`);
  return value;
}

/**
 * Decodes one whole message: {kind, ...}. Unknown kinds decode as {kind, unknown: true}
 * (to be ignored); malformed ones throw MessageError.
 */
export function decodeMessage(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length < 1) throw new MessageError("empty message");
  const kind = bytes[0];
  const body = bytes.subarray(1);
  switch (kind) {
    case KIND.SYNC_STEP1:
      if (body.length < 1) throw new MessageError("sync-step1 without flags");
      return { kind, initial: (body[0] & SYNC_INITIAL) !== 0, stateVector: body.subarray(1) };
    case KIND.SYNC_STEP2:
    case KIND.UPDATE:
      return { kind, update: body };
    case KIND.AWARENESS:
      return { kind, update: body };
    case KIND.POLICY:
      return { kind, policy: parsePolicy(jsonObject(body, "policy")) };
    case KIND.NOTICE:
      return { kind, notice: parseNotice(jsonObject(body, "notice")) };
    case KIND.CHUNK: {
      if (body.length < CHUNK_HEADER_SIZE) throw new MessageError("chunk shorter than its header");
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      return { kind, id: view.getUint32(0), index: view.getUint32(4), count: view.getUint32(8), part: body.subarray(CHUNK_HEADER_SIZE) };
    }
    default:
      return { kind, unknown: true };
  }
}

function wholeNumber(value, fallback) {
  return Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}

/** Policy with defaults for what is missing; fields we do not know are kept. */
export function parsePolicy(raw) {
  const unshared = Array.isArray(raw.unshared)
    ? raw.unshared.filter((u) => u && typeof u.path === "string").map((u) => ({
      path: u.path, size: wholeNumber(u.size, 0), reason: typeof u.reason === "string" ? u.reason : "unknown",
    }))
    : [];
  return {
    ...raw,
    v: 1,
    readOnly: raw.readOnly === true,
    maxFileBytes: wholeNumber(raw.maxFileBytes, DEFAULT_MAX_FILE_BYTES),
    maxWorkspaceBytes: wholeNumber(raw.maxWorkspaceBytes, DEFAULT_MAX_WORKSPACE_BYTES),
    unshared,
  };
}

export function parseNotice(raw) {
  const level = raw.level === "warning" ? "warning" : "info";
  if (typeof raw.code !== "string" || typeof raw.message !== "string") throw new MessageError("notice needs a string code and message");
  const notice = { level, code: raw.code.slice(0, 64), message: raw.message.slice(0, 1000) };
  if (typeof raw.path === "string") notice.path = raw.path.slice(0, MAX_PATH_BYTES);
  return notice;
}

/**
 * A workspace path: relative POSIX, `/` separators, no `.`/`..`/empty segments, no
 * leading `/`, no NUL, at most 1,024 UTF-8 bytes. Returns null when valid, else why not.
 */
export function pathProblem(path) {
  if (typeof path !== "string" || path.length === 0) return "empty path";
  if (encoder.encode(path).length > MAX_PATH_BYTES) return `path longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes("\0")) return "path contains NUL";
  if (path.startsWith("/")) return "path is absolute";
  if (path.includes("\\")) return "path contains a backslash";
  for (const segment of path.split("/")) {
    if (segment === "" || segment === "." || segment === "..") return "path has an empty, '.' or '..' segment";
  }
  return null;
}

/** UTF-8 size of a string (file caps are in UTF-8 bytes). */
export function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Splits a message into chunk messages (or returns [message] when small enough). */
export function chunkMessage(message, id, threshold = CHUNK_THRESHOLD) {
  if (message.length <= threshold) return [message];
  if (message.length > MAX_MESSAGE_BYTES) throw new MessageError(`message of ${message.length} bytes is over ${MAX_MESSAGE_BYTES}`);
  const count = Math.ceil(message.length / threshold);
  const out = [];
  for (let index = 0; index < count; index++) {
    const part = message.subarray(index * threshold, Math.min(message.length, (index + 1) * threshold));
    const chunk = new Uint8Array(1 + CHUNK_HEADER_SIZE + part.length);
    const view = new DataView(chunk.buffer);
    chunk[0] = KIND.CHUNK;
    view.setUint32(1, id >>> 0);
    view.setUint32(5, index);
    view.setUint32(9, count);
    chunk.set(part, 1 + CHUNK_HEADER_SIZE);
    out.push(chunk);
  }
  return out;
}

/**
 * Joins chunked messages: one half-received message per sender (a new id discards the
 * old), parts in order, at most maxBytes in all. add() returns the whole message once its
 * last part arrived, else null; throws MessageError for a chunk it drops.
 */
export class Reassembler {
  constructor(maxBytes = MAX_MESSAGE_BYTES) {
    this.maxBytes = maxBytes;
    this.partial = new Map(); // sender -> {id, count, parts, bytes}
  }

  add(sender, { id, index, count, part }) {
    let entry = this.partial.get(sender);
    if (!entry || entry.id !== id) {
      this.partial.delete(sender);
      if (index !== 0) throw new MessageError(`chunk ${index} of an unknown message ${id}`);
      if (count < 1 || count > MAX_CHUNK_COUNT) throw new MessageError(`chunk count ${count} out of range`);
      entry = { id, count, parts: [], bytes: 0 };
      this.partial.set(sender, entry);
    }
    if (count !== entry.count || index !== entry.parts.length) {
      this.partial.delete(sender);
      throw new MessageError(`chunk ${index}/${count} of message ${id} out of order`);
    }
    entry.bytes += part.length;
    if (entry.bytes > this.maxBytes) {
      this.partial.delete(sender);
      throw new MessageError(`chunked message ${id} passes ${this.maxBytes} bytes`);
    }
    entry.parts.push(part.slice());
    if (entry.parts.length < entry.count) return null;
    this.partial.delete(sender);
    const whole = new Uint8Array(entry.bytes);
    let at = 0;
    for (const p of entry.parts) {
      whole.set(p, at);
      at += p.length;
    }
    return whole;
  }

  forget(sender) {
    this.partial.delete(sender);
  }
}
