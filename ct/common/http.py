"""Small HTTP client helpers: the ``Agent`` of every outbound HTTP(S) call of the servers
(health probes, locator latency pings, the OpenID provider).

With an :class:`~ct.common.proxy.OutboundProxy` (``CT_PROXY``), requests go through the
proxy's ``CONNECT`` tunnel unless ``NO_PROXY`` names the destination.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.endpoints import wrapClientTLS
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from ct.common.proxy import OutboundProxy


@implementer(IPolicyForHTTPS)
class TrustAllPolicy:
    """CT_TRUST_ALL_CERTS: accept self-signed certificates from our own servers."""

    def creatorForNetloc(self, hostname, port):
        from twisted.internet.ssl import CertificateOptions

        return CertificateOptions(verify=False)


@implementer(IAgentEndpointFactory)
class _OutboundEndpoints:
    """Endpoints for an ``Agent``: through the proxy's tunnel or direct, TLS inside."""

    def __init__(self, reactor, outbound: OutboundProxy, tls_policy, timeout: float):
        self.reactor = reactor
        self.outbound = outbound
        self.tls_policy = tls_policy
        self.timeout = timeout

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        endpoint = self.outbound.endpoint(self.reactor, host, uri.port, self.timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self.tls_policy.creatorForNetloc(uri.host, uri.port),
                                     endpoint)
        return endpoint


def make_agent(reactor, trust_all: bool = False, timeout: float = 5.0,
               outbound: OutboundProxy | None = None) -> Agent:
    policy = TrustAllPolicy() if trust_all else BrowserLikePolicyForHTTPS()
    if outbound is not None and outbound.proxy is not None:
        return Agent.usingEndpointFactory(
            reactor, _OutboundEndpoints(reactor, outbound, policy, timeout))
    return Agent(reactor, contextFactory=policy, connectTimeout=timeout)


def health_checker(reactor, trust_all: bool = False, timeout: float = 3.0,
                   outbound: OutboundProxy | None = None):
    """A callable ``(base_url) -> Deferred[bool]``: does ``base_url/health`` answer 200?"""
    agent = make_agent(reactor, trust_all, timeout, outbound)

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
