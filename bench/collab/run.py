#!/usr/bin/env python3
"""Collaboration benchmark: two browsers editing one file, through our edge and through
y-websocket's server.

Ours: ``ct-client share`` hosts a directory on a ``twistd ctedge``; two headless Chromium
guests open the join link (the browser app, js/app, end-to-end encrypted). The peer: a Node
host (``yws-host.mjs``) holds the same directory as a Y.Doc on y-websocket's server; two
Chromium guests open ``page/yws.html`` (the same CodeMirror + y-codemirror.next stack, no
encryption). Measured for each:

* keystroke-to-remote-render latency: a key pressed in browser A (its ``keydown``) until
  browser B's editor DOM shows it (a MutationObserver), p50/p99 over the typed keys;
* time until a guest sees the whole workspace (500 files, 5 MB): from the navigation's start
  to the moment every path is in its document;
* the host process's resident memory with that workspace shared.

Usage: ``python3 bench/collab/run.py [--quick] [--json out.json]``. Every wait is bounded;
only 127.0.0.1 is used; every process started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TYPED_FILE = "bench.txt"

EDGE_ENV = {
    "CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
    "CT_PROBE_INTERVAL": "0",
    "CT_RATE_LIMIT": "1000000",
    "CT_RATE_BURST": "1000000",
}

# Installed before any page script: notes when the page's document first holds ``want``
# paths (performance.now(), i.e. milliseconds since the navigation started), and how long
# our app's name form waited for the (scripted) person: that time is not the server's.
SEEN_PROBE = """
window.__seenAt = null;
window.__formAt = null;
window.__joinAt = null;
window.__want = %d;
document.addEventListener('submit', () => { window.__joinAt = performance.now(); }, true);
const __probe = setInterval(() => {
  if (window.__formAt === null && document.getElementById('ct-join')) window.__formAt = performance.now();
  const hooks = window.ctApp || window.bench;
  try {
    if (hooks && hooks.paths().length >= window.__want) {
      window.__seenAt = performance.now();
      clearInterval(__probe);
    }
  } catch (e) {}
}, 2);
"""
SEEN_MS = """
const waited = window.__joinAt === null ? 0 : window.__joinAt - window.__formAt;
return window.__seenAt === null ? null : window.__seenAt - waited;
"""

OBSERVE_RENDER = """
// The editor's DOM changes when a remote key lands (and when remote carets move: their name
// labels are DOM text too, so the length comes from the editor's state, which CodeMirror has
// updated by the time its DOM changed).
const content = document.querySelector('.cm-content');
const hooks = window.ctApp || window.bench;
window.__renders = [];
new MutationObserver(() => {
  window.__renders.push([performance.timeOrigin + performance.now(), hooks.editorText().length]);
}).observe(content, {subtree: true, childList: true, characterData: true});
return hooks.editorText().length;
"""

# performance.timeOrigin is not comparable between two browser processes (seen: 0.9 s apart),
# Date.now() is (one system clock) but has 1 ms steps: the page's offset from the wall clock,
# as the largest Date.now() - (timeOrigin + now()) over 50 ms of samples, puts the precise
# clock of each browser on the common one.
CLOCK_OFFSET = """
let best = -Infinity;
const end = performance.now() + 50;
while (performance.now() < end) {
  const d = Date.now() - (performance.timeOrigin + performance.now());
  if (d > best) best = d;
}
return best;
"""

OBSERVE_KEYS = """
window.__keys = [];
document.addEventListener('keydown', () => {
  window.__keys.push(performance.timeOrigin + performance.now());
}, {capture: true});
"""


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def prepare_node() -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("bench/collab needs node and npm")
    if not (HERE / "node_modules" / "y-websocket").is_dir():
        log("installing the peer's packages (npm ci) ...")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)
    subprocess.run(["node", "build.mjs"], cwd=HERE, check=True, timeout=120)


def make_workspace(path: Path, files: int, total_bytes: int) -> None:
    """``files`` text files of about ``total_bytes`` in all, in 20 folders, plus the typed file."""
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "return", "value", "self", "import", "def"]
    each = total_bytes // files
    for i in range(files):
        folder = path / f"pkg{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        lines, size = [], 0
        while size < each:
            line = " ".join(rng.choice(words) for _ in range(8)) + "\n"
            lines.append(line)
            size += len(line)
        (folder / f"module{i:03d}.py").write_text("".join(lines))
    (path / TYPED_FILE).write_text("")


class Process:
    """A child process with its output in a file; ``wait_for`` a line, ``stop`` it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: str):
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"ct-bench-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.PIPE)
        self.pid = self.proc.pid

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {pattern!r} within {timeout} s:\n"
                           f"{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


class Browser:
    """Headless Debian Chromium through chromedriver (Selenium)."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="ct-bench-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,900",
                    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                    "--disable-backgrounding-occluded-windows",
                    f"--user-data-dir={self.profile}/profile"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)

    def probe_on_load(self, want: int) -> None:
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": SEEN_PROBE % want})

    def wait(self, script: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.driver.execute_script(script)
            if value:
                return value
            time.sleep(0.02)
        raise RuntimeError(f"browser: {what} not within {timeout} s")

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def stop_all(browsers: list[Browser], procs: list[Process], run_dir: str) -> None:
    """Close the browsers, stop the processes (newest first), remove the run folder."""
    for browser in browsers:
        browser.close()
    for proc in reversed(procs):
        proc.stop()
    shutil.rmtree(run_dir, ignore_errors=True)


def type_and_measure(a: Browser, b: Browser, keys: int, interval: float) -> list[float]:
    """Press ``keys`` keys in A's editor; milliseconds until each shows in B's editor DOM."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    start_len = b.driver.execute_script(OBSERVE_RENDER)
    a.driver.execute_script(OBSERVE_KEYS)
    content = a.driver.find_element(By.CSS_SELECTOR, ".cm-content")
    content.click()
    ActionChains(a.driver).key_down(Keys.CONTROL).send_keys(Keys.END).key_up(Keys.CONTROL).perform()
    a.driver.execute_script("window.__keys = [];")
    for i in range(keys):
        ActionChains(a.driver).send_keys("abcdefghijklmnopqrstuvwxyz"[i % 26]).perform()
        time.sleep(interval)
    b.wait(f"return (window.ctApp || window.bench).editorText().length >= {start_len + keys}",
           30, f"{keys} keys in the other browser")
    offset_a = a.driver.execute_script(CLOCK_OFFSET)
    offset_b = b.driver.execute_script(CLOCK_OFFSET)
    pressed = [t + offset_a for t in a.driver.execute_script("return window.__keys;")]
    renders = [(t + offset_b, n) for t, n in b.driver.execute_script("return window.__renders;")]
    if len(pressed) != keys:
        raise RuntimeError(f"{len(pressed)} keydown events for {keys} keys")
    latencies, r = [], 0
    for i, t in enumerate(pressed):
        while renders[r][1] < start_len + i + 1:
            r += 1
        latencies.append(renders[r][0] - t)
    return latencies


def summary(latencies: list[float], warmup: int) -> dict:
    kept = latencies[warmup:]
    return {"keys": len(kept), "p50_ms": round(statistics.median(kept), 2),
            "p99_ms": round(percentile(kept, 0.99), 2), "max_ms": round(max(kept), 2)}


def run_ours(python: str, workspace: Path, want: int, keys: int, interval: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
    env.update(EDGE_ENV)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    twistd = str(Path(python).parent / "twistd")
    run_dir = tempfile.mkdtemp(prefix="ct-bench-edge-")
    procs, browsers = [], []
    try:
        edge = Process("edge", [twistd, "-n", "--pidfile=", "ctedge"], env, run_dir)
        procs.append(edge)
        port = int(edge.wait_for(r"available on port .*?(\d+) \(HTTP\)").group(1))
        server = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        host = Process("share", [python, "-m", "ct.client.cli", "share", str(workspace),
                                 "--server", server, "--name", "host"], env, run_dir)
        procs.append(host)
        link = host.wait_for(r"(http://\S+/join/\S+#key=\S+)").group(1)
        shared_after = time.monotonic() - started
        log(f"ours: the host shared the workspace after {shared_after:.2f} s")
        a, b = Browser(), Browser()
        browsers += [a, b]
        results = {"host_ready_s": round(shared_after, 2)}
        for n, browser in enumerate((a, b)):
            browser.driver.get(f"{server}/health")
            browser.driver.execute_script(f"localStorage.setItem('ct.name', 'guest{n}')")
            browser.probe_on_load(want)
            browser.driver.get(link)
            browser.wait("return !!document.getElementById('ct-join')", 30, "the name form")
            browser.driver.find_element("id", "ct-join").click()
            seen = browser.wait(SEEN_MS, 120, "the whole workspace")
            results.setdefault("guest_sees_workspace_ms", []).append(round(seen))
        results["host_rss_bytes"] = proc_rss(host.pid)
        for browser in (a, b):
            browser.driver.find_element("css selector", f'button.ct-file[data-path="{TYPED_FILE}"]').click()
            browser.wait(f"return window.ctApp.path === '{TYPED_FILE}' && !!document.querySelector('.cm-content')",
                         30, "the typed file open")
        results["latency"] = type_and_measure(a, b, keys, interval)
        return results
    finally:
        stop_all(browsers, procs, run_dir)


def run_peer(workspace: Path, want: int, keys: int, interval: float) -> dict:
    run_dir = tempfile.mkdtemp(prefix="ct-bench-yws-")
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    procs, browsers = [], []
    try:
        server = Process("y-websocket", ["node", str(HERE / "node_modules/y-websocket/bin/server.cjs")],
                         env, run_dir)
        procs.append(server)
        server.wait_for(r"running at")
        url = f"ws://127.0.0.1:{port}"
        started = time.monotonic()
        host = Process("yws-host", ["node", str(HERE / "yws-host.mjs"), url, "bench", str(workspace)],
                       env, str(HERE))
        procs.append(host)
        host.wait_for(r"ready \d+")
        results = {"host_ready_s": round(time.monotonic() - started, 2)}
        pages = Process("pages", [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1",
                                  "0"], env, str(HERE / "page"))
        procs.append(pages)
        page_port = int(pages.wait_for(r"port (\d+)").group(1))
        page = (f"http://127.0.0.1:{page_port}/yws.html?server={url}&room=bench&file={TYPED_FILE}")
        a, b = Browser(), Browser()
        browsers += [a, b]
        for n, browser in enumerate((a, b)):
            browser.probe_on_load(want)
            browser.driver.get(page + f"&name=guest{n}")
            seen = browser.wait(SEEN_MS, 120, "the whole workspace")
            results.setdefault("guest_sees_workspace_ms", []).append(round(seen))
        results["host_rss_bytes"] = proc_rss(host.pid)
        for browser in (a, b):
            browser.wait("return window.bench.opened", 30, "the typed file open")
        results["latency"] = type_and_measure(a, b, keys, interval)
        return results
    finally:
        stop_all(browsers, procs, run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer keys, a smaller workspace")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    files, size, keys = (100, 1_000_000, 60) if args.quick else (500, 5_000_000, 300)
    warmup = 10 if args.quick else 20
    interval = 0.05
    prepare_node()
    workspace = Path(tempfile.mkdtemp(prefix="ct-bench-workspace-"))
    try:
        make_workspace(workspace, files, size)
        want = files + 1
        log(f"workspace: {want} files, {sum(p.stat().st_size for p in workspace.rglob('*') if p.is_file())} bytes")
        log("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        ours = run_ours(args.python, workspace, want, keys, interval)
        peer = run_peer(workspace, want, keys, interval)
        log("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    table = {"ours": ours, "y-websocket": peer}
    for result in table.values():
        result["latency"] = summary(result["latency"], warmup)
    rows = [
        ("keystroke to remote render p50 (ms)", "latency", "p50_ms"),
        ("keystroke to remote render p99 (ms)", "latency", "p99_ms"),
        ("keystroke to remote render max (ms)", "latency", "max_ms"),
    ]
    print("| metric | ours | y-websocket | ratio (peer ÷ ours; >1 ours better) |")
    print("|---|---|---|---|")
    for label, group, key in rows:
        o, p = ours[group][key], peer[group][key]
        print(f"| {label} | {o} | {p} | {p / o:.2f} |")
    for n in range(2):
        o, p = ours["guest_sees_workspace_ms"][n], peer["guest_sees_workspace_ms"][n]
        print(f"| guest {n + 1} sees the whole workspace (ms from navigation, name form excluded) | {o} | {p} | {p / o:.2f} |")
    o, p = ours["host_rss_bytes"], peer["host_rss_bytes"]
    print(f"| host process RSS (MiB) | {o / 2**20:.1f} | {p / 2**20:.1f} | {p / o:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
