"""``ctctl``: operator commands.

    ctctl team-token TEAM                 presence token of TEAM (needs CT_TEAM_SECRET)
    ctctl edges --locator URL             list edges (operator credentials from the env)
    ctctl suspend EDGE --locator URL      suspend an edge (rolling upgrade)
    ctctl resume EDGE --locator URL

Operator credentials: an API token (created on the dashboard's API tokens page) in
CT_API_TOKEN or --token-file; else CT_DASHBOARD_USER (default ctuser) and
CT_DASHBOARD_PASSWORD.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from twisted.internet import defer, task

from ct.common.tokens import team_token


def operator_credentials(token_file: str | None, env) -> str | tuple[str, str] | None:
    """An API token (``--token-file``, else ``CT_API_TOKEN``), else the dashboard account
    from ``CT_DASHBOARD_USER``/``CT_DASHBOARD_PASSWORD``, else None."""
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            return f.read(200).strip()
    if env.get("CT_API_TOKEN"):
        return env["CT_API_TOKEN"].strip()
    password = env.get("CT_DASHBOARD_PASSWORD")
    if not password:
        return None
    return (env.get("CT_DASHBOARD_USER") or "ctuser", password)


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
        p.add_argument("--token-file", help="file holding an API token (default: "
                       "$CT_API_TOKEN)")
    args = parser.parse_args(argv)

    if args.command == "team-token":
        secret = args.secret or os.environ.get("CT_TEAM_SECRET")
        if not secret:
            parser.error("team-token needs --secret or CT_TEAM_SECRET")
        print(team_token(secret, args.team))
        return
    if not args.locator:
        parser.error(f"{args.command} needs --locator or CT_LOCATOR")
    auth = operator_credentials(args.token_file, os.environ)
    if auth is None:
        parser.error("set CT_API_TOKEN (or --token-file), or CT_DASHBOARD_PASSWORD (and "
                     "CT_DASHBOARD_USER), for operator commands")

    @defer.inlineCallbacks
    def run(reactor):
        from ct.client.locator import LocatorClient, LocatorRefused

        client = LocatorClient(reactor, args.locator)
        try:
            if args.command == "edges":
                result = yield client.edges(auth)
            else:
                result = yield client.suspend(args.edge, args.command == "suspend", auth)
        except LocatorRefused as e:
            sys.stderr.write(f"ctctl: the locator refused: {e}\n")
            raise SystemExit(1) from None
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")

    task.react(run)


if __name__ == "__main__":
    main()
