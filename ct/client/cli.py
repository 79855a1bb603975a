"""``ct-client``: host, join or watch presence from a terminal (the reference client's CLI).

    ct-client host --locator URL | --server URL --name NAME [--title T]
    ct-client join LINK --name NAME [--locator URL]
    ct-client presence --locator URL | --server URL --team TEAM --token TOKEN --user NAME
    ct-client login --server URL --token-file FILE   (sign in to host: CT_HOST_AUTH=sso)

host and presence take --host-token-file FILE (from login) where edges require sign-in.

Lines typed on standard input are sent to everyone in the session (end-to-end encrypted);
what others send is printed. End of input leaves the session.
"""

from __future__ import annotations

import argparse
import json
import sys

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from ct.client.links import parse_link
from ct.client.locator import LocatorClient
from ct.client.login import LoopbackLogin, read_token, save_token
from ct.client.presence import PresenceClient
from ct.client.session import SessionClient


class _Input(LineReceiver):
    delimiter = b"\n"

    def __init__(self, client, done):
        self.client = client
        self.done = done

    def lineReceived(self, line):
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        if text:
            self.client.send(text)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _show_frame(client):
    def show(frame):
        who = client.participants.get(frame.sender, {}).get("name", f"#{frame.sender}")
        data = frame.data if isinstance(frame.data, str) else frame.data.hex()
        _say(f"<{who}> {data}")
    return show


@defer.inlineCallbacks
def _events(client):
    while True:
        event = yield client.events.get()
        _say("* " + json.dumps(event, sort_keys=True))


@defer.inlineCallbacks
def _run_session(reactor, client, start):
    yield start()
    _events(client)
    done = defer.Deferred()
    stdio.StandardIO(_Input(client, done), reactor=reactor)
    ended = client.ended.addCallback(lambda e: _say(f"* session over: {e.code} {e.message}"))
    yield defer.DeferredList([done, ended], fireOnOneCallback=True)
    if not client.ended.called:
        yield client.leave()


@defer.inlineCallbacks
def host(reactor, args):
    server = args.server
    if args.locator:
        placed = yield LocatorClient(reactor, args.locator).start_session()
        server = placed["server"]
        _say(f"* the locator placed this session on edge {placed['edge']} ({server})")
    client = SessionClient(reactor, server, args.name)
    client.on_frame = _show_frame(client)

    @defer.inlineCallbacks
    def start():
        yield client.host(title=args.title, host_token=read_token(args.host_token_file))
        link = client.link
        if args.locator:  # joiners ask the locator where the session is
            link = type(link)(args.locator.rstrip("/"), link.session, link.token, link.key)
        _say(f"* hosting session {client.session}; join link (keep it secret):\n{link}")

    yield _run_session(reactor, client, start)


@defer.inlineCallbacks
def join(reactor, args):
    link = parse_link(args.link)
    locator = args.locator or link.server
    server = link.server
    try:
        found = yield LocatorClient(reactor, locator).find_session(link.session)
        server = found["server"]
    except Exception:
        pass  # a single server: the link names the edge itself
    client = SessionClient.from_link(reactor, str(link).replace(link.server, server, 1),
                                     args.name)
    client.on_frame = _show_frame(client)

    @defer.inlineCallbacks
    def start():
        reply = yield client.join_link()
        names = ", ".join(p["name"] for p in reply["participants"])
        _say(f"* joined session {client.session} as #{client.participant}; here: {names}")

    yield _run_session(reactor, client, start)


@defer.inlineCallbacks
def presence(reactor, args):
    server = args.server
    if args.locator:
        where = yield LocatorClient(reactor, args.locator).team_edge(args.team)
        server = where["server"]
    member = PresenceClient(reactor, server, args.team, args.token, args.user,
                            host_token=read_token(args.host_token_file))
    state = yield member.connect()
    _say("* " + json.dumps(state, sort_keys=True))
    while member._proto is not None:
        event = yield member.events.get()
        _say("* " + json.dumps(event, sort_keys=True))


@defer.inlineCallbacks
def login(reactor, args):
    """Sign in through the server's identity provider; the host token goes to a file."""
    flow = LoopbackLogin(reactor, args.server)
    url = yield flow.start()
    _say(f"* open this address in a browser to sign in:\n{url}")
    token = yield flow.wait(args.timeout)
    save_token(args.token_file, token)
    _say(f"* signed in; host token saved in {args.token_file}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ct-client", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("host", help="host a session")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="the edge's URL (single server)")
    where.add_argument("--locator", help="the locator's URL (multi-server)")
    p.add_argument("--name", required=True)
    p.add_argument("--title")
    p.add_argument("--host-token-file", help="host token from 'ct-client login'")
    p = sub.add_parser("join", help="join a session with its link")
    p.add_argument("link")
    p.add_argument("--name", required=True)
    p.add_argument("--locator", help="ask this locator for the session's edge")
    p = sub.add_parser("presence", help="watch a team's presence")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--locator")
    p.add_argument("--team", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--host-token-file", help="host token from 'ct-client login'")
    p = sub.add_parser("login", help="sign in to host where the edges require it")
    p.add_argument("--server", required=True, help="the URL of the server running single "
                   "sign-on (the locator, or a lone edge)")
    p.add_argument("--token-file", required=True, help="where to save the host token")
    p.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    command = {"host": host, "join": join, "presence": presence, "login": login}[args.command]
    task.react(command, [args])


if __name__ == "__main__":
    main()
