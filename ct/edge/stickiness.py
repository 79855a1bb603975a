"""``ctstickiness``: keep every request of a session on one edge behind a load balancer.

Without a locator, edges sit behind a load balancer that routes on the ``ctstickiness``
value each request carries: a header from IDE clients, a cookie from browsers. The edge
answers every request with the value it was given (or, when none, one naming itself), as
a header and a cookie, and puts it in the ``hosted`` reply so the host can add it to the
join link: joiners and resumes then carry the same value and land on the same edge.
See ``docs/load-balancer.md``.
"""

from __future__ import annotations

import re
from http.cookies import CookieError, SimpleCookie

NAME = "ctstickiness"
_VALID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


def from_request(header: str | None, cookie_header: str | None) -> str | None:
    """The value a request carries: the header wins over the cookie; junk is ignored."""
    if header and _VALID.match(header.strip()):
        return header.strip()
    if cookie_header:
        try:
            jar = SimpleCookie()
            jar.load(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(NAME)
        if morsel is not None and _VALID.match(morsel.value):
            return morsel.value
    return None


def value_for(header: str | None, cookie_header: str | None, edge_id: str) -> str:
    return from_request(header, cookie_header) or f"edge-{edge_id}"


def cookie(value: str, secure: bool) -> str:
    return f"{NAME}={value}; Path=/; SameSite=Lax; HttpOnly" + ("; Secure" if secure else "")


def request_factory(edge, base):
    """A request class (a subclass of ``base``, the site's) that answers every HTTP
    request with the value."""

    class StickyRequest(base):
        def process(self):
            value = value_for(_header(self, NAME), _header(self, "cookie"), edge.edge_id)
            self.setHeader(NAME, value)
            self.setHeader("set-cookie", cookie(value, self.isSecure()))
            super().process()

    return StickyRequest


def _header(request, name: str) -> str | None:
    raw = request.getHeader(name)
    return raw if raw is None or isinstance(raw, str) else raw.decode("latin-1")
