"""``tags.<name>(...)`` for any HTML element name (Twisted's ``tags`` lacks some HTML5 ones).

Text and attribute values are escaped when flattened, as with ``twisted.web.template``.
"""

from __future__ import annotations

from twisted.web.template import Tag


class _AnyTags:
    def __getattr__(self, name: str) -> Tag:
        if name.startswith("__"):
            raise AttributeError(name)
        return Tag(name)


tags = _AnyTags()
