"""ct: self-hosted server for live pair programming (edge, locator, TURN, dashboard)."""

__version__ = "0.1.0"
