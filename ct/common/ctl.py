"""``ctctl``: operator commands against the locator's operator API (``docs/ctctl.md``).

    ctctl team-token TEAM                  presence token of TEAM (needs CT_TEAM_SECRET)
    ctctl edges | sessions | usage         list edges, live sessions, usage statistics
    ctctl suspend EDGE | resume EDGE       rolling upgrade
    ctctl kick SESSION PARTICIPANT         remove a participant from a session
    ctctl end SESSION                      end a session for everyone
    ctctl regions get | regions put FILE   the region table (FILE "-": standard input)
    ctctl audit export [--since T] ...     audit entries as CSV or JSON lines

The locator: ``--locator URL`` or CT_LOCATOR. Credentials (never on the command line): an
API token (``--token-file FILE`` or CT_API_TOKEN, created on the dashboard's API tokens
page), else CT_DASHBOARD_USER/CT_DASHBOARD_PASSWORD (else CT_LOGS_USER/CT_LOGS_PASSWORD),
else a netrc-style file (``--netrc FILE``, CTCTL_NETRC, ``~/.netrc``) readable by its owner
only.
Errors are one line on standard error; exit codes: 0 done, 1 the locator refused the
request, 2 bad usage or input, 3 credentials missing or refused, 4 locator unreachable.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime
import json
import netrc
import os
import ssl
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ct.common.tokens import team_token

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
DEFAULT_USER = "ctuser"
TIMEOUT = 30.0
AUDIT_PAGE = 1000  # the API's largest page
AUDIT_EXPORT_MAX = 10_000_000
MAX_REGIONS_FILE = 1 << 20
MAX_TOKEN = 200
MAX_ANSWER = 64 << 20  # an audit page of 1,000 entries is far smaller


class CtlError(Exception):
    """A failure that ends the command: one line for the operator and an exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class Credential:
    """How a request proves it comes from an operator; ``source`` says where it came
    from (for error messages, never the secret)."""

    authorization: str  # the Authorization header value
    source: str


def basic(user: str, password: str, source: str) -> Credential:
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return Credential(f"Basic {token}", source)


#: A credential source: ``(locator URL, environment, options) -> Credential | None``.
CredentialSource = Callable[[str, Mapping[str, str], argparse.Namespace], "Credential | None"]


def from_api_token(url: str, env: Mapping[str, str], args) -> Credential | None:
    """An API token (``Authorization: Bearer``): ``--token-file``, else CT_API_TOKEN."""
    path = getattr(args, "token_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read(MAX_TOKEN + 1).strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CtlError(f"cannot read the API token file {path}: "
                           f"{getattr(e, 'strerror', None) or e}", EXIT_USAGE) from None
        source = path
    else:
        token, source = (env.get("CT_API_TOKEN") or "").strip(), "CT_API_TOKEN"
        if not token:
            return None
    if not token or len(token) > MAX_TOKEN or any(c.isspace() for c in token):
        raise CtlError(f"the API token from {source} is not one (one line of at most "
                       f"{MAX_TOKEN} characters)", EXIT_USAGE)
    return Credential(f"Bearer {token}", source)


def from_environment(url: str, env: Mapping[str, str], args) -> Credential | None:
    """The dashboard credentials, each with the servers' fallback to the older CT_LOGS_*
    name (``ct/common/catalog.py``)."""
    for password_name in ("CT_DASHBOARD_PASSWORD", "CT_LOGS_PASSWORD"):
        if env.get(password_name):
            user = env.get("CT_DASHBOARD_USER") or env.get("CT_LOGS_USER") or DEFAULT_USER
            return basic(user, env[password_name], password_name)
    return None


def from_netrc(url: str, env: Mapping[str, str], args) -> Credential | None:
    """``machine HOST[:PORT] login USER password PASSWORD`` from a netrc-style file."""
    path = getattr(args, "netrc", None) or env.get("CTCTL_NETRC")
    explicit = path is not None
    if path is None:
        path = os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        info = os.stat(path)
    except OSError:
        if explicit:
            raise CtlError(f"cannot read credentials file {path}: not found", EXIT_USAGE)
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CtlError(f"credentials file {path} is readable by others (mode "
                       f"{stat.S_IMODE(info.st_mode):o}); chmod 600 it", EXIT_USAGE)
    try:
        entries = netrc.netrc(path)
    except netrc.NetrcParseError as e:  # its message may quote a token: a password
        raise CtlError(f"cannot read credentials file {path}: not in netrc format (line "
                       f"{e.lineno})", EXIT_USAGE) from None
    except OSError as e:
        raise CtlError(f"cannot read credentials file {path}: {e.strerror}",
                       EXIT_USAGE) from None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    for machine in ([f"{host}:{parts.port}"] if parts.port else []) + [host]:
        found = entries.authenticators(machine)
        if found is not None and found[2]:
            return basic(found[0] or DEFAULT_USER, found[2], path)
    return None


#: Tried in order; the first that answers wins.
CREDENTIAL_SOURCES: list[CredentialSource] = [from_api_token, from_environment, from_netrc]


def find_credential(url: str, env: Mapping[str, str], args,
                    sources: Sequence[CredentialSource] | None = None) -> Credential:
    for source in CREDENTIAL_SOURCES if sources is None else sources:
        credential = source(url, env, args)
        if credential is not None:
            return credential
    raise CtlError("no operator credentials: set CT_API_TOKEN (or --token-file), or "
                   "CT_DASHBOARD_PASSWORD (and CT_DASHBOARD_USER), or give a netrc file "
                   "(--netrc FILE or CTCTL_NETRC) with a line for this locator's host",
                   EXIT_AUTH)


# ------------------------------------------------------------------ the operator API


class OperatorAPI:
    """Blocking calls to ``/api/v1`` (a command-line tool: no reactor to keep running)."""

    def __init__(self, url: str, credential: Credential, trust_all_certs: bool = False,
                 timeout: float = TIMEOUT):
        self.url = url.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self.context = None
        if trust_all_certs:
            self.context = ssl.create_default_context()
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def call(self, method: str, path: str, query: Mapping[str, Any] | None = None,
             body: Any = None) -> Any:
        target = self.url + "/api/v1" + path
        if query:
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(target, data=data, method=method, headers={
            "Authorization": self.credential.authorization, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self.context) as response:
                body = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as e:
            raise self._refusal(e) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise CtlError(f"the locator's TLS certificate is not trusted ({reason}): "
                               "install its CA on this host, or use --trust-all-certs (or "
                               "CT_TRUST_ALL_CERTS=true)", EXIT_UNREACHABLE) from None
            raise CtlError(f"cannot reach the locator at {self.url}: {reason}",
                           EXIT_UNREACHABLE) from None
        try:
            if len(body) > MAX_ANSWER:
                raise ValueError(f"larger than {MAX_ANSWER} bytes")
            return json.loads(body or b"null")
        except ValueError as e:
            raise CtlError(f"{self.url} answered {method} {path} with something that is not "
                           f"the operator API's JSON ({e}); is it the locator?",
                           EXIT_UNREACHABLE) from None

    def _refusal(self, e: urllib.error.HTTPError) -> CtlError:
        try:
            answer = json.loads(e.read(65536))
            code, message = answer.get("error"), answer.get("message")
        except (ValueError, AttributeError, OSError):
            code, message = None, None
        text = f"{e.code} {code or e.reason}" + (f": {message}" if message else "")
        if e.code == 401:
            return CtlError(f"the locator refused the credentials from "
                            f"{self.credential.source} ({text})", EXIT_AUTH)
        if e.code == 429 and code == "too-many-failures":
            return CtlError(f"the locator refused the credentials ({text})", EXIT_AUTH)
        if e.code >= 500:
            return CtlError(f"the locator cannot answer now ({text})", EXIT_UNREACHABLE)
        return CtlError(f"the locator refused: {text}", EXIT_REFUSED)


# ------------------------------------------------------------------ commands


def parse_time(text: str) -> float:
    """Seconds since the epoch, or an ISO 8601 date/time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither seconds since the epoch nor an ISO 8601 time "
            "(2026-01-31 or 2026-01-31T08:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _path_part(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def export_audit(api: OperatorAPI, args, out) -> int:
    """Write every matching entry, newest first (as the API pages them); returns how
    many were written."""
    writer = None
    if args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(["time_utc", "time", "kind", "user", "edge", "session", "details"])
    query = {"since": args.since, "until": args.until, "kind": args.kind, "user": args.user,
             "edge": args.edge, "session": args.session, "limit": AUDIT_PAGE}
    written = 0
    while written < args.max:  # bounded by --max, and ends at the first short page
        page = api.call("GET", "/audit", {**query, "offset": written})["entries"]
        for e in page[:args.max - written]:
            if writer is None:
                out.write(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n")
            else:
                when = datetime.datetime.fromtimestamp(e["time"], datetime.timezone.utc)
                writer.writerow([when.strftime("%Y-%m-%d %H:%M:%S"), f"{e['time']:.3f}",
                                 e["kind"], e.get("user") or "", e.get("edge") or "",
                                 e.get("session") or "",
                                 json.dumps(e.get("details") or {}, sort_keys=True)])
            written += 1
        if len(page) < AUDIT_PAGE:
            break
    return written


def read_regions(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read(MAX_REGIONS_FILE + 1)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_REGIONS_FILE + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise CtlError(f"cannot read {path}: {e}", EXIT_USAGE) from None
    if len(text) > MAX_REGIONS_FILE:
        raise CtlError(f"{path} is larger than {MAX_REGIONS_FILE} bytes", EXIT_USAGE)
    try:
        document = json.loads(text)
    except ValueError as e:
        raise CtlError(f"{path} is not JSON: {e}", EXIT_USAGE) from None
    # Accept what `regions get` prints ({"regions": {...}}) and the bare table.
    if isinstance(document, dict) and set(document) == {"regions"}:
        return document["regions"]
    return document


def run_command(args, api: OperatorAPI, out) -> Any:
    """The API answer to print (None: the command wrote its own output)."""
    command = args.command
    if command == "edges":
        return api.call("GET", "/edges")
    if command in ("suspend", "resume"):
        return api.call("POST", f"/edges/{_path_part(args.edge)}/{command}")
    if command == "sessions":
        return api.call("GET", "/sessions")
    if command == "kick":
        return api.call("POST", f"/sessions/{_path_part(args.session)}/participants/"
                                f"{args.participant}/remove")
    if command == "end":
        return api.call("POST", f"/sessions/{_path_part(args.session)}/end")
    if command == "usage":
        return api.call("GET", "/usage", {"days": args.days})
    if command == "regions":
        if args.action == "get":
            return api.call("GET", "/regions")
        return api.call("PUT", "/regions", body={"regions": read_regions(args.file)})
    if command == "audit":
        if args.output:
            try:
                with open(args.output, "w", encoding="utf-8", newline="") as f:
                    n = export_audit(api, args, f)
            except OSError as e:
                raise CtlError(f"cannot write {args.output}: {e}", EXIT_USAGE) from None
        else:
            n = export_audit(api, args, out)
        print(f"ctctl: {n} audit entries exported", file=sys.stderr)
        return None
    raise AssertionError(command)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (exit 2), pointing at ``--help``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"ctctl: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctctl",
                     description="operator commands against the locator (docs/ctctl.md)")
    common = _Parser(add_help=False)
    common.add_argument("--locator", help="the locator's URL (default: $CT_LOCATOR)")
    common.add_argument("--token-file", help="file holding an API token (default: "
                        "$CT_API_TOKEN)")
    common.add_argument("--netrc", help="credentials file (default: $CTCTL_NETRC, ~/.netrc)")
    common.add_argument("--trust-all-certs", action="store_true", default=None,
                        help="accept any TLS certificate (default: $CT_TRUST_ALL_CERTS)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("team-token", help="print the presence token of a team")
    p.add_argument("team")
    p.add_argument("--secret", help="default: $CT_TEAM_SECRET")
    sub.add_parser("edges", parents=[common], help="list the edges and their state")
    for name in ("suspend", "resume"):
        sub.add_parser(name, parents=[common], help=f"{name} an edge").add_argument("edge")
    sub.add_parser("sessions", parents=[common], help="live sessions and their people")
    p = sub.add_parser("kick", parents=[common], help="remove a participant from a session")
    p.add_argument("session")
    p.add_argument("participant", type=int, help="the participant number (see sessions)")
    sub.add_parser("end", parents=[common], help="end a session").add_argument("session")
    p = sub.add_parser("usage", parents=[common], help="usage statistics over days")
    p.add_argument("--days", type=int, default=30, help="1-366, default 30")
    p = sub.add_parser("regions", help="get or replace the region table")
    regions = p.add_subparsers(dest="action", required=True)
    regions.add_parser("get", parents=[common])
    regions.add_parser("put", parents=[common]).add_argument(
        "file", help='JSON {"regions": {...}} or the bare table; "-" reads standard input')
    p = sub.add_parser("audit", help="audit entries")
    audit = p.add_subparsers(dest="action", required=True)
    p = audit.add_parser("export", parents=[common], help="export entries, newest first")
    p.add_argument("--since", type=parse_time, help="from (inclusive): ISO 8601 or epoch s")
    p.add_argument("--until", type=parse_time, help="to (exclusive)")
    for name in ("kind", "user", "edge", "session"):
        p.add_argument(f"--{name}", help=f"only entries of this {name}")
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.add_argument("--max", type=int, default=AUDIT_EXPORT_MAX, help="at most this many")
    return parser


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def main(argv=None, env: Mapping[str, str] | None = None, out=None) -> int:
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's message on bad usage
    try:
        if args.command == "team-token":
            secret = args.secret or env.get("CT_TEAM_SECRET")
            if not secret:
                raise CtlError("team-token needs --secret or CT_TEAM_SECRET", EXIT_USAGE)
            print(team_token(secret, args.team), file=out)
            return EXIT_OK
        url = args.locator or env.get("CT_LOCATOR")
        if not url or url == "none":
            raise CtlError(f"{args.command} needs --locator URL or CT_LOCATOR (the "
                           "locator's URL)", EXIT_USAGE)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise CtlError(f"--locator must be an http:// or https:// URL, got {url!r}",
                           EXIT_USAGE)
        trust = args.trust_all_certs or _true(env.get("CT_TRUST_ALL_CERTS"))
        api = OperatorAPI(url, find_credential(url, env, args), trust_all_certs=trust)
        answer = run_command(args, api, out)
    except CtlError as e:
        print(f"ctctl: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("ctctl: interrupted", file=sys.stderr)
        return 130
    if answer is not None:
        json.dump(answer, out, indent=2, sort_keys=True)
        out.write("\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
