"""bench/av: calls forced through TURN in headless Chromium, our relay against coturn.

One Chromium page holds N calls: N pairs of RTCPeerConnections with
``iceTransportPolicy: "relay"`` (each end its own allocation on the relay under test),
signalled inside the page, sending Chromium's fake microphone (Opus, ~50 packets/s each
way). For N in 3, 6, 10 and each relay (``twistd ctturn``, then coturn's ``turnserver``
when installed; both pinned to CPU 0 like bench/turn), it reports the relay's CPU per
relayed media packet and the loss the receivers see (``inbound-rtp`` packetsLost).

    PYTHONPATH=. .venv/bin/python bench/av/run.py [--calls 3,6,10] [--seconds 15] [--video]

Everything stays on 127.0.0.1 (relay and relayed addresses, host candidates unused).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench", "turn"))

from run import (  # noqa: E402  (bench/turn/run.py)
    SECRET, cpu_seconds, free_port, self_signed, start_coturn, start_ours, wait_for_stun)

from ct.turn.credentials import rest_credentials  # noqa: E402
from tests.dashboard.browser import Browser, missing  # noqa: E402

PAGE_SCRIPT = """
const [turnUrl, username, credential, calls, video, done] = arguments;
(async () => {
  const media = await navigator.mediaDevices.getUserMedia({audio: true, video});
  const config = {iceServers: [{urls: [turnUrl], username, credential}], iceTransportPolicy: "relay"};
  window.benchPcs = [];
  for (let i = 0; i < calls; i++) {
    const a = new RTCPeerConnection(config), b = new RTCPeerConnection(config);
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
    for (const t of media.getTracks()) { a.addTrack(t.clone(), media); b.addTrack(t.clone(), media); }
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);
    window.benchPcs.push(a, b);
  }
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline && !window.benchPcs.every((pc) => pc.connectionState === "connected")) {
    await new Promise((r) => setTimeout(r, 200));
  }
  done(window.benchPcs.map((pc) => pc.connectionState));
})().catch((e) => done(String(e)));
"""

STATS_SCRIPT = """
const done = arguments[arguments.length - 1];
(async () => {
  let sent = 0, received = 0, lost = 0, relayed = 0;
  for (const pc of window.benchPcs) {
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "outbound-rtp") sent += s.packetsSent || 0;
      if (s.type === "inbound-rtp") { received += s.packetsReceived || 0; lost += s.packetsLost || 0; }
      if (s.type === "local-candidate" && s.candidateType === "relay") relayed += 1;
    });
  }
  done({sent, received, lost, relayed});
})().catch((e) => done({error: String(e)}));
"""


class _Cleanup:
    def __init__(self):
        self.actions = []

    def addCleanup(self, fn, *args):
        self.actions.append((fn, args))

    def run(self):
        for fn, args in reversed(self.actions):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - best effort at the end of a bench
                pass
        self.actions.clear()


def serve_blank() -> tuple[http.server.ThreadingHTTPServer, str]:
    """A page on http://127.0.0.1 (a secure context, so getUserMedia works)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>bench/av</title>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def one_run(name, start, calls, args, url, workdir) -> dict:
    port = free_port()
    proc = start(port, (45000, 45999), workdir)
    cleanup = _Cleanup()
    try:
        wait_for_stun(port)
        browser = Browser(cleanup, extra_args=(
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--disable-features=WebRtcHideLocalIpsWithMdns"))
        driver = browser.driver
        driver.set_script_timeout(60)
        driver.get(url)
        username, credential = rest_credentials(SECRET, "bench", 3600, time.time())
        states = driver.execute_async_script(PAGE_SCRIPT, f"turn:127.0.0.1:{port}?transport=udp",
                                             username, credential, calls, args.video)
        connected = isinstance(states, list) and all(s == "connected" for s in states)
        time.sleep(2)  # past the start-up
        before = driver.execute_async_script(STATS_SCRIPT)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.seconds)
        after = driver.execute_async_script(STATS_SCRIPT)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        sent = after["sent"] - before["sent"]
        received = after["received"] - before["received"]
        lost = after["lost"] - before["lost"]
        return {
            "server": name, "calls": calls, "connected": connected,
            "packets_per_s": round(sent / (t1 - t0)),
            "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 3),
            "cpu_us_per_packet": round((cpu1 - cpu0) * 1e6 / max(1, sent), 1),
            "loss": round(lost / max(1, received + lost), 4),
        }
    finally:
        cleanup.run()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="3,6,10")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--video", action="store_true", help="send the fake camera too")
    parser.add_argument("--only", choices=("ours", "coturn"))
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"bench/av needs Chromium: {reason}")
    import shutil

    servers = [("ours", start_ours)]
    if shutil.which("turnserver"):
        servers.append(("coturn", start_coturn))
    if args.only:
        servers = [s for s in servers if s[0] == args.only]
    server, url = serve_blank()
    results = []
    with tempfile.TemporaryDirectory(prefix="ct-bench-av-") as workdir:
        self_signed(workdir)  # both relays listen for TLS too, as bench/turn starts them
        try:
            for calls in (int(c) for c in args.calls.split(",")):
                for name, start in servers:
                    result = one_run(name, start, calls, args, url, workdir)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            server.shutdown()
    print("| relay | calls | connected | packets/s sent | relay CPU | CPU µs/packet | loss |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['calls']} | {r['connected']} | {r['packets_per_s']} | "
              f"{r['cpu_share']:.1%} | {r['cpu_us_per_packet']} | {r['loss']:.2%} |")


if __name__ == "__main__":
    main()
