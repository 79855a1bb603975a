"""What the browser tests share: an edge process, a host, proxies, and the app in a browser.

Everything here blocks (Selenium, subprocess pipes): the tests are plain ``unittest``
cases, the servers are separate processes (``twistd``, ``node``, ``haproxy``).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.dashboard.browser import ROOT, Browser
from tests.locator.tcpproxy import CuttableProxy
from tests.procutil import Daemon

ARTIFACTS = ROOT / "test-artifacts" / "webclient"
NODE_HOST = Path(__file__).resolve().parent / "node_host.mjs"
JS = ROOT / "js"


def node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS / "node_modules" / "ws").exists():
        return "js/node_modules is missing (cd js && npm ci)"
    return None


def start_edge(case, **env) -> tuple[Daemon, str]:
    """A ``twistd ctedge`` on an ephemeral loopback port; stopped at the end of ``case``."""
    daemon = Daemon("ctedge", {"CT_HTTP_LISTEN": "tcp:0:interface=127.0.0.1",
                               "CT_PROBE_INTERVAL": "0", **env})
    case.addCleanup(daemon.stop)
    return daemon, f"http://127.0.0.1:{daemon.port('HTTP')}"


class NodeHost:
    """A host on the JavaScript client core (``node_host.mjs``) sharing ``files`` from
    memory; commands and answers are JSON lines."""

    def __init__(self, case, server: str, files: dict[str, str], read_only: bool = False):
        reason = node_missing()
        if reason:
            case.skipTest(reason)
        args = ["node", str(NODE_HOST), server, json.dumps(files)]
        if read_only:
            args.append("readOnly")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        case.addCleanup(self.stop)
        self._lines: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next(30)
        self.link = first["link"]
        self.session = first["session"]

    def _read(self):
        for line in self.proc.stdout:
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
            else:
                self._lines.put(message)

    def _next(self, timeout: float = 10.0) -> dict:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node host: no answer within {timeout} s "
                                 f"(exit {self.proc.poll()}): {self.proc.stderr.read() if self.proc.poll() is not None else ''}") from None

    def command(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._next()

    def write(self, path: str, text: str) -> None:
        self.command(op="write", path=path, text=text)

    def append(self, path: str, text: str) -> None:
        self.command(op="append", path=path, text=text)

    def read(self, path: str) -> str | None:
        return self.command(op="read", path=path)["text"]

    def open(self, path: str) -> None:
        """The host's awareness names ``path`` as its open file."""
        self.command(op="open", path=path)

    def policy(self, **policy) -> None:
        self.command(op="policy", policy=policy)

    def participants(self) -> list[dict]:
        return self.command(op="participants")["participants"]

    def kick(self, participant: int) -> None:
        self.command(op="kick", participant=participant)

    def end(self) -> None:
        self.command(op="end")

    def stop_screen(self, participant: int) -> None:
        """The host asks ``participant`` to stop sharing its screen (av-signal ``screen``)."""
        assert self.command(op="stop-screen", participant=participant)["ok"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except Exception:
                pass


class ShareHost:
    """``ct-client share DIR`` as a child process: the host sharing a directory on disk.

    Commands go to its standard input (``/kick``, ``/end``, ``/readonly``); the tests
    read and write the directory like any editor would."""

    def __init__(self, case, server: str, directory: Path, files: dict[str, str],
                 name: str = "Hannah Host", args=(), locator: bool = False):
        """``locator``: ``server`` is a locator (placement, and a link to the locator)."""
        self.dir = Path(directory)
        for path, text in files.items():
            (self.dir / path).parent.mkdir(parents=True, exist_ok=True)
            (self.dir / path).write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CT_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ct.client.cli", "share", str(self.dir),
             "--locator" if locator else "--server", server, "--name", name, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, env=env, cwd=str(self.dir.parent))
        case.addCleanup(self.stop)
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.link = wait_until(self._link, 30, "the join link printed by ct-client share")
        self.session = self.link.split("/join/", 1)[1].split("?", 1)[0]

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def _link(self):
        if self.proc.poll() is not None:
            raise AssertionError("ct-client share exited:\n" + "\n".join(self.output))
        for line in self.output:
            if "/join/" in line and line.startswith(("http://", "https://")):
                return line.strip()
        return None

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, path: str) -> str | None:
        try:
            return (self.dir / path).read_text()
        except FileNotFoundError:
            return None

    def write(self, path: str, text: str) -> None:
        """Like an editor saving: a new file, renamed over the old one."""
        target = self.dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.saving")
        temporary.write_text(text)
        os.replace(temporary, target)

    def append(self, path: str, text: str) -> None:
        self.write(path, self.read(path) + text)

    def kick(self, participant: int) -> None:
        self.command(f"/kick {participant}")

    def end(self) -> None:
        self.command("/end")

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # end of input: the host leaves
            except OSError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:
            self.proc.stdout.close()
        except Exception:
            pass


def wait_until(predicate, timeout: float, what: str, step: float = 0.05):
    """Poll ``predicate`` (blocking) until true; fail on time-out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - a page still loading
            last = e
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


class AppPage:
    """The app in one headless Chromium."""

    def __init__(self, case, extra_args=()):
        self.browser = Browser(case, extra_args=extra_args, artifacts=ARTIFACTS)
        self.driver = self.browser.driver

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def join(self, link: str, name: str, timeout: float = 20.0, shot: str | None = None) -> None:
        """Open ``link``, give ``name``, join; ``shot``: a screenshot of the filled prompt."""
        self.open(link)
        self.browser.wait(lambda: self.browser.find("#ct-name"), timeout, "the name prompt")
        field = self.browser.find("#ct-name")
        field.clear()
        field.send_keys(name)
        if shot:
            self.screenshot(shot)
        self.browser.find("#ct-join").click()
        self.wait_status("connected", timeout)

    def status(self) -> str | None:
        return self.js("return window.ctApp ? window.ctApp.status : null")

    def wait_status(self, *states: str, timeout: float = 20.0) -> None:
        wait_until(lambda: self.status() in states, timeout, f"app status {states}")

    def page_kind(self) -> str | None:
        return self.js("return document.body.dataset.ctPage || null")

    def wait_page(self, kind: str, timeout: float = 20.0) -> None:
        wait_until(lambda: self.page_kind() == kind, timeout, f"page {kind!r}")

    def path(self) -> str | None:
        return self.js("return window.ctApp.path")

    def editor_text(self) -> str | None:
        return self.js("return window.ctApp.editorText()")

    def open_file(self, path: str) -> None:
        def click():  # the tree is redrawn as files and people change: find it afresh
            self.browser.find(f'button.ct-file[data-path="{path}"]').click()
            return True

        wait_until(click, 10, f"{path} in the file tree")
        wait_until(lambda: self.path() == path, 10, f"{path} open")

    def type_at_end(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        content = self.browser.find(".cm-content")
        content.click()
        content.send_keys(Keys.CONTROL, Keys.END)
        content.send_keys(text)

    def people(self) -> list[str]:
        return self.js("return [...document.querySelectorAll('#ct-people .ct-person-name')]"
                       ".map(e => e.firstChild.textContent)")

    def caret_names(self) -> list[str]:
        return self.js("return [...document.querySelectorAll('.cm-ySelectionInfo')]"
                       ".map(e => e.textContent)")

    def people_colours(self) -> dict[str, str]:
        """Name -> the computed colour of the swatch beside it in the people list."""
        return dict(self.js(
            "return [...document.querySelectorAll('#ct-people .ct-person')].map(e => ["
            "e.querySelector('.ct-name-text').textContent,"
            "getComputedStyle(e.querySelector('.ct-swatch')).backgroundColor])"))

    def select_first_line(self) -> None:
        """Selects the open file's first line with the keyboard (a range, not a caret)."""
        from selenium.webdriver.common.keys import Keys

        content = self.browser.find(".cm-content")
        content.click()
        content.send_keys(Keys.CONTROL, Keys.HOME)
        content.send_keys(Keys.SHIFT, Keys.END)

    def remote_selections(self) -> list[str]:
        """The text of the peers' selections the editor draws (one entry per marked run)."""
        return self.js("return [...document.querySelectorAll('.cm-ySelection')]"
                       ".map(e => e.textContent)")

    def shown_text(self) -> str:
        """What the editor shows: the text of its rendered lines."""
        return self.js("return [...document.querySelectorAll('.cm-content .cm-line')]"
                       ".map(e => e.textContent).join('\\n')")

    def screenshot(self, name: str) -> Path:
        return self.browser.screenshot(name)


class CapturingProxy(CuttableProxy):
    """A cuttable proxy that also keeps every byte it forwards, per direction, both in all
    (``upstream``, ``downstream``) and per connection (``connections``, in accept order)."""

    def __init__(self, target_host: str, target_port: int):
        self.upstream = bytearray()  # browser -> edge
        self.downstream = bytearray()  # edge -> browser
        self.connections: list[CapturedConnection] = []
        self._by_client: dict = {}  # the browser-side socket -> its CapturedConnection
        self._capture_lock = threading.Lock()
        super().__init__(target_host, target_port)

    def _pump(self, source, sink):
        try:
            from_edge = source.getpeername()[1] == self.target[1]
        except OSError:
            return
        client = sink if from_edge else source
        with self._capture_lock:
            connection = self._by_client.get(client)
            if connection is None:
                connection = self._by_client[client] = CapturedConnection()
                self.connections.append(connection)
        direction = self.downstream if from_edge else self.upstream
        mine = connection.downstream if from_edge else connection.upstream
        super()._pump(source, _Recording(sink, direction, self._capture_lock, mine))

    def captured(self) -> list["CapturedConnection"]:
        """A copy of the connections so far (the pumps keep appending)."""
        with self._capture_lock:
            return [CapturedConnection(bytearray(c.upstream), bytearray(c.downstream))
                    for c in self.connections]


class CapturedConnection:
    """The bytes of one browser connection through a :class:`CapturingProxy`."""

    def __init__(self, upstream: bytearray | None = None, downstream: bytearray | None = None):
        self.upstream = bytearray() if upstream is None else upstream  # browser -> edge
        self.downstream = bytearray() if downstream is None else downstream  # edge -> browser

    @property
    def is_websocket(self) -> bool:
        return bytes(self.downstream[:12]) in (b"HTTP/1.1 101", b"HTTP/1.0 101")

    def frames(self, upstream: bool) -> list["WsFrame"]:
        """The websocket frames of one direction, after the opening handshake (a connection
        that is not a websocket has none)."""
        if not self.is_websocket:
            return []
        stream = bytes(self.upstream if upstream else self.downstream)
        end = stream.find(b"\r\n\r\n")
        return parse_ws_frames(stream[end + 4:], masked=upstream) if end >= 0 else []


class WsFrame:
    """One websocket frame: ``payload`` unmasked (and inflated when ``rsv1``)."""

    def __init__(self, opcode: int, fin: bool, rsv1: bool, payload: bytes):
        self.opcode, self.fin, self.rsv1, self.payload = opcode, fin, rsv1, payload

    def __repr__(self):
        return (f"WsFrame(opcode={self.opcode}, fin={self.fin}, rsv1={self.rsv1}, "
                f"{len(self.payload)} B)")


def parse_ws_frames(stream: bytes, masked: bool) -> list[WsFrame]:
    """RFC 6455 frames from one direction of a connection; a frame cut off at the end (the
    capture stopped mid-frame) is left out. A frame whose masking is not what the
    direction requires fails: the parse would be wrong."""
    import zlib

    frames: list[WsFrame] = []
    inflate = zlib.decompressobj(-15)  # permessage-deflate, should anyone negotiate it
    i = 0
    while i + 2 <= len(stream):
        first, second = stream[i], stream[i + 1]
        length, is_masked = second & 0x7F, bool(second & 0x80)
        if is_masked != masked:
            raise AssertionError(f"websocket frame at byte {i}: masked={is_masked}, "
                                 f"expected {masked}")
        j = i + 2
        if length == 126:
            length, j = int.from_bytes(stream[j:j + 2], "big"), j + 2
        elif length == 127:
            length, j = int.from_bytes(stream[j:j + 8], "big"), j + 8
        mask = stream[j:j + 4] if masked else b""
        j += 4 if masked else 0
        if j + length > len(stream):
            break
        payload = stream[j:j + length]
        if masked:
            payload = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        rsv1 = bool(first & 0x40)
        if rsv1:
            payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
        frames.append(WsFrame(first & 0x0F, bool(first & 0x80), rsv1, payload))
        i = j + length
    return frames


def encoded_forms(needle: bytes) -> dict[str, bytes]:
    """How ``needle`` could travel disguised: raw, base64 (standard and URL-safe, at each of
    the three alignments, with the characters its neighbours would change left off) and
    hex (lower and upper case)."""
    import base64

    forms = {"raw": needle, "hex": needle.hex().encode(), "HEX": needle.hex().upper().encode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + needle)
        # Characters mixing neighbour bits: the first group when shifted, the last group.
        core = encoded[4 if shift else 0:len(encoded) - 4 if len(encoded) > 8 else len(encoded)]
        core = core.rstrip(b"=")
        forms[f"base64@{shift}"] = core
        forms[f"base64url@{shift}"] = core.replace(b"+", b"-").replace(b"/", b"_")
    return forms


class _Recording:
    def __init__(self, sock, buffer, lock, connection_buffer=None):
        self._sock, self._buffer, self._lock = sock, buffer, lock
        self._connection_buffer = connection_buffer

    def sendall(self, data):
        with self._lock:
            self._buffer.extend(data)
            if self._connection_buffer is not None:
                self._connection_buffer.extend(data)
        return self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def unmask_client_frames(stream: bytes) -> bytes:
    """The payloads of the websocket frames a browser sent (masked by the browser), joined;
    HTTP requests before an upgrade are returned as they are."""
    out = bytearray()
    i = 0
    while i < len(stream):
        if stream.startswith(b"GET ", i):  # a request: up to the blank line
            end = stream.find(b"\r\n\r\n", i)
            if end < 0:
                out += stream[i:]
                break
            out += stream[i:end + 4]
            i = end + 4
            continue
        if i + 2 > len(stream):
            break
        length = stream[i + 1] & 0x7F
        masked = stream[i + 1] & 0x80
        j = i + 2
        if length == 126:
            length = int.from_bytes(stream[j:j + 2], "big")
            j += 2
        elif length == 127:
            length = int.from_bytes(stream[j:j + 8], "big")
            j += 8
        mask = stream[j:j + 4] if masked else b"\0\0\0\0"
        j += 4 if masked else 0
        payload = stream[j:j + length]
        out += bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
        i = j + length
    return bytes(out)


class ConnectionCapturingProxy(CuttableProxy):
    """A cuttable proxy that keeps what it forwards per connection and direction
    (``connections``: one ``{"upstream", "downstream"}`` pair of byte arrays per accepted
    connection, in order), so a stream protocol can be parsed connection by connection
    even after a cut made the client connect again."""

    def __init__(self, target_host: str, target_port: int):
        self.connections: list[dict[str, bytearray]] = []
        self._capture_lock = threading.Lock()
        self._by_socket: dict = {}  # client socket (kept, so never reused) -> its capture
        super().__init__(target_host, target_port)

    def forwarded(self) -> int:
        """Bytes forwarded so far, both directions, every connection."""
        with self._capture_lock:
            return sum(len(c["upstream"]) + len(c["downstream"]) for c in self.connections)

    def _pump(self, source, sink):
        try:
            from_target = source.getpeername()[1] == self.target[1]
        except OSError:
            return
        client = sink if from_target else source
        with self._capture_lock:
            capture = self._by_socket.get(client)
            if capture is None:
                capture = {"upstream": bytearray(), "downstream": bytearray()}
                self._by_socket[client] = capture
                self.connections.append(capture)
        direction = capture["downstream" if from_target else "upstream"]
        super()._pump(source, _Recording(sink, direction, self._capture_lock))
