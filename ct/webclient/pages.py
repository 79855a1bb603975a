"""The HTML the edge and the locator answer at ``/join/<session>`` (pure: bytes out).

The shell loads the app (no inline script: the Content-Security-Policy forbids it); every
other page is a short message for a person who opened a join link, in the app's style.
Pages use relative asset URLs (``../join-assets/...``) so a server published under a path
prefix works too.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ct.webclient.assets import Assets

# 'self' in connect-src covers ws(s):// to the page's own host (CSP level 3). Styles:
# files from 'self' and CodeMirror's constructed style sheets (with the nonce where a
# browser needs <style> elements); y-codemirror.next colours remote cursors with style
# attributes, hence style-src-attr (which cannot run script or fetch: img-src is 'self').
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
       "style-src-attr 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    b"referrer-policy": b"no-referrer",
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"cache-control": b"no-store",
    b"content-type": b"text/html; charset=utf-8",
}
TITLE = "CodeTogether"


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    body: bytes


def _document(assets: Assets, title: str, nonce: str, body: str, *, app: bool,
              sign_in: str | None = None) -> bytes:
    css = html.escape("../join-assets/" + assets.name_of("join.css"))
    head = [
        '<!DOCTYPE html>',
        '<html lang="en">',
        '<head>',
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f'<meta name="ct-csp-nonce" content="{html.escape(nonce)}">',
        *([f'<meta name="ct-sign-in" content="{html.escape(sign_in)}">'] if sign_in else []),
        f'<title>{html.escape(title)}</title>',
        f'<link rel="stylesheet" href="{css}">',
        '<link rel="icon" href="data:,">',  # no /favicon.ico request
    ]
    if app:
        js = html.escape("../join-assets/" + assets.name_of("join.js"))
        head.append(f'<script src="{js}" defer></script>')
    return "\n".join(head + ["</head>", body, "</html>", ""]).encode("utf-8")


def shell(assets: Assets, nonce: str, sign_in: str | None = None) -> Page:
    """The app's page: it reads the session, token and key from its own URL. ``sign_in``:
    where it sends guests who must sign in (``docs/sso.md``), in a ``ct-sign-in`` meta."""
    body = ('<body class="ct-app">\n<div id="app" aria-live="polite">'
            '<div class="ct-message"><h1>Joining the session…</h1>'
            '<p>Loading the editor.</p></div></div>\n'
            '<noscript><div class="ct-message"><h1>JavaScript is off</h1>'
            '<p>This page is a live code editor and needs JavaScript.</p></div></noscript>\n'
            '</body>')
    return Page(200, _document(assets, f"Joining a session · {TITLE}", nonce, body, app=True,
                               sign_in=sign_in))


def message(assets: Assets, nonce: str, status: int, kind: str, heading: str,
            paragraphs: list[str]) -> Page:
    """A full-page message; ``kind`` is a stable name for tests and styles
    (``data-ct-page``)."""
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    body = (f'<body class="ct-page" data-ct-page="{html.escape(kind)}">\n'
            f'<div class="ct-message"><h1>{html.escape(heading)}</h1>{text}</div>\n</body>')
    return Page(status, _document(assets, f"{heading} · {TITLE}", nonce, body, app=False))


def not_found(assets: Assets, nonce: str) -> Page:
    return message(assets, nonce, 404, "not-found", "This session is not here", [
        "It has ended, or the link is wrong or incomplete.",
        "Ask the host for a new link if the session is still running."])


def no_session(assets: Assets, nonce: str) -> Page:
    return message(assets, nonce, 404, "no-session", "This is not a complete join link", [
        "A join link looks like https://server/join/<session>?token=…#key=…",
        "Copy the whole link the host gave you."])


def insecure(assets: Assets, nonce: str, host: str) -> Page:
    return message(assets, nonce, 403, "insecure", "This link needs HTTPS", [
        f"The page was opened over plain HTTP at {host}. Sessions are end-to-end "
        "encrypted in your browser, and browsers allow that (WebCrypto) only on HTTPS "
        "pages or on this computer (localhost).",
        "Ask the server's operator for the https:// address of this server, or the host "
        "for an https:// link."])


def edge_unavailable(assets: Assets, nonce: str) -> Page:
    return message(assets, nonce, 410, "edge-unavailable", "This session's server is gone", [
        "The server that ran this session is unavailable, so the session cannot go on.",
        "The host has to start a new session and share its new link."])


def locator_unavailable(assets: Assets, nonce: str) -> Page:
    return message(assets, nonce, 503, "unavailable", "Cannot look up this session now", [
        "The server's directory is not reachable at the moment.",
        "Reload this page in a few seconds."])
