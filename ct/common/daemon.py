"""The twistd plugins' service makers: a start-up that cannot go on ends with one line.

Settings are checked while twistd parses options (one ``invalid setting`` line). What
only ``makeService`` can find out (a bad ``locator-config.json``, a database that refuses
the schema) raises :class:`~twisted.python.usage.UsageError` or
:class:`~ct.common.listen.StartupError` there, which twistd would print as a traceback:
this maker prints the message alone and exits with status 1.
"""

from __future__ import annotations

import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from twisted.python.reflect import namedAny
from zope.interface import implementer


@implementer(IPlugin, IServiceMaker)
class DaemonMaker:
    """Like :class:`twisted.application.service.ServiceMaker`, with a one-line failure."""

    def __init__(self, name: str, module: str, description: str, tapname: str, stderr=None):
        self.name = name
        self.module = module
        self.description = description
        self.tapname = tapname
        self._stderr = stderr

    @property
    def options(self):
        return namedAny(self.module).Options

    def makeService(self, options):
        from ct.common.listen import StartupError

        try:
            return namedAny(self.module).makeService(options)
        except (usage.UsageError, StartupError) as e:
            (self._stderr or sys.stderr).write(f"twistd {self.tapname}: {e}\n")
            raise SystemExit(1) from None
