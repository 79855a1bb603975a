"""twistd plugins: ``twistd -n ctedge``, ``twistd -n ctlocator``, ``twistd -n ctturn``.

This directory has no ``__init__.py`` on purpose: Twisted scans every
``twisted/plugins`` folder on ``sys.path`` for plugin modules.
"""

from ct.common.daemon import DaemonMaker

ctedge = DaemonMaker(
    "ct edge", "ct.edge.tap", "Edge server: relays live coding sessions and team presence.", "ctedge"
)
ctlocator = DaemonMaker(
    "ct locator", "ct.locator.tap", "Locator: assigns sessions to edges, stores audit and metrics.",
    "ctlocator",
)
ctturn = DaemonMaker(
    "ct turn", "ct.turn.tap", "STUN/TURN relay for audio/video fallback.", "ctturn"
)
