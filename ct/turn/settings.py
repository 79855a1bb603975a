"""Settings of the TURN/STUN relay (``CT_TURN_*``, ``CT_AV_*``); filled in by the TURN component."""

TURN_SETTINGS: list = []
