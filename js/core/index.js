// @ct-server/client-core: protocol v1 client of ct-server (see README.md).
export { parseJoinLink, formatJoinLink, websocketUrl } from "./links.js";
export { SessionKey, DecryptError, base64urlEncode, base64urlDecode } from "./crypto.js";
export { SessionConnection, SessionEnded, CLIENT_NAME } from "./session.js";
export { Workspace, SYNC_FALLBACK_MS } from "./workspace.js";
export { AvCall } from "./av.js";
export * as av from "./av.js";
export * as wire from "./wire.js";
export * as messages from "./messages.js";
export { Emitter } from "./events.js";
export * as Y from "yjs";
