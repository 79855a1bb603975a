// Join links: https://server/join/<session>?token=<join token>#key=<session key>
// Same rules as ct/client/links.py.

/** Parses a join link; throws Error with a clear message when it is not one. */
export function parseJoinLink(link) {
  let url;
  try {
    url = new URL(String(link));
  } catch {
    throw new Error(`not a join link (https://server/join/<session>?token=...): ${JSON.stringify(String(link))}`);
  }
  const segments = url.pathname.split("/").filter((s) => s);
  const scheme = url.protocol.replace(/:$/, "");
  if ((scheme !== "http" && scheme !== "https") || segments.length < 2 || segments[segments.length - 2] !== "join") {
    throw new Error(`not a join link (https://server/join/<session>?token=...): ${JSON.stringify(String(link))}`);
  }
  const token = url.searchParams.get("token");
  if (!token) throw new Error("join link has no token");
  const stickiness = url.searchParams.get("ctstickiness") || null;
  let key = null;
  if (url.hash.length > 1) {
    key = new URLSearchParams(url.hash.slice(1)).get("key") || null;
  }
  const prefix = segments.slice(0, -2).join("/");
  const server = `${scheme}://${url.host}` + (prefix ? `/${prefix}` : "");
  return { server, session: segments[segments.length - 1], token, key, stickiness };
}

/** Formats a join link (the inverse of parseJoinLink). */
export function formatJoinLink({ server, session, token, key = null, stickiness = null }) {
  let text = `${server}/join/${encodeURIComponent(session)}?token=${encodeURIComponent(token)}`;
  if (stickiness) text += `&ctstickiness=${encodeURIComponent(stickiness)}`;
  return key ? `${text}#key=${key}` : text;
}

/** http://h:p -> ws://h:p/ws/<channel> (https -> wss). */
export function websocketUrl(server, channel = "session") {
  let url;
  try {
    url = new URL(String(server));
  } catch {
    throw new Error(`not an http(s) or ws(s) URL: ${JSON.stringify(String(server))}`);
  }
  const scheme = { "http:": "ws", "https:": "wss", "ws:": "ws", "wss:": "wss" }[url.protocol];
  if (!scheme) throw new Error(`not an http(s) or ws(s) URL: ${JSON.stringify(String(server))}`);
  return `${scheme}://${url.host}/ws/${channel}`;
}
