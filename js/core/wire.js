// Client protocol v1 codec (docs/protocol.md): JSON control messages and binary data
// frames. Pure, no I/O; the JavaScript twin of ct/protocol/wire.py and errors.py.
//
//   client -> edge:  flags:u8 | to:u32 | payload
//   edge -> client:  flags:u8 | seq:u64 | from:u32 | payload      (big-endian)

export const PROTOCOL_VERSION = 1;
export const FLAG_TEXT = 0x01;
export const BROADCAST = 0;
export const HOST_PARTICIPANT = 1;
export const UPSTREAM_HEADER_SIZE = 5;
export const DOWNSTREAM_HEADER_SIZE = 13;
// What the client accepts in one control message from the edge (a `joined` lists up to
// CT_MAX_PARTICIPANTS people, so it may pass the 8 KiB the edge accepts from clients).
export const MAX_DOWNSTREAM_CONTROL_BYTES = 1 << 20;

/** Error codes and their close codes (ct/protocol/errors.py); null: the connection stays open. */
export const ERROR_CODES = Object.freeze({
  "bad-message": 4000,
  "unsupported-version": 4001,
  "handshake-timeout": 4002,
  forbidden: 4003,
  "not-found": 4004,
  "client-too-old": 4005,
  superseded: 4009,
  "session-ended": 4010,
  removed: 4011,
  "resume-expired": 4012,
  "session-full": 4013,
  "edge-full": 4014,
  "too-many-sessions": 4015,
  "presence-disabled": 4016,
  "shutting-down": 4017,
  "rate-limited": 4029,
  "not-allowed": null,
  "unknown-target": null,
});

const CLOSE_NAMES = new Map(Object.entries(ERROR_CODES).filter(([, c]) => c !== null).map(([n, c]) => [c, n]));

/** The error code name a close code stands for, or null (1006 and other transport codes). */
export function closeCodeName(code) {
  return CLOSE_NAMES.get(code) ?? null;
}

// Closes that end the session for the client (docs/protocol.md, "Which closes end the
// session for a client"): the seat or the session is gone, the credentials are refused,
// another connection took over, or this client broke the protocol.
export const FINAL_ERRORS = new Set([
  "session-ended", "removed", "resume-expired", "forbidden", "superseded",
  "unsupported-version", "client-too-old", "bad-message",
]);
export const FINAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010]);
// Answers to a `resume` after which the client tries again (a bounded number of times).
export const RESUME_RETRY = new Set(["closed", "rate-limited", "handshake-timeout", "shutting-down"]);

/**
 * Whether a close of an established session connection ends the session for the client.
 * errorCode: the code of the `error` message the edge sent before closing (or null).
 */
export function closeIsFinal(errorCode, closeCode) {
  if (errorCode) return FINAL_ERRORS.has(errorCode);
  const named = closeCodeName(closeCode);
  if (named) return FINAL_ERRORS.has(named);
  return FINAL_CLOSE_CODES.has(closeCode);
}

/** A client's data frame: header + payload (Uint8Array). */
export function encodeUpstream(payload, to = BROADCAST, text = false) {
  if (!Number.isInteger(to) || to < 0 || to > 0xffffffff) throw new RangeError(`bad target participant ${to}`);
  const frame = new Uint8Array(UPSTREAM_HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, text ? FLAG_TEXT : 0);
  view.setUint32(1, to);
  frame.set(payload, UPSTREAM_HEADER_SIZE);
  return frame;
}

/** Splits an edge data frame into {flags, seq, sender, payload}; throws on a short frame. */
export function decodeDownstream(frame) {
  const bytes = toBytes(frame);
  if (bytes.length < DOWNSTREAM_HEADER_SIZE) throw new Error("downstream data frame shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const seq = Number(view.getBigUint64(1));
  return {
    flags: view.getUint8(0),
    seq,
    sender: view.getUint32(9),
    payload: bytes.subarray(DOWNSTREAM_HEADER_SIZE),
  };
}

/** The edge's framing, for tests: header + payload. */
export function encodeDownstream(payload, seq, sender, text = false) {
  const frame = new Uint8Array(DOWNSTREAM_HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, text ? FLAG_TEXT : 0);
  view.setBigUint64(1, BigInt(seq));
  view.setUint32(9, sender);
  frame.set(payload, DOWNSTREAM_HEADER_SIZE);
  return frame;
}

export function encodeControl(message) {
  return JSON.stringify(message);
}

/** Parses a control message from the edge: a JSON object with a string `type`. */
export function decodeControl(text) {
  if (typeof text !== "string") text = new TextDecoder().decode(toBytes(text));
  if (text.length > MAX_DOWNSTREAM_CONTROL_BYTES) throw new Error("control message too large");
  let message;
  try {
    message = JSON.parse(text);
  } catch (e) {
    throw new Error(`control message is not JSON (${e.message})`);
  }
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    throw new Error("a control message must be a JSON object");
  }
  if (typeof message.type !== "string") throw new Error("control message without a string 'type'");
  return message;
}

/** ArrayBuffer, typed array or Node Buffer -> Uint8Array (no copy). */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("expected binary data");
}
