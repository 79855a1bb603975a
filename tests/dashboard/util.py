"""A small HTTP client for the dashboard: keeps cookies, logs in, posts forms with the token."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Page:
    def __init__(self, code: int, headers: Headers, body: bytes):
        self.code = code
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def location(self) -> str | None:
        return self.header("location")

    @property
    def csrf(self) -> str:
        match = CSRF_RE.search(self.text)
        assert match, f"no CSRF token on the page:\n{self.text[:2000]}"
        return match.group(1)


class DashboardClient:
    def __init__(self, base: str, source: str | None = None):
        """``source``: the loopback address to connect from (e.g. 127.0.0.2)."""
        self.base = base
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False),
                           bindAddress=(source, 0) if source else None)

    @defer.inlineCallbacks
    def request(self, method: str, path: str, form: dict | None = None,
                headers: dict | None = None, cookies: bool = True):
        hdrs = {k: [v] for k, v in (headers or {}).items()}
        if cookies and self.cookies:
            hdrs["Cookie"] = ["; ".join(f"{k}={v}" for k, v in self.cookies.items())]
        body = None
        if form is not None:
            from twisted.web.client import FileBodyProducer
            import io

            hdrs["Content-Type"] = ["application/x-www-form-urlencoded"]
            body = FileBodyProducer(io.BytesIO(urlencode(form).encode()))
        response = yield self.agent.request(
            method.encode(), (self.base + path).encode(),
            Headers({k.encode(): [v.encode() for v in vs] for k, vs in hdrs.items()}), body)
        data = yield readBody(response)
        for raw in response.headers.getRawHeaders("set-cookie", []):
            self.set_cookie_headers.append(raw)
            name, _, rest = raw.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in raw.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Page(response.code, response.headers, data)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict, origin: str | None = "same", **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if origin == "same":
            headers["Origin"] = self.origin
        elif origin is not None:
            headers["Origin"] = origin
        return self.request("POST", path, form=form, headers=headers, **kw)

    @defer.inlineCallbacks
    def login(self, user: str, password: str, expect: int = 303):
        form = yield self.get("/dashboard/login")
        page = yield self.post("/dashboard/login", {"csrf": form.csrf, "user": user,
                                                    "password": password})
        assert expect is None or page.code == expect, (page.code, page.text[:500])
        return page

    @defer.inlineCallbacks
    def action(self, path: str, form: dict | None = None, page: str = "/dashboard"):
        """POST like the browser does: with the CSRF token of a page just loaded."""
        current = yield self.get(page)
        result = yield self.post(path, {"csrf": current.csrf, **(form or {})})
        return result
