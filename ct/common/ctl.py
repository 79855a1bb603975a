"""``ctctl``: operator commands.

    ctctl team-token TEAM                 presence token of TEAM (needs CT_TEAM_SECRET)
    ctctl edges --locator URL             list edges (operator credentials from the env)
    ctctl suspend EDGE --locator URL      suspend an edge (rolling upgrade)
    ctctl resume EDGE --locator URL

Operator credentials: CT_DASHBOARD_USER (default ctuser) and CT_DASHBOARD_PASSWORD.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from twisted.internet import defer, task

from ct.common.tokens import team_token


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="ctctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("team-token", help="print the presence token of a team")
    p.add_argument("team")
    p.add_argument("--secret", help="default: $CT_TEAM_SECRET")
    for name in ("edges", "suspend", "resume"):
        p = sub.add_parser(name)
        if name != "edges":
            p.add_argument("edge")
        p.add_argument("--locator", default=os.environ.get("CT_LOCATOR"), required=False)
    args = parser.parse_args(argv)

    if args.command == "team-token":
        secret = args.secret or os.environ.get("CT_TEAM_SECRET")
        if not secret:
            parser.error("team-token needs --secret or CT_TEAM_SECRET")
        print(team_token(secret, args.team))
        return
    if not args.locator:
        parser.error(f"{args.command} needs --locator or CT_LOCATOR")
    password = os.environ.get("CT_DASHBOARD_PASSWORD")
    if not password:
        parser.error("set CT_DASHBOARD_PASSWORD (and CT_DASHBOARD_USER) for operator commands")
    auth = (os.environ.get("CT_DASHBOARD_USER") or "ctuser", password)

    @defer.inlineCallbacks
    def run(reactor):
        from ct.client.locator import LocatorClient

        client = LocatorClient(reactor, args.locator)
        if args.command == "edges":
            result = yield client.edges(auth)
        else:
            result = yield client.suspend(args.edge, args.command == "suspend", auth)
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")

    task.react(run)


if __name__ == "__main__":
    main()
