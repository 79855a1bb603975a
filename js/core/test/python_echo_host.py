"""A host on the Python reference client (ct/client/session.py) that sends every payload
back to its sender, prefixed: the JavaScript core's wire and crypto interop test.

    python python_echo_host.py http://127.0.0.1:PORT     (prints the join link, then serves)
"""

import sys

from twisted.internet import reactor

from ct.client.session import SessionClient


def main() -> None:
    client = SessionClient(reactor, sys.argv[1], "PyHost")

    def on_frame(frame):
        if isinstance(frame.data, str):
            client.send("echo: " + frame.data, to=frame.sender)
        else:
            client.send(b"echo:" + frame.data, to=frame.sender)

    client.on_frame = on_frame

    def hosted(_):
        print(str(client.link), flush=True)

    def failed(failure):
        print("ERROR", failure.getErrorMessage(), flush=True)
        reactor.stop()

    client.host(title="python echo").addCallbacks(hosted, failed)
    client.ended.addCallback(lambda _: reactor.stop())


reactor.callWhenRunning(main)
reactor.run()
