"""A real OpenID provider for the tests: the Node ``oidc-provider`` package (its own
sign-in and consent pages) in a child process on loopback, installed by ``npm ci`` from
the committed lock file in ``tests/sso/provider/``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
CLIENT_ID = "ct-dashboard"
CLIENT_SECRET = "provider-test-client-secret-0123"
CALLBACK = "http://127.0.0.1/dashboard/sso/callback"  # any port: a native client
# Two users in different teams, one administrator, and an administrator outside the
# allowed domain (example.com).
USERS = {
    "ada@example.com": {"email": "ada@example.com", "email_verified": True, "name": "Ada Admin",
                        "groups": ["ct-admin"]},
    "bob@example.com": {"email": "bob@example.com", "email_verified": True, "name": "Bob Red",
                        "groups": ["ct-team:red", "staff"]},
    "cy@example.com": {"email": "cy@example.com", "email_verified": True, "name": "Cy Blue",
                       "groups": ["ct-team:blue"]},
    "eve@elsewhere.test": {"email": "eve@elsewhere.test", "email_verified": True,
                           "name": "Eve Elsewhere", "groups": ["ct-admin"]},
}


def node_ready() -> str:
    """``node`` with ``oidc-provider`` installed (``npm ci``) in ``tests/sso/provider``."""
    node = shutil.which("node")
    if node is None:
        raise unittest.SkipTest("node is not installed: the OpenID provider tests need it")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise AssertionError("node is installed but npm is not: cannot install "
                                 "oidc-provider")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PROVIDER_DIR, check=True,
                       timeout=300, capture_output=True)
    return node


class _Process(protocol.ProcessProtocol):
    def __init__(self):
        self.started = defer.Deferred()
        self.ended = defer.Deferred()
        self.stderr = b""
        self._buffer = b""

    def outReceived(self, data):
        self._buffer += data
        if b"\n" in self._buffer and not self.started.called:
            line = self._buffer.split(b"\n", 1)[0]
            self.started.callback(json.loads(line)["issuer"])

    def errReceived(self, data):
        self.stderr = (self.stderr + data)[-20000:]

    def processEnded(self, reason):
        if not self.started.called:
            self.started.errback(AssertionError(f"the OpenID provider exited: {self.stderr!r}"))
        self.ended.callback(None)


class Provider:
    """``start()`` fires with the issuer URL; a restart on the same port rotates the
    signing key (the runner makes a new one at each start)."""

    def __init__(self, case, port: int = 0, id_token_ttl: int = 3600,
                 redirect_uris=(CALLBACK,), token_delay: float = 0.0,
                 tamper: str | None = None):
        """``token_delay``: seconds the token endpoint holds its answer after minting
        the ID token; ``tamper``: ``signature``, ``claims`` or ``none``, how the ID token
        in that answer is altered (see ``provider/run.mjs``)."""
        self.case = case
        self.node = node_ready()
        self.port = port
        self.id_token_ttl = id_token_ttl
        self.token_delay = token_delay
        self.tamper = tamper
        self.redirect_uris = list(redirect_uris)
        self.issuer: str | None = None
        self._process = None
        case.addCleanup(self.stop)

    @defer.inlineCallbacks
    def start(self):
        config = {"port": self.port, "users": USERS, "idTokenTTL": self.id_token_ttl,
                  "tokenDelayMs": int(self.token_delay * 1000), "tamper": self.tamper,
                  "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                               "application_type": "native",
                               "redirect_uris": self.redirect_uris,
                               "post_logout_redirect_uris": ["http://127.0.0.1/dashboard/login"],
                               "token_endpoint_auth_method": "client_secret_basic"}]}
        proto = _Process()
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self._process = reactor.spawnProcess(proto, self.node,
                                             [self.node, "run.mjs", json.dumps(config)],
                                             env=env, path=str(PROVIDER_DIR))
        self._proto = proto
        self.issuer = yield proto.started.addTimeout(30, reactor)
        self.port = int(self.issuer.rsplit(":", 1)[1])
        return self.issuer

    def stop(self):
        if self._process is not None and not self._proto.ended.called:
            self._process.signalProcess("TERM")
            return self._proto.ended.addTimeout(10, reactor)
        return None

    def locator_env(self, **extra) -> dict[str, str]:
        """The ``CT_SSO_*`` settings of a server signing in through this provider."""
        return {"CT_SSO_ISSUER": self.issuer, "CT_SSO_CLIENT_ID": CLIENT_ID,
                "CT_SSO_CLIENT_SECRET": CLIENT_SECRET,
                "CT_SSO_SCOPES": "openid,email,profile,groups",
                "CT_SSO_ALLOWED_DOMAINS": "example.com", **extra}


def _stale(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


def pass_provider(b, login: str, done, steps: int = 4) -> None:
    """Blocking (run in a thread): through the provider's sign-in page (any password for
    a known login) and consent page, whichever it shows, until ``done()``."""
    for _ in range(steps):
        b.wait(lambda: done() or b.driver.find_elements("css selector", "button[type=submit]"),
               what="the provider's page or the way back")
        if done():
            return
        if b.driver.find_elements("css selector", "input[name=login]"):
            b.find("input[name=login]").send_keys(login)
            b.find("input[name=password]").send_keys("any password")
        button = b.find("button[type=submit]")
        button.click()
        b.wait(lambda: _stale(button), what="the provider's next page")
    b.wait(done, what="the way back from the provider")


def sign_in(b, base: str, login: str, start: str = "/dashboard"):
    """Blocking (run in a thread): through the dashboard's SSO button and the provider's
    pages, back to the dashboard (signed in, or refused on the log-in page)."""
    b.driver.get(base + start)
    b.wait(lambda: "/dashboard/login" in b.driver.current_url, what="log-in page")
    b.find("#sso-login").click()
    b.wait(lambda: not b.driver.current_url.startswith(base + "/dashboard/login"),
           what="off to the provider")
    pass_provider(b, login, lambda: b.driver.current_url.startswith(base + "/dashboard"))
