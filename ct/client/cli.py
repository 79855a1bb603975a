"""``ct-client``: host, join, share a directory or watch presence from a terminal.

    ct-client host --locator URL | --server URL --name NAME [--title T] [--guests-sign-in]
    ct-client join LINK --name NAME [--locator URL] [--mirror DIR]
    ct-client share DIR --locator URL | --server URL --name NAME [--title T] [--read-only]
                        [--max-file-bytes N] [--max-workspace-bytes N] [--guests-sign-in]
    ct-client presence --locator URL | --server URL --team TEAM --token TOKEN --user NAME
    ct-client login --server URL --token-file FILE   (sign in to host: CT_HOST_AUTH=sso)

host, share, presence and join take --host-token-file FILE (from login) where edges require
sign-in (join: where guests must sign in, CT_GUEST_AUTH=sso or a host's --guests-sign-in).

``host`` and ``join``: lines typed on standard input are sent to everyone in the session
(end-to-end encrypted); what others send is printed. End of input leaves the session.

``share DIR`` hosts a session sharing the files of DIR (the shared workspace of
docs/protocol.md; see docs/clients.md); ``join LINK --mirror DIR`` keeps a copy of a shared
workspace in DIR, both ways. Their standard input takes commands:

    /who                 who is in the session
    /kick NAME|ID        (host) remove a guest
    /readonly on|off     (host) make the guests read-only, or editable again
    /end                 (host) end the session for everyone
    /leave               leave (a host leaving ends the session); so does end of input
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from twisted.internet import defer, stdio, task, threads
from twisted.internet.error import ConnectError
from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner, textFileLogObserver)
from twisted.protocols.basic import LineReceiver

from ct.client.links import parse_link
from ct.client.locator import LocatorClient
from ct.client.login import LoopbackLogin, read_token, save_token
from ct.client.presence import PresenceClient
from ct.client.session import SessionClient, SessionEnded
from ct.client.share import DirectoryShare, printable
from ct.collab import tree
from ct.collab.workspace import Policy

PLACEMENT_ATTEMPTS = 3  # placements through the locator when edges refuse as they stop


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
def _placed_server(reactor, args):
    if not args.locator:
        return args.server
    placed = yield LocatorClient(reactor, args.locator).start_session()
    _say(f"* the locator placed this session on edge {placed['edge']} ({placed['server']})")
    return placed["server"]


def _say_link(client, args) -> None:
    link = client.link
    if args.locator:  # joiners ask the locator where the session is
        link = type(link)(args.locator.rstrip("/"), link.session, link.token, link.key)
    _say(f"* hosting session {client.session}; join link (keep it secret):\n{link}")


@defer.inlineCallbacks
def _hosted(reactor, args, prepare=lambda client: None):
    """A hosted session, or one clear line and exit status 1. Placed by a locator, an edge
    that is stopping (4017 ``shutting-down``) sends the host back to the locator, which
    places it elsewhere (at most PLACEMENT_ATTEMPTS placements). ``prepare`` readies each
    new client before it hosts."""
    for attempt in range(1, PLACEMENT_ATTEMPTS + 1):
        server = yield _placed_server(reactor, args)
        client = SessionClient(reactor, server, args.name)
        prepare(client)
        handshake = client.host(title=args.title, host_token=read_token(args.host_token_file),
                                guests_sign_in=args.guests_sign_in)
        try:
            yield handshake
            return client
        except SessionEnded as e:
            if e.code != "shutting-down" or not args.locator or attempt == PLACEMENT_ATTEMPTS:
                yield _or_exit(defer.fail(e), "host", client)
            _say(f"* that edge is stopping ({e.message}); asking the locator again")
        except (ConnectionError, ConnectError) as e:
            yield _or_exit(defer.fail(e), "host", client)


@defer.inlineCallbacks
def host(reactor, args):
    client = yield _hosted(reactor, args)
    client.on_frame = _show_frame(client)

    def start():
        _say_link(client, args)
        return defer.succeed(None)

    yield _run_session(reactor, client, start)


@defer.inlineCallbacks
def _client_for_link(reactor, args):
    link = parse_link(args.link)
    locator = args.locator or link.server
    server = link.server
    try:
        found = yield LocatorClient(reactor, locator).find_session(link.session)
        server = found["server"]
    except Exception:
        pass  # a single server: the link names the edge itself
    return SessionClient.from_link(reactor, str(link).replace(link.server, server, 1),
                                   args.name)


@defer.inlineCallbacks
def join(reactor, args):
    client = yield _client_for_link(reactor, args)
    if args.mirror:
        yield _mirror(reactor, args, client)
        return
    client.on_frame = _show_frame(client)

    @defer.inlineCallbacks
    def start():
        reply = yield client.join_link(read_token(args.host_token_file))
        names = ", ".join(p["name"] for p in reply["participants"])
        _say(f"* joined session {client.session} as #{client.participant}; here: {names}")

    yield _run_session(reactor, client, start)


class _Commands(LineReceiver):
    """Standard input of ``share`` and ``join --mirror``: ``/who``, ``/kick``, ``/end``, ..."""

    delimiter = b"\n"

    def __init__(self, client, share, done):
        self.client = client
        self.share = share
        self.done = done

    def lineReceived(self, line):
        words = line.decode("utf-8", errors="replace").strip().split(None, 1)
        if not words:
            return
        command, rest = words[0], (words[1].strip() if len(words) > 1 else "")
        is_host = self.client.role == "host"
        if command == "/who":
            for pid, info in sorted(self.client.participants.items()):
                away = "" if info.get("connected", True) else ", away"
                _say(f"*   #{pid} {printable(info.get('name'), 64)} ({info.get('role')}{away})")
            _say(f"*   #{self.client.participant} {self.client.name} (you)")
        elif command == "/kick" and is_host:
            target = self._find(rest)
            if target is not None:
                self.client.kick(target)
                _say(f"* removing {printable(self.client.participants[target].get('name'))}")
        elif command == "/readonly" and is_host and rest in ("on", "off"):
            self.share.set_read_only(rest == "on")
            _say("* guests are now " + ("read-only" if rest == "on" else "editors"))
        elif command == "/end" and is_host:
            self.client.end()
        elif command == "/leave":
            self._finish()
        else:
            _say("* commands: /who, /leave" + (", /kick NAME|ID, /readonly on|off, /end"
                                                if is_host else ""))

    def _find(self, who: str):
        if who.lstrip("#").isdigit() and int(who.lstrip("#")) in self.client.participants:
            return int(who.lstrip("#"))
        named = [pid for pid, info in self.client.participants.items()
                 if info.get("name") == who and pid != self.client.participant]
        if len(named) == 1:
            return named[0]
        _say(f"* no single participant is called {who!r} (/who lists them)")
        return None

    def _finish(self):
        if not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason):
        self._finish()


@defer.inlineCallbacks
def _run_workspace(reactor, client, share):
    """Serve the shared directory until end of input, ``/leave``, a signal or the end."""
    done = defer.Deferred()
    stdio.StandardIO(_Commands(client, share, done), reactor=reactor)
    ended = client.ended.addCallback(lambda e: _say(f"* session over: {e.code} {e.message}"))
    finished = []

    @defer.inlineCallbacks
    def finish():
        if finished:
            return
        finished.append(True)
        yield share.stop()
        if not client.ended.called:
            yield client.leave().addTimeout(5, reactor).addErrback(lambda _: None)

    trigger = reactor.addSystemEventTrigger("before", "shutdown", finish)  # SIGTERM, Ctrl-C
    yield defer.DeferredList([done, ended], fireOnOneCallback=True)
    yield finish()
    try:
        reactor.removeSystemEventTrigger(trigger)
    except (ValueError, KeyError):
        pass  # it ran: we are shutting down already


@defer.inlineCallbacks
def _or_exit(handshake: defer.Deferred, what: str, client):
    """The reply to host/join, or one clear line and exit status 1 (no traceback)."""
    try:
        return (yield handshake)
    except SessionEnded as e:
        _say(f"* could not {what}: {e.code} {e.message}")
    except (ConnectionError, ConnectError) as e:
        _say(f"* could not {what}: cannot reach {client.server} ({e.__class__.__name__})")
    raise SystemExit(1)


def _policy(args) -> Policy:
    return Policy(read_only=args.read_only, max_file_bytes=args.max_file_bytes,
                  max_workspace_bytes=args.max_workspace_bytes)


@defer.inlineCallbacks
def share(reactor, args):
    root = os.path.abspath(args.dir)
    if not os.path.isdir(root):
        _say(f"* not a directory: {args.dir}")
        raise SystemExit(2)
    policy = _policy(args)
    scan = yield threads.deferToThreadPool(reactor, reactor.getThreadPool(), tree.scan, root,
                                           policy.max_file_bytes, policy.max_workspace_bytes)
    _say(f"* sharing {root}: {len(scan.files)} files, {scan.shared_bytes} bytes; "
         f"{len(scan.unshared)} listed but not shared")
    for entry in scan.unshared:
        _say(f"*   not shared: {entry['path']} ({entry['reason']}, {entry['size']} bytes)")
    for path, why in scan.refused:
        _say(f"*   not shared: {path} ({why})")
    shares = []

    def prepare(client):
        workspace = DirectoryShare(reactor, client, root, "host", policy=policy, say=_say)
        workspace.load(scan)
        client.on_frame = workspace.on_frame
        shares.append(workspace)

    client = yield _hosted(reactor, args, prepare)
    workspace = shares[-1]
    _say_link(client, args)
    workspace.start()
    yield _run_workspace(reactor, client, workspace)


@defer.inlineCallbacks
def _mirror(reactor, args, client):
    workspace = DirectoryShare(reactor, client, args.mirror, "guest", say=_say)
    client.on_frame = workspace.on_frame
    reply = yield _or_exit(client.join_link(read_token(args.host_token_file)), "join", client)
    names = ", ".join(printable(p["name"], 64) for p in reply["participants"])
    _say(f"* joined session {client.session} as #{client.participant}; here: {names}; "
         f"mirroring into {workspace.root}")
    workspace.start()
    yield _run_workspace(reactor, client, workspace)


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


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of bytes")
    return value


GUESTS_SIGN_IN_HELP = "guests must sign in to join (single sign-on), not only have the link"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ct-client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("host", help="host a session")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="the edge's URL (single server)")
    where.add_argument("--locator", help="the locator's URL (multi-server)")
    p.add_argument("--name", required=True)
    p.add_argument("--title")
    p.add_argument("--host-token-file", help="host token from 'ct-client login'")
    p.add_argument("--guests-sign-in", action="store_true", help=GUESTS_SIGN_IN_HELP)
    p = sub.add_parser("join", help="join a session with its link")
    p.add_argument("link")
    p.add_argument("--name", required=True)
    p.add_argument("--locator", help="ask this locator for the session's edge")
    p.add_argument("--mirror", metavar="DIR",
                   help="keep a copy of the shared workspace in DIR (created), both ways")
    p.add_argument("--host-token-file", help="token from 'ct-client login', where guests "
                   "must sign in")
    p = sub.add_parser("share", help="host a session sharing a directory",
                       description="Host a session sharing the files of DIR: guests' edits "
                       "are written back, edits on disk are sent. Commands on standard "
                       "input: /who, /kick NAME|ID, /readonly on|off, /end, /leave.")
    p.add_argument("dir")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="the edge's URL (single server)")
    where.add_argument("--locator", help="the locator's URL (multi-server)")
    p.add_argument("--name", required=True)
    p.add_argument("--title")
    p.add_argument("--read-only", action="store_true", help="guests may not edit")
    p.add_argument("--max-file-bytes", type=_positive, default=tree.DEFAULT_MAX_FILE_BYTES,
                   help="larger files are listed, not shared (default 1 MiB)")
    p.add_argument("--max-workspace-bytes", type=_positive,
                   default=tree.DEFAULT_MAX_WORKSPACE_BYTES,
                   help="files past this total are listed, not shared (default 32 MiB)")
    p.add_argument("--host-token-file", help="host token from 'ct-client login'")
    p.add_argument("--guests-sign-in", action="store_true", help=GUESTS_SIGN_IN_HELP)
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
    if args.command in ("share",) or getattr(args, "mirror", None):
        # warnings (dropped messages, files that cannot be written) to standard error
        globalLogBeginner.beginLoggingTo([FilteringLogObserver(
            textFileLogObserver(sys.stderr),
            [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)])],
            redirectStandardIO=False)
    command = {"host": host, "join": join, "share": share, "presence": presence,
               "login": login}[args.command]
    task.react(command, [args])


if __name__ == "__main__":
    main()
