"""Calls in the browser app (issue 12): headless Chromium with fake devices, a real edge
with the bundled TURN relay, a host on the JavaScript client core.

ICE stays on loopback: Chromium gathers loopback candidates (``--allow-loopback-in-
peer-connection``) and the app signals only candidates on 127.0.0.1 (the call's
``candidateFilter``), so no packet goes to another address of this machine.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import unittest
from pathlib import Path

import pytest

from tests.dashboard.browser import missing
from tests.edge.test_audio_video import free_port
from tests.tlsutil import write_self_signed
from tests.webclient.support import (AppPage, ConnectionCapturingProxy, NodeHost, start_edge,
                                     wait_until)

pytestmark = pytest.mark.slow

FILES = {"README.md": "# Call\n"}
MEDIA_FLAGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
               "--disable-features=WebRtcHideLocalIpsWithMdns",
               "--auto-select-desktop-capture-source=Entire screen")
LOOPBACK_ONLY = "c => / 127\\.0\\.0\\.1 /.test(c)"


def av_edge(case, **env):
    port = free_port()
    daemon, url = start_edge(
        case, CT_AV_ENABLED="true", CT_TURN_ENABLED="true", CT_TURN_HOST="127.0.0.1",
        CT_TURN_LISTEN_UDP=f"127.0.0.1:{port}", CT_TURN_LISTEN_TCP=f"127.0.0.1:{port}",
        CT_TURN_RELAY_ADDRESS="127.0.0.1", CT_TURN_RELAY_PORTS="41000-41400",
        CT_TURN_ALLOW_PEERS="127.0.0.1/32", CT_PROMETHEUS_ENABLED="true",
        **{"CT_TURN_LISTEN_TLS": "none", **env})
    return daemon, url, port


class CallPage(AppPage):
    """The app in a browser with fake media devices."""

    def __init__(self, case, flags=MEDIA_FLAGS):
        super().__init__(case, extra_args=flags)
        self.driver.set_script_timeout(20)

    def panel_shown(self) -> bool:
        return self.js("return !document.querySelector('#ct-av').hidden")

    def join_call(self, policy: str = "all", transport: str | None = None,
                  turn_port: int | None = None, tls: bool = False) -> None:
        """``policy`` "all": direct (STUN only); "relay": through TURN, ``transport``: only
        TURN URLs of it; ``turn_port``: TURN through this port (a proxy); ``tls``: only
        ``turns:`` URLs."""
        wait_until(self.panel_shown, 10, "the call panel shown")
        self.js(f"const call = window.ctApp.av.call; call.candidateFilter = {LOOPBACK_ONLY};"
                "call.iceTransportPolicy = arguments[0];"
                "const transport = arguments[1], port = arguments[2], tls = arguments[3];"
                "if (transport) call.filterIceServers = (list) => list.map((s) => ({...s,"
                " urls: [].concat(s.urls).filter((u) => u.endsWith('transport=' + transport)"
                " && (!tls || u.startsWith('turns:')))"
                ".map((u) => port ? u.replace(/:\\d+\\?/, ':' + port + '?') : u)}))"
                ".filter((s) => s.urls.length);"
                "if (transport === null)"
                " call.filterIceServers = (list) => list.filter((s) => !s.username);",
                policy, transport, turn_port, tls)
        self.browser.find("#ct-av-join").click()
        wait_until(lambda: self.js("return window.ctApp.av.call.inCall"), 10, "in the call")

    def stats(self) -> list[dict]:
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.ctApp.av.call.stats().then(done, (e) => done([{error: String(e)}]));")

    @property
    def participant(self) -> int:
        return self.js("return window.ctApp.participant")

    def from_peer(self, participant: int) -> dict:
        """This page's stats of its connection with ``participant``."""
        return next(s for s in self.stats() if s["participant"] == participant)

    def member_row(self, participant: int, attribute: str) -> str | None:
        """An attribute of ``participant``'s row in the call panel's member list."""
        return self.js("const row = document.querySelector("
                       "`.ct-av-member[data-participant=\"${arguments[0]}\"]`);"
                       "return row ? row.getAttribute(arguments[1]) : null",
                       participant, attribute)

    def peers_connected(self, count: int) -> bool:
        stats = self.stats()
        if len(stats) == count and all(s.get("connectionState") == "connected" for s in stats):
            return True
        self.last_states = [(s.get("participant"), s.get("connectionState"),
                             s.get("iceConnectionState"),
                             s.get("signalingState"), s.get("candidates")) for s in stats]
        return False

    def wait_inbound_audio(self, count: int, timeout: float = 30.0) -> list[dict]:
        """Each of ``count`` peers' inbound audio grows and has been heard (level > 0)."""
        try:
            wait_until(lambda: self.peers_connected(count), timeout, f"{count} peers connected")
        except AssertionError as e:
            raise AssertionError(f"{e}: {getattr(self, 'last_states', None)}, warnings "
                                 f"{self.js('return window.ctApp.av.warnings')}") from None
        first = {s["participant"]: s for s in self.stats()}
        heard = set()

        def grown():
            now = self.stats()
            for s in now:
                before = first.get(s["participant"])
                if (before and s["audio"]["packets"] > before["audio"]["packets"]
                        and s["audio"]["bytes"] > before["audio"]["bytes"]
                        and (s["audio"]["audioLevel"] > 0 or s["audio"]["totalAudioEnergy"] > 0)):
                    heard.add(s["participant"])
            return len(heard) == count and now

        return wait_until(grown, timeout, f"inbound audio from {count} peers", step=0.3)


class CallTestCase(unittest.TestCase):
    def setUp(self):
        reason = missing()
        if reason:
            self.skipTest(reason)

    def ada_and_bob_in_a_call(self):
        """A host sharing FILES on an A/V edge; Ada and Bob joined and in its call."""
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        a, b = CallPage(self), CallPage(self)
        a.join(host.link, "Ada")
        b.join(host.link, "Bob")
        a.join_call()
        b.join_call()
        return url, host, a, b


class MeshCallTests(CallTestCase):
    def test_two_then_three_participants_hear_each_other(self):
        url, host, a, b = self.ada_and_bob_in_a_call()
        for page in (a, b):
            stats = page.wait_inbound_audio(1)
            self.assertFalse(stats[0]["relayed"], stats)  # loopback host candidates: direct
        a.screenshot("av-01-two-in-call")
        c = CallPage(self)
        c.join(host.link, "Cleo")
        c.join_call()
        for page in (a, b, c):
            page.wait_inbound_audio(2)
        # Everyone lists everyone in the call.
        for page in (a, b, c):
            wait_until(lambda: len(page.driver.find_elements("css selector", ".ct-av-member")) == 3,
                       5, "three members shown")
        # A speaking indicator lights for someone (the fake microphone beeps).
        wait_until(lambda: a.js("return !!document.querySelector('[data-speaking=true]')"),
                   10, "a speaking indicator")
        a.screenshot("av-02-three-in-call")
        # The clients' reports reach the edge's metrics: one call, three people, direct.
        wait_metrics(url, {"codetogether_av_calls": 1, "codetogether_av_participants_in_calls": 3,
                           'codetogether_av_peer_connections{path="direct"}': 6})

        # Cleo leaves: the others close their connection to her.
        c.browser.find("#ct-av-join").click()
        for page in (a, b):
            wait_until(lambda: len(page.stats()) == 1, 10, "the leaver's connection closed")

    def test_a_screen_share_arrives_at_everyone_and_only_one_shares_at_a_time(self):
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        a, b, c = CallPage(self), CallPage(self), CallPage(self)
        for page, name in ((a, "Ada"), (b, "Bob"), (c, "Cleo")):
            page.join(host.link, name)
            page.join_call()
        for page in (a, b, c):
            page.wait_inbound_audio(2)
        ada = a.participant
        a.browser.find("#ct-av-screen").click()
        wait_until(lambda: a.js("return !!window.ctApp.av.call.screenStream"), 10, "A shares")
        for page in (b, c):  # both others decode it and show it as a screen
            wait_until(lambda: page.from_peer(ada)["video"]["framesDecoded"] > 5, 20,
                       "screen frames decoded from A")
            wait_until(lambda: page.js("return !!document.querySelector("
                                       "'video[data-kind=screen]')"), 10, "the screen shown")
            self.assertTrue(page.js("return document.querySelector('#ct-av-screen').disabled"))
        b.screenshot("av-03-screen-share")
        # One sharer at a time: C's button is disabled, and the call refuses a second share.
        self.assertFalse(c.js("return window.ctApp.av.call.startScreen(new MediaStream())"))
        a.browser.find("#ct-av-screen").click()  # stop
        for page in (b, c):
            wait_until(lambda: page.js("return window.ctApp.av.call.sharer === null"), 10,
                       "share over")
            self.assertFalse(page.js("return document.querySelector('#ct-av-screen').disabled"))

        # The host stops a share: both others see it end.
        a.browser.find("#ct-av-screen").click()
        for page in (b, c):
            wait_until(lambda: page.js("return window.ctApp.av.call.sharer") == ada, 10,
                       "A shares again")
        host.stop_screen(ada)
        wait_until(lambda: a.js("return window.ctApp.av.call.screenStream") is None, 10,
                   "the host stopped A's share")
        for page in (b, c):
            wait_until(lambda: page.js("return window.ctApp.av.call.sharer") is None, 10,
                       "share over")
        wait_until(lambda: "host stopped your screen share" in a.browser.text("#ct-toasts"), 5,
                   "A told why")
        c.browser.find("#ct-av-join").click()  # C leaves: the rest is between A and B

        # The camera is off by default; turned on, B decodes it as a camera, not a screen.
        self.assertFalse(a.js("return window.ctApp.av.call.cameraOn"))
        wait_until(lambda: len(b.stats()) == 1, 10, "C's connection closed")
        decoded = b.from_peer(ada)["video"]["framesDecoded"]
        a.browser.find("#ct-av-camera").click()
        wait_until(lambda: b.from_peer(ada)["video"]["framesDecoded"] > decoded + 10, 20,
                   "camera frames decoded in B")
        wait_until(lambda: b.js("return !!document.querySelector('video[data-kind=camera]')"), 10,
                   "the camera shown in B")
        # Muting is shown to the others.
        a.browser.find("#ct-av-mute").click()
        wait_until(lambda: b.js("return window.ctApp.av.call.members.get(arguments[0]).muted", ada),
                   10, "A muted, as B sees it")


class SpeakingTests(CallTestCase):
    def test_the_others_see_who_speaks_and_not_when_muted(self):
        """The fake microphone plays a tone: B's panel shows A speaking; muted, never."""
        _, host, a, b = self.ada_and_bob_in_a_call()
        b.wait_inbound_audio(1)
        ada = a.participant
        wait_until(lambda: b.member_row(ada, "data-speaking") == "true", 10, "A speaking, in B")
        b.screenshot("av-08-speaking")
        a.browser.find("#ct-av-mute").click()
        wait_until(lambda: b.js("return window.ctApp.av.call.members.get(arguments[0]).muted",
                                ada), 10, "A muted, as B sees it")
        wait_until(lambda: b.member_row(ada, "data-speaking") == "false", 5, "A quiet, in B")
        deadline = time.monotonic() + 3  # several beeps of the fake tone, polled every 0.3 s
        while time.monotonic() < deadline:
            self.assertEqual(b.member_row(ada, "data-speaking"), "false", "muted A speaks")
            time.sleep(0.1)
        # What B receives from muted A is silence (comfort noise at most), once B's jitter
        # buffer has played out what was sent before the mute.
        wait_until(lambda: b.from_peer(ada)["audio"]["audioLevel"] < 0.02, 10,
                   "silence from muted A")
        a.browser.find("#ct-av-mute").click()
        wait_until(lambda: b.member_row(ada, "data-speaking") == "true", 10,
                   "A speaking again, in B")


class RelayedCallTests(CallTestCase):
    def relayed_call(self, transport: str, tls: bool = False):
        env, flags = {}, MEDIA_FLAGS
        if tls:
            work = Path(tempfile.mkdtemp(prefix="ct-av-tls-"))
            self.addCleanup(shutil.rmtree, work, True)
            cert, key = write_self_signed(work, "127.0.0.1")
            env = {"CT_TURN_LISTEN_TLS": f"127.0.0.1:{free_port()}", "CT_TURN_TLS_CERT": str(cert),
                   "CT_TURN_TLS_KEY": str(key)}
            flags = (*MEDIA_FLAGS, "--ignore-certificate-errors")  # a self-signed test certificate
        daemon, url, _ = av_edge(self, **env)
        host = NodeHost(self, url, FILES)
        a, b = CallPage(self, flags), CallPage(self, flags)
        a.join(host.link, "Ada")
        b.join(host.link, "Bob")
        a.join_call("relay", transport, tls=tls)
        b.join_call("relay", transport, tls=tls)
        for page in (a, b):
            stats = page.wait_inbound_audio(1, timeout=40)
            self.assertTrue(stats[0]["relayed"], stats)
            self.assertEqual(stats[0]["relayProtocol"], "tls" if tls else transport, stats)
        wait_metrics(url, {'codetogether_av_peer_connections{path="relayed"}': 2})
        metrics = metrics_text(url)
        self.assertGreaterEqual(metric(metrics, "codetogether_turn_allocations_total"), 2, metrics)
        self.assertGreater(metric(metrics, "codetogether_turn_relayed_bytes_total"), 1000, metrics)

    def test_forced_relay_over_udp(self):
        self.relayed_call("udp")

    def test_three_people_relayed_over_udp(self):
        """The same three-person call as the direct one, forced through the bundled relay
        over UDP: everyone hears both others through it."""
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        pages = [CallPage(self) for _ in range(3)]
        for page, name in zip(pages, ("Ada", "Bob", "Cleo")):
            page.join(host.link, name)
            page.join_call("relay", "udp")
        for page in pages:
            stats = page.wait_inbound_audio(2, timeout=40)
            self.assertEqual([(s["relayed"], s["relayProtocol"]) for s in stats],
                             [(True, "udp")] * 2, stats)
            self.assertEqual(len({s["participant"] for s in stats}), 2, stats)
        wait_metrics(url, {"codetogether_av_calls": 1, "codetogether_av_participants_in_calls": 3,
                           'codetogether_av_peer_connections{path="relayed"}': 6})
        metrics = metrics_text(url)
        # One allocation per peer connection and side (6 connections, 2 sides).
        self.assertGreaterEqual(metric(metrics, "codetogether_turn_allocations_total"), 6, metrics)
        self.assertGreater(metric(metrics, "codetogether_turn_relayed_bytes_total"), 20000, metrics)

    def test_forced_relay_over_tcp_only(self):
        self.relayed_call("tcp")

    def test_forced_relay_over_tls(self):
        self.relayed_call("tcp", tls=True)


# Chromium's fake cameras: fake_device_0 (I420), _1 (Y16, a depth format WebRTC never
# encodes: not a camera to switch to) and _2 (MJPEG). The fake microphones are 3 anyway.
THREE_CAMERAS = tuple(f + "=device-count=3" if f == "--use-fake-device-for-media-stream" else f
                      for f in MEDIA_FLAGS)


def transceivers(page: CallPage) -> list:
    """Diagnostics: each peer connection's transceivers and video counters, and warnings."""
    return page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; (async () => { const out = [];"
        "for (const p of window.ctApp.av.call.peers.values()) {"
        " const video = []; (await p.pc.getStats()).forEach((s) => {"
        "  if (s.kind === 'video' && /bound-rtp/.test(s.type)) video.push([s.type, s.mid,"
        "   s.framesDecoded ?? s.framesEncoded, s.packetsReceived ?? s.packetsSent]); });"
        " out.push({signaling: p.pc.signalingState, video, t: p.pc.getTransceivers().map((t) =>"
        "  [t.mid, t.direction, t.currentDirection, t.sender.track?.label,"
        "   t.receiver.track.readyState, t.receiver.track.muted])}); }"
        "done({peers: out, warnings: window.ctApp.av.warnings}); })()")


class DeviceTests(CallTestCase):
    def sent(self, page: CallPage, kind: str) -> list[str]:
        """The labels of the ``kind`` tracks ``page`` sends, one per peer connection."""
        return page.js("return [...window.ctApp.av.call.peers.values()].flatMap((p) =>"
                       " p.pc.getSenders().filter((s) => s.track && s.track.kind === arguments[0]"
                       " && s.track.readyState === 'live').map((s) => s.track.label))", kind)

    def choose(self, page: CallPage, select: str, label: str) -> None:
        """Picks the option named ``label`` in the ``select`` (as a person would)."""
        from selenium.webdriver.support.ui import Select

        wait_until(lambda: label in page.js("return [...document.querySelectorAll(arguments[0]"
                                            " + ' option')].map((o) => o.textContent)", select),
                   10, f"{label} offered in {select}")
        page.js("document.querySelector('.ct-av-devices').open = true")
        Select(page.browser.find(select)).select_by_visible_text(label)

    def test_another_microphone_and_camera_are_sent_and_still_decoded(self):
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        a, b = CallPage(self, THREE_CAMERAS), CallPage(self)
        a.join(host.link, "Ada")
        b.join(host.link, "Bob")
        a.join_call()
        b.join_call()
        b.wait_inbound_audio(1)
        ada = a.participant
        self.assertEqual(self.sent(a, "audio"), ["Fake Default Audio Input"])

        # Another microphone: the sender's track is the new device's, B still hears A.
        self.choose(a, "#ct-av-mic", "Fake Audio Input 1")
        wait_until(lambda: self.sent(a, "audio") == ["Fake Audio Input 1"], 10,
                   "the chosen microphone sent")
        b.wait_inbound_audio(1)

        # The camera on, then another camera: B keeps decoding A's video.
        a.browser.find("#ct-av-camera").click()
        wait_until(lambda: self.sent(a, "video") == ["fake_device_0"], 10, "camera 0 sent")
        wait_until(lambda: b.from_peer(ada)["video"]["framesDecoded"] > 10, 20,
                   "camera 0 decoded in B")
        transceivers_before = len(a.js("return [...window.ctApp.av.call.peers.values()][0]"
                                       ".pc.getTransceivers()"))
        self.choose(a, "#ct-av-cam", "fake_device_2")
        wait_until(lambda: self.sent(a, "video") == ["fake_device_2"], 10, "camera 2 sent")
        self.assertTrue(a.js("return window.ctApp.av.call.cameraOn"))
        self.assertEqual(len(a.js("return [...window.ctApp.av.call.peers.values()][0]"
                                  ".pc.getTransceivers()")), transceivers_before,
                         "the switch renegotiated (a transceiver more)")
        switched = b.from_peer(ada)["video"]["framesDecoded"]
        try:
            wait_until(lambda: b.from_peer(ada)["video"]["framesDecoded"] > switched + 30, 20,
                       "B keeps decoding A's video after the switch")
        except AssertionError as e:
            raise AssertionError(f"{e}: A {transceivers(a)}, B {transceivers(b)}") from None
        wait_until(lambda: b.js("return document.querySelectorAll('video[data-kind=camera]')"
                                ".length") == 1, 10, "one camera shown in B")
        self.assertEqual(a.browser.text("#ct-av-message"), "")
        a.screenshot("av-06-devices")


class VisibilityTests(CallTestCase):
    def test_no_call_panel_without_av_and_when_the_host_turns_calls_off(self):
        _, url = start_edge(self)  # CT_AV_ENABLED defaults to false
        host = NodeHost(self, url, FILES)
        page = CallPage(self)
        page.join(host.link, "Ada")
        time.sleep(1)
        self.assertFalse(page.panel_shown())
        self.assertIsNone(page.js("return window.ctApp.av.call.connection.iceServers"))

        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        page = CallPage(self)
        page.join(host.link, "Bob")
        wait_until(page.panel_shown, 10, "the call panel with A/V on")
        page.join_call()
        host.policy(av=False)
        wait_until(lambda: not page.panel_shown(), 10, "the panel hidden by the host's policy")
        self.assertFalse(page.js("return window.ctApp.av.call.inCall"))

    def test_a_refused_microphone_is_said_clearly(self):
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        page = CallPage(self, flags=("--use-fake-device-for-media-stream",
                                     "--deny-permission-prompts"))
        page.join(host.link, "Ada")
        wait_until(page.panel_shown, 10, "the call panel")
        page.browser.find("#ct-av-join").click()
        wait_until(lambda: page.browser.text("#ct-av-message"), 10, "a message")
        self.assertIn("refused the microphone", page.browser.text("#ct-av-message"))
        self.assertFalse(page.js("return window.ctApp.av.call.inCall"))
        page.screenshot("av-04-refused")

    def test_a_refused_camera_and_a_refused_screen_share_are_said_clearly(self):
        _, url, _ = av_edge(self)
        host = NodeHost(self, url, FILES)
        # No fake UI: the browser asks, and refuses every prompt, except the microphone this
        # origin was granted (as a person who allowed only the microphone).
        page = CallPage(self, flags=("--use-fake-device-for-media-stream",
                                     "--deny-permission-prompts",
                                     "--allow-loopback-in-peer-connection"))
        page.join(host.link, "Ada")
        page.driver.execute_cdp_cmd("Browser.grantPermissions",
                                    {"origin": url, "permissions": ["audioCapture"]})
        page.join_call()
        page.browser.find("#ct-av-camera").click()
        wait_until(lambda: page.browser.text("#ct-av-message"), 10, "a message")
        self.assertIn("refused the camera", page.browser.text("#ct-av-message"))
        self.assertFalse(page.js("return window.ctApp.av.call.cameraOn"))
        self.assertTrue(page.js("return window.ctApp.av.call.inCall"))
        page.screenshot("av-07-camera-refused")

        # Headless Chromium cannot refuse only the screen (its picker never answers, and
        # --use-fake-ui-for-media-stream=deny refuses everything), so the browser's refusal
        # is reproduced: what that flag makes getDisplayMedia reject with.
        page.js("window.ctApp.av.media = {getDisplayMedia: () => Promise.reject("
                "new DOMException('Permission denied', 'NotAllowedError'))}")
        page.browser.find("#ct-av-screen").click()
        wait_until(lambda: "Screen sharing was cancelled or refused"
                   in page.browser.text("#ct-av-message"), 10, "the screen message")
        self.assertIsNone(page.js("return window.ctApp.av.call.screenStream"))
        self.assertIsNone(page.js("return window.ctApp.av.call.sharer"))


class NetworkCutTests(CallTestCase):
    def test_a_cut_recovers_and_the_relay_carries_only_srtp(self):
        """A's session channel and its TURN-over-TCP connection (A's only path: relay only,
        TCP only) go through proxies; both are cut for 5 s. During the cut A's page says it
        is reconnecting, nothing is forwarded for A, and B receives nothing from A; then the
        call comes back by itself. What A's relay connections carried is DTLS and SRTP."""
        daemon, url, turn_port = av_edge(self)
        host = NodeHost(self, url, FILES)
        edge_port = int(url.rsplit(":", 1)[1])
        channel = ConnectionCapturingProxy("127.0.0.1", edge_port)
        relay = ConnectionCapturingProxy("127.0.0.1", turn_port)
        for proxy in (channel, relay):
            self.addCleanup(proxy.stop)
        a, b = CallPage(self), CallPage(self)
        a.join(host.link.replace(f":{edge_port}/", f":{channel.port}/"), "Ada")
        b.join(host.link, "Bob")
        a.join_call("relay", "tcp", relay.port)
        b.join_call("relay", "tcp")
        a.wait_inbound_audio(1, timeout=40)
        b.wait_inbound_audio(1, timeout=40)
        ada = a.js("return window.ctApp.participant")

        def from_a() -> int:
            return next(s for s in b.stats() if s["participant"] == ada)["audio"]["packets"]

        wait_until(lambda: len(rtp_packets(relay_upstream(relay))) >= 200, 20,
                   "200 RTP packets from A through the relay")

        channel.cut()
        relay.cut()
        cut_at = time.monotonic()
        wait_until(lambda: a.js("const s = document.querySelector('#ct-status');"
                                "return s.dataset.state === 'reconnecting'"
                                " && s.textContent.startsWith('Reconnecting')"), 4,
                   "A's page shows it is reconnecting")
        time.sleep(max(0.0, cut_at + 1.5 - time.monotonic()))  # what was in flight, arrived
        stalled, forwarded = from_a(), relay.forwarded() + channel.forwarded()
        time.sleep(max(0.0, cut_at + 4.5 - time.monotonic()))
        self.assertEqual(from_a(), stalled, "B still received A's audio during the cut")
        self.assertEqual(relay.forwarded() + channel.forwarded(), forwarded,
                         "bytes went through A's proxies during the cut")
        self.assertEqual(a.status(), "reconnecting")
        time.sleep(max(0.0, cut_at + 5 - time.monotonic()))
        connections_before = len(relay.connections)
        channel.restore()
        relay.restore()
        a.wait_status("resumed", "connected", timeout=30)
        a.wait_inbound_audio(1, timeout=60)
        b.wait_inbound_audio(1, timeout=60)
        wait_until(lambda: from_a() > stalled + 50, 20, "B receives A's audio again")
        self.assertGreater(len(relay.connections), connections_before,
                           "A did not connect to the relay again")
        a.screenshot("av-05-after-cut")
        # Before and after the cut, the relay carried DTLS and SRTP for A, nothing else.
        wait_until(lambda: len(rtp_packets(relay.connections[-1]["upstream"])) >= 100, 20,
                   "RTP from A through the new relay connection")
        # The same fake device, before encryption: it repeats itself and its TOC bytes
        # take a few values (what the checks below would catch in a clear capture).
        plaintext, tocs = plaintext_patterns(b)
        self.assertGreaterEqual(len(plaintext), 3, plaintext)
        self.assertLessEqual(len(tocs), 8, tocs)
        assert_only_srtp(self, [bytes(c["upstream"]) for c in relay.connections], minimum=300,
                         plaintext=plaintext)


def turn_tcp_payloads(stream: bytes) -> list[bytes]:
    """The ChannelData payloads and Send indications' DATA in a client's TURN-over-TCP
    stream (RFC 8656: both padded to 4 bytes over TCP)."""
    out = []
    i = 0
    while i + 4 <= len(stream):
        first = stream[i]
        length = int.from_bytes(stream[i + 2:i + 4], "big")
        if i + (4 if first >= 0x40 else 20) + length > len(stream):
            break  # the last frame, cut short by the end of the capture
        if 0x40 <= first <= 0x7F:  # ChannelData
            out.append(stream[i + 4:i + 4 + length])
            i += 4 + length + (-length % 4)
        elif first < 0x40:  # STUN: 20-byte header, attributes
            message_type = int.from_bytes(stream[i:i + 2], "big")
            if message_type == 0x0016:  # Send indication: take DATA (0x0013)
                j = i + 20
                while j + 4 <= i + 20 + length:
                    kind = int.from_bytes(stream[j:j + 2], "big")
                    size = int.from_bytes(stream[j + 2:j + 4], "big")
                    if kind == 0x0013:
                        out.append(stream[j + 4:j + 4 + size])
                    j += 4 + size + (-size % 4)
            i += 20 + length
        else:
            break  # not a TURN stream any more (cannot happen for a whole capture)
    return out


def relay_upstream(proxy) -> bytes:
    """Everything A sent on its TURN-over-TCP connections, the longest one (its parser
    must not cross connections)."""
    return max((bytes(c["upstream"]) for c in proxy.connections), key=len, default=b"")


def rtp_packets(stream: bytes) -> list[bytes]:
    """The Opus RTP packets (payload type 111, Chromium's) in a TURN-over-TCP stream."""
    return [p for p in turn_tcp_payloads(stream)
            if len(p) > 40 and 128 <= p[0] <= 191 and p[1] & 0x7F == 111]


def rtp_payload(packet: bytes) -> bytes:
    """An RTP packet's payload (after CSRCs and the header extension)."""
    start = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension
        start += 4 + 4 * int.from_bytes(packet[start + 2:start + 4], "big")
    return packet[start:]


SRTP_TAGS = (10, 16)  # AES_CM_128_HMAC_SHA1_80's tag, AEAD_AES_128_GCM's
OPUS_SILENCE = b"\xf8\xff\xfe"  # a plaintext Opus frame of silence (CELT, 20 ms, fullband)


def classify(packet: bytes) -> str:
    """What one relayed datagram is, by its first byte (RFC 7983) and, for RTP and RTCP
    (version 2), by whether it can be SRTP/SRTCP: room for the authentication tag and,
    for SRTCP, the E flag of the SRTCP index set (RFC 3711 / RFC 7714)."""
    if not packet:
        return "empty"
    first = packet[0]
    if first <= 3:
        return "stun"
    if 20 <= first <= 63:
        return "dtls"
    if first >> 6 != 2:
        return "unknown"
    if 192 <= packet[1] <= 223:  # RTCP packet types 192..223 (RFC 5761)
        length = 4 * (int.from_bytes(packet[2:4], "big") + 1)  # the first RTCP packet's
        # The E flag: before the tag with AES-CM (index, then tag), last with AES-GCM.
        flagged = ((len(packet) >= 8 + 4 + 10 and packet[-14] & 0x80)
                   or (len(packet) >= 8 + 16 + 4 and packet[-4] & 0x80))
        return "srtcp" if flagged and length <= len(packet) - 14 else "rtcp"
    header = len(packet) - len(rtp_payload(packet))
    return "srtp" if len(packet) >= header + 1 + SRTP_TAGS[0] else "rtp"


PLAINTEXT_OPUS = """const done = arguments[arguments.length - 1]; (async () => {
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  const a = new RTCPeerConnection({encodedInsertableStreams: true}), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const {readable, writable} = a.addTrack(mic.getAudioTracks()[0], mic).createEncodedStreams();
  const frames = [];
  readable.pipeThrough(new TransformStream({transform(frame, out) {
    if (frames.length < 250) frames.push(Array.from(new Uint8Array(frame.data)));
    out.enqueue(frame); }})).pipeTo(writable);
  await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
  for (let i = 0; i < 150 && frames.length < 250; i++) await new Promise((r) => setTimeout(r, 100));
  a.close(); b.close(); mic.getTracks().forEach((t) => t.stop()); done(frames);
})().catch((e) => done(String(e)));"""


def plaintext_patterns(page: CallPage) -> tuple[set[bytes], set[int]]:
    """What the fake microphone's Opus frames look like before SRTP: 250 frames from the
    same device and encoder, taken before encryption (encoded insertable streams on a
    loopback pair of connections in ``page``): the 4-byte beginnings that repeat, and the
    TOC bytes (first bytes) seen."""
    frames = page.driver.execute_async_script(PLAINTEXT_OPUS)
    assert isinstance(frames, list) and len(frames) >= 200, frames
    counts: dict[bytes, int] = {}
    for frame in frames:
        counts[bytes(frame[:4])] = counts.get(bytes(frame[:4]), 0) + 1
    return {prefix for prefix, n in counts.items() if n >= 3}, {f[0] for f in frames if f}


def assert_only_srtp(case, streams: list[bytes], minimum: int = 150,
                     plaintext: set[bytes] = frozenset()) -> None:
    """Every datagram A relayed (on the TURN-over-TCP connections ``streams``) is STUN,
    DTLS, SRTP or SRTCP, with at least ``minimum`` SRTP packets (an empty or tiny capture
    fails); the payloads look encrypted: the Opus TOC byte (nearly constant in plaintext)
    takes many values, no payload begins like the fake microphone's repeating plaintext
    frames (``plaintext``; silence is ``f8 ff fe``) and no payload repeats."""
    payloads = [p for stream in streams for p in turn_tcp_payloads(stream)]
    kinds: dict[str, int] = {}
    for packet in payloads:
        kind = classify(packet)
        kinds[kind] = kinds.get(kind, 0) + 1
    case.assertEqual(set(kinds) - {"stun", "dtls", "srtp", "srtcp"}, set(),
                     f"relayed datagrams that are not STUN, DTLS, SRTP or SRTCP: {kinds}")
    case.assertGreater(kinds.get("dtls", 0), 0, f"no DTLS records through the relay: {kinds}")
    case.assertGreaterEqual(kinds.get("srtp", 0), minimum, f"too few SRTP packets: {kinds}")
    case.assertGreaterEqual(kinds.get("srtcp", 0), 3, f"too few SRTCP packets: {kinds}")
    opus = [rtp_payload(p) for stream in streams for p in rtp_packets(stream)]
    case.assertGreater(len(opus), minimum * 2 // 3, f"too few Opus packets ({len(opus)})")
    firsts = {payload[0] for payload in opus}
    case.assertGreater(len(firsts), 64, f"RTP payloads look like plaintext Opus: {sorted(firsts)}")
    case.assertEqual([p for p in opus if p.startswith(OPUS_SILENCE)], [],
                     "plaintext Opus silence through the relay")
    # The plaintext repeats (silence, the steady tone): a clear capture would show it.
    case.assertEqual([p[:4].hex() for p in opus if p[:4] in plaintext], [],
                     "RTP payloads begin like the fake microphone's plaintext frames")
    repeated = len(opus) - len(set(opus))
    case.assertEqual(repeated, 0, f"{repeated} identical RTP payloads (plaintext repeats)")


class CaptureCheckTests(unittest.TestCase):
    """The capture check itself (pure logic): it passes ciphertext and fails plaintext."""

    @staticmethod
    def channel_data(packet: bytes) -> bytes:
        return (b"\x40\x00" + len(packet).to_bytes(2, "big") + packet
                + b"\0" * (-len(packet) % 4))

    def stream(self, payloads) -> bytes:
        import os

        out = self.channel_data(bytes([22, 0xFE, 0xFD]) + os.urandom(60))  # a DTLS record
        for seq, payload in enumerate(payloads):
            header = bytes([0x80, 111]) + seq.to_bytes(2, "big") + os.urandom(8)
            out += self.channel_data(header + payload + os.urandom(10))
            if seq % 50 == 0:  # an SRTCP sender report: E flag set in the index
                out += self.channel_data(bytes([0x80, 200, 0, 6]) + os.urandom(24)
                                         + b"\x80\0\0\1" + os.urandom(10))
        return out

    def test_ciphertext_passes_and_plaintext_fails(self):
        import os

        assert_only_srtp(self, [self.stream(os.urandom(40) for _ in range(300))])
        tone = bytes.fromhex("7807c979") + bytes(range(60))
        with self.assertRaises(AssertionError):  # silence and a steady tone, in clear
            assert_only_srtp(self, [self.stream([OPUS_SILENCE, tone] * 150)])
        with self.assertRaises(AssertionError):  # too few packets
            assert_only_srtp(self, [self.stream(os.urandom(40) for _ in range(20))])
        with self.assertRaises(AssertionError):  # something that is not SRTP
            assert_only_srtp(self, [self.stream(os.urandom(40) for _ in range(300))
                                    + self.channel_data(b"\x05" * 40)])


def metrics_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return response.read().decode()


def wait_metrics(url: str, expected: dict[str, float], timeout: float = 20.0) -> None:
    """Until the edge's /metrics has these values (the clients report every 5 s)."""
    seen = {}

    def reached():
        text = metrics_text(url)
        seen.update({name: metric(text, name) for name in expected})
        return seen == expected

    try:
        wait_until(reached, timeout, "metrics", step=0.5)
    except AssertionError:
        raise AssertionError(f"metrics: {seen}, expected {expected}") from None


def metric(text: str, name: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        after = line[len(name):len(name) + 1]
        if line.startswith(name) and (after in (" ", "{") or name.endswith("}")):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise AssertionError(f"no metric {name}")
    return total

