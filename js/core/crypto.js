// End-to-end encryption of session payloads (AES-256-GCM through WebCrypto); the twin of
// ct/client/crypto.py. Each payload is nonce(12) | ciphertext+tag, with the session id as
// associated data so a frame cannot be replayed into another session. The key travels
// only in the join link's fragment (#key=<base64url>), which browsers never send.

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
const KEY_BYTES = 32;
const encoder = new TextEncoder();

function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error("WebCrypto is not available (browsers offer it only in a secure context: HTTPS or localhost)");
  return s;
}

/** A payload did not decrypt: wrong key, or altered in transit. */
export class DecryptError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecryptError";
  }
}

export function base64urlEncode(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function base64urlDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error("session key is not base64url");
  const b64 = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  if (b64.length % 4 === 1) throw new Error("session key is not base64url");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export class SessionKey {
  /** Use SessionKey.generate() or SessionKey.fromText(); raw is the 32-byte key. */
  constructor(raw, cryptoKey) {
    if (!(raw instanceof Uint8Array) || raw.length !== KEY_BYTES) throw new Error("a session key is 32 bytes");
    this.raw = raw;
    this._key = cryptoKey;
  }

  static async fromBytes(raw) {
    const bytes = new Uint8Array(raw);
    if (bytes.length !== KEY_BYTES) throw new Error("a session key is 32 bytes");
    const key = await subtle().importKey("raw", bytes, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
    return new SessionKey(bytes, key);
  }

  static async generate() {
    return SessionKey.fromBytes(globalThis.crypto.getRandomValues(new Uint8Array(KEY_BYTES)));
  }

  static async fromText(text) {
    return SessionKey.fromBytes(base64urlDecode(text));
  }

  toText() {
    return base64urlEncode(this.raw);
  }

  /** plaintext (Uint8Array), associated (string: the session id) -> Uint8Array. */
  async encrypt(plaintext, associated) {
    const nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const sealed = await subtle().encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: encoder.encode(associated), tagLength: 128 },
      this._key, plaintext);
    const out = new Uint8Array(NONCE_BYTES + sealed.byteLength);
    out.set(nonce, 0);
    out.set(new Uint8Array(sealed), NONCE_BYTES);
    return out;
  }

  /** Throws DecryptError when the payload is not ours. */
  async decrypt(payload, associated) {
    if (payload.length < NONCE_BYTES + TAG_BYTES) throw new DecryptError("payload too short to be encrypted");
    try {
      const plain = await subtle().decrypt(
        { name: "AES-GCM", iv: payload.subarray(0, NONCE_BYTES), additionalData: encoder.encode(associated), tagLength: 128 },
        this._key, payload.subarray(NONCE_BYTES));
      return new Uint8Array(plain);
    } catch {
      throw new DecryptError("payload does not decrypt with the session key");
    }
  }
}
