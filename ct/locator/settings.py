"""Settings of the locator; filled in by the locator component."""

LOCATOR_SETTINGS: list = []
