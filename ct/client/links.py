"""Join links: ``https://server/join/<session>?token=<join token>#key=<session key>``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit


@dataclass(frozen=True)
class JoinLink:
    server: str  # http(s)://host[:port]
    session: str
    token: str
    key: str | None  # base64url session key, from the fragment
    stickiness: str | None = None  # ctstickiness value for load balancers (no locator)

    def __str__(self) -> str:
        text = f"{self.server}/join/{quote(self.session)}?token={quote(self.token)}"
        if self.stickiness:
            text += f"&ctstickiness={quote(self.stickiness)}"
        return f"{text}#key={self.key}" if self.key else text

    @property
    def websocket_url(self) -> str:
        return websocket_url(self.server, "session")


def websocket_url(server: str, channel: str) -> str:
    """``http://h:p`` -> ``ws://h:p/ws/<channel>`` (https -> wss)."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) or ws(s) URL: {server!r}")
    return f"{scheme}://{parts.netloc}/ws/{channel}"


def parse_link(link: str) -> JoinLink:
    parts = urlsplit(link)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or len(segments) < 2 or segments[-2] != "join":
        raise ValueError(f"not a join link (https://server/join/<session>?token=...): {link!r}")
    query = parse_qs(parts.query)
    token = query.get("token", [None])[0]
    sticky = query.get("ctstickiness", [None])[0]
    if not token:
        raise ValueError("join link has no token")
    key = None
    if parts.fragment:
        key = parse_qs(parts.fragment).get("key", [None])[0]
    prefix = "/".join(segments[:-2])
    server = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
    return JoinLink(server, segments[-1], token, key, sticky)
