"""The ``twisted.web`` site both daemons use."""

from __future__ import annotations

from twisted.web.server import Site


class ServerSite(Site):
    """A ``Site`` whose per-request access log is a setting (``CT_ACCESS_LOG``).

    Off by default: load-balancer health probes and client API calls would otherwise
    write a log line each, which costs more than answering them.
    """

    displayTracebacks = False

    def __init__(self, resource, reactor, access_log: bool = False):
        super().__init__(resource, reactor=reactor)
        self.access_log = access_log

    def log(self, request):
        if self.access_log:
            super().log(request)
