"""``make run``: a local deployment on loopback with embedded defaults.

Starts a locator (SQLite in ``.run/``), an edge registered with it, and the TURN relay
(bundled in the edge), each as its own ``twistd -n`` process, waits until both answer
``/health`` and prints how to use them. Secrets are generated on the first run and kept
in ``.run/dev.env`` (mode 0600). Ctrl-C stops everything; if one process dies, all stop.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys

from twisted.internet import defer, protocol, task
from twisted.logger import Logger

from ct.common.http import health_checker
from ct.common.tokens import team_token

_log = Logger()

DEV_ENV = os.path.join(".run", "dev.env")


def load_or_create_secrets(path: str = DEV_ENV) -> dict[str, str]:
    values = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    values[key] = value
    wanted = {"CT_EDGE_SECRET": 32, "CT_TEAM_SECRET": 32, "CT_TURN_SECRET": 32,
              "CT_DASHBOARD_PASSWORD": 18}
    if all(k in values for k in wanted):
        return values
    for key, size in wanted.items():
        values.setdefault(key, secrets.token_urlsafe(size))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# Secrets of the local deployment started by `make run` (kept between runs).\n")
        for key, value in values.items():
            f.write(f"{key}={value}\n")
    return values


class Child(protocol.ProcessProtocol):
    def __init__(self, name: str, on_exit):
        self.name = name
        self.on_exit = on_exit
        self.ended = defer.Deferred()

    def outReceived(self, data):
        for line in data.decode(errors="replace").splitlines():
            sys.stdout.write(f"[{self.name}] {line}\n")
        sys.stdout.flush()

    errReceived = outReceived

    def processEnded(self, reason):
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(code)
        self.on_exit(self.name, code)


def environments(args, secret_values) -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    locator = {
        **base,
        "CT_HTTP_LISTEN": f"tcp:{args.locator_port}:interface=127.0.0.1",
        "CT_SERVER_URL": f"http://127.0.0.1:{args.locator_port}",
        "CT_DATA_DIR": os.path.abspath(os.path.join(".run", "locator")),
        "CT_EDGE_SECRET": secret_values["CT_EDGE_SECRET"],
        "CT_DASHBOARD_PASSWORD": secret_values["CT_DASHBOARD_PASSWORD"],
        "CT_PROMETHEUS_ENABLED": "true",
    }
    edge = {
        **base,
        "CT_HTTP_LISTEN": f"tcp:{args.edge_port}:interface=127.0.0.1",
        "CT_SERVER_URL": f"http://127.0.0.1:{args.edge_port}",
        "CT_LOCATOR": f"http://127.0.0.1:{args.locator_port}",
        "CT_DATA_DIR": os.path.abspath(os.path.join(".run", "edge1")),
        "CT_EDGE_SECRET": secret_values["CT_EDGE_SECRET"],
        "CT_TEAM_SECRET": secret_values["CT_TEAM_SECRET"],
        "CT_DASHBOARD_PASSWORD": secret_values["CT_DASHBOARD_PASSWORD"],
        "CT_PROMETHEUS_ENABLED": "true",
        "CT_AV_ENABLED": "true",
        "CT_TURN_ENABLED": "true",
        "CT_TURN_SECRET": secret_values["CT_TURN_SECRET"],
        "CT_TURN_HOST": "127.0.0.1",
        "CT_TURN_LISTEN_UDP": f"127.0.0.1:{args.turn_port}",
        "CT_TURN_LISTEN_TCP": f"127.0.0.1:{args.turn_port}",
        "CT_TURN_LISTEN_TLS": "none",
        "CT_TURN_RELAY_ADDRESS": "127.0.0.1",
        # Loopback peers are refused by default; a local trial relays between local peers.
        "CT_TURN_ALLOW_PEERS": "127.0.0.0/8",
    }
    return {"locator": locator, "edge": edge}


@defer.inlineCallbacks
def wait_healthy(reactor, url: str, timeout: float = 60.0):
    check = health_checker(reactor, timeout=2.0)
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        ok = yield check(url)
        if ok:
            return True
        yield task.deferLater(reactor, 0.3, lambda: None)
    raise RuntimeError(f"{url}/health did not answer within {timeout:g} s")


@defer.inlineCallbacks
def run(reactor, args):
    secret_values = load_or_create_secrets()
    envs = environments(args, secret_values)
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    children: dict[str, tuple[Child, object]] = {}
    stopping = []
    done = defer.Deferred()

    def stop_all(code=0):
        if stopping:
            return
        stopping.append(code)
        for _, process in children.values():
            try:
                process.signalProcess("TERM")
            except Exception:
                pass
        d = defer.DeferredList([c.ended for c, _ in children.values()])
        d.addCallback(lambda _: done.callback(code) if not done.called else None)

    def exited(name, code):
        if not stopping:
            print(f"\n{name} exited ({code}); stopping the others", flush=True)
            stop_all(1)

    for name in ("locator", "edge"):
        child = Child(name, exited)
        process = reactor.spawnProcess(child, twistd, [twistd, "-n", "--pidfile=",
                                                        f"ct{name}"], env=envs[name])
        children[name] = (child, process)
        if name == "locator":
            yield wait_healthy(reactor, envs["locator"]["CT_SERVER_URL"])

    reactor.addSystemEventTrigger("before", "shutdown", stop_all)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: reactor.callFromThread(stop_all, 0))
    try:
        yield wait_healthy(reactor, envs["edge"]["CT_SERVER_URL"])
    except RuntimeError as e:
        print(str(e), flush=True)
        stop_all(1)
    if not stopping:
        locator_url = envs["locator"]["CT_SERVER_URL"]
        edge_url = envs["edge"]["CT_SERVER_URL"]
        token = team_token(secret_values["CT_TEAM_SECRET"], "demo")
        print(f"""
==> local deployment is up (secrets in {DEV_ENV})
    locator    {locator_url}   (health {locator_url}/health, metrics {locator_url}/metrics)
    edge       {edge_url}   (health {edge_url}/health)
    TURN       udp/tcp 127.0.0.1:{args.turn_port} (bundled in the edge)
    dashboard  {locator_url}/dashboard   user ctuser, password {secret_values['CT_DASHBOARD_PASSWORD']}
               (the same credentials for the operator API and ctctl)
    team demo  token {token}

    try it:  .venv/bin/ct-client share --locator {locator_url} --name alice path/to/project
             then open the link it prints in a browser (twice, to see each other's cursors)
    or:      .venv/bin/ct-client host --locator {locator_url} --name alice
             .venv/bin/ct-client join '<link printed by the host>' --name bob
             .venv/bin/ct-client presence --locator {locator_url} --team demo --token {token} --user carol
    Ctrl-C stops everything.
""", flush=True)
    code = yield done
    if code:
        raise SystemExit(code)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locator-port", type=int, default=8080)
    parser.add_argument("--edge-port", type=int, default=1080)
    parser.add_argument("--turn-port", type=int, default=3478)
    args = parser.parse_args(argv)
    task.react(run, [args])  # exits the process with run's outcome


if __name__ == "__main__":
    main()
