"""The server log: a dashboard page, and the older ``/logs`` (plain text with HTTP Basic)."""

from __future__ import annotations

from klein import Klein

from ct.common.credentials import basic_auth
from ct.dashboard.guard import RequestGuard
from ct.dashboard.html import tags
from ct.dashboard.logs import ServerLog
from ct.dashboard.responses import TEXT, refuse, see_other, set_headers, to_login


def log_page(server_log: ServerLog):
    """The producer of the log page's body."""

    def produce(request, session):
        source = server_log.source()
        where = "kept in memory since start-up" if source == "memory" else f"file {source}"
        return server_log.lines().addCallback(lambda lines: [
            tags.p(f"The last {len(lines)} lines of the server log ({where}). Times are "
                   "the server's local time.", class_="hint"),
            tags.pre("\n".join(lines), class_="log", id="log")])

    return produce


class OlderLogs:
    """``/logs`` of older releases: plain text with HTTP Basic, or the page when logged in.
    Mounted at ``/logs``; its routes are relative to it."""

    app = Klein()

    def __init__(self, guard: RequestGuard, server_log: ServerLog):
        self.guard = guard
        self.server_log = server_log

    @app.route("/", methods=["GET"], strict_slashes=False)  # /logs and /logs/
    def logs(self, request):
        return self.guard.resolved(request, lambda: self._logs(request))

    def _logs(self, request):
        if self.guard.current(request) is not None:
            return see_other(request, "/dashboard/logs")
        given = basic_auth(request)
        if given is None:
            return to_login(request, "/dashboard/logs")
        if not self.guard.config.password_login:
            return refuse(request, 403, "password log-in is turned off "
                                        "(CT_DASHBOARD_PASSWORD_LOGIN)")
        verdict = self.guard.check_login(self.guard.client_ip(request), given[0][:64], given[1])
        if verdict.locked:
            request.setHeader(b"retry-after", verdict.retry_after_header)
            return refuse(request, 429, "too many failed log-ins; try again later")
        if not verdict.ok:
            request.setHeader(b"www-authenticate", b'Basic realm="ct logs", charset="UTF-8"')
            return refuse(request, 401, "wrong user or password")
        set_headers(request, TEXT)
        return self.server_log.lines().addCallback(
            lambda lines: ("\n".join(lines) + "\n").encode("utf-8"))
