"""A Python host of a shared workspace for the interop test: the reference SessionClient
(ct/client/session.py) with ct/collab's pycrdt Workspace and codec, answering sync and
applying updates as docs/protocol.md's application layer says. Commands come as JSON lines
on stdin, answers go to stdout; the first line out is the join link.

    {"op": "put", "path", "text"}                      add a file or make it hold text
    {"op": "edit", "path", "start", "end", "text"}     code-point positions (Python str)
    {"op": "snapshot"}                                 -> {"snapshot": {path: text}}
"""

import json
import sys

from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver

from ct.client.session import SessionClient
from ct.collab import messages, textdiff
from ct.collab.workspace import Workspace


class Host:
    def __init__(self, server: str):
        self.client = SessionClient(reactor, server, "PyHost", on_frame=self.on_frame)
        self.workspace = Workspace()
        self.reassembler = messages.Reassembler()
        self.chunk_id = 1
        # Once standard input is served, stdout is non-blocking: answers go through its transport.
        self.out = lambda value: print(json.dumps(value, ensure_ascii=False), flush=True)

    def send(self, message: bytes, to: int = 0) -> None:
        parts = messages.split(message, self.chunk_id)
        if len(parts) > 1:
            self.chunk_id += 1
        for part in parts:
            self.client.send(part, to)

    def on_frame(self, frame) -> None:
        try:
            whole = self.reassembler.feed(frame.sender, frame.data)
            message = None if whole is None else messages.decode(whole)
        except messages.MessageError as e:
            self.out({"warning": str(e)})
            return
        if message is None:
            return
        if message.kind == messages.SYNC_STEP1:
            self.send(messages.sync_step2(self.workspace.update_for(message.body)), frame.sender)
            if message.flags & messages.SYNC_INITIAL:
                self.send(messages.sync_step1(self.workspace.state_vector(), False), frame.sender)
        elif message.kind in (messages.SYNC_STEP2, messages.UPDATE):
            self.workspace.apply(message.body)

    def command(self, line: bytes) -> None:
        cmd = json.loads(line)
        if cmd["op"] == "put":
            update = self.workspace.put(cmd["path"], cmd["text"])
        elif cmd["op"] == "edit":
            update = self.workspace.edit(cmd["path"], [textdiff.Edit(cmd["start"], cmd["end"], cmd["text"])])
        elif cmd["op"] == "snapshot":
            self.out({"snapshot": self.workspace.snapshot()})
            return
        else:
            raise ValueError(cmd)
        if update:
            self.send(messages.update(update))
        self.out({"ok": True})


class Commands(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self, host: Host):
        self.host = host

    def connectionMade(self) -> None:
        self.host.out = lambda value: self.transport.write(
            json.dumps(value, ensure_ascii=False).encode("utf-8") + b"\n")

    def lineReceived(self, line: bytes) -> None:
        self.host.command(line)

    def connectionLost(self, reason=None) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    host = Host(sys.argv[1])
    for path, text in json.loads(sys.argv[2]).items():
        host.workspace.put(path, text)

    def hosted(_):
        print(str(host.client.link), flush=True)
        stdio.StandardIO(Commands(host))

    def failed(failure):
        print("ERROR", failure.getErrorMessage(), flush=True)
        reactor.stop()

    host.client.host(title="python collab").addCallbacks(hosted, failed)


reactor.callWhenRunning(main)
reactor.run()
