"""Small HTTP client helpers (health probes between servers of one deployment)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer


@implementer(IPolicyForHTTPS)
class TrustAllPolicy:
    """CT_TRUST_ALL_CERTS: accept self-signed certificates from our own servers."""

    def creatorForNetloc(self, hostname, port):
        from twisted.internet.ssl import CertificateOptions

        return CertificateOptions(verify=False)


def make_agent(reactor, trust_all: bool = False, timeout: float = 5.0) -> Agent:
    if trust_all:
        return Agent(reactor, contextFactory=TrustAllPolicy(), connectTimeout=timeout)
    return Agent(reactor, connectTimeout=timeout)


def health_checker(reactor, trust_all: bool = False, timeout: float = 3.0):
    """A callable ``(base_url) -> Deferred[bool]``: does ``base_url/health`` answer 200?"""
    agent = make_agent(reactor, trust_all, timeout)

    @defer.inlineCallbacks
    def check(base_url: str):
        try:
            d = agent.request(b"GET", (base_url.rstrip("/") + "/health").encode())
            d.addTimeout(timeout, reactor)
            response = yield d
            yield readBody(response)
        except Exception:
            return False
        return response.code == 200

    return check
