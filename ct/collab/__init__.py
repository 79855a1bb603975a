"""The shared workspace of application layer v1 (docs/protocol.md): pure logic, no I/O of
sockets or reactor. ``messages`` the codec, ``workspace`` the Yjs document, awareness and
policy, ``tree`` what of a directory is shared, ``textdiff`` minimal edits."""
