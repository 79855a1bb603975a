// The call panel of the guest app: join/leave audio, mute, camera (off by default), screen
// sharing, device choice, who is in the call and who speaks. The call itself (signalling,
// the mesh of peer connections) is js/core/av.js. The panel shows only when the edge hands
// ICE servers (CT_AV_ENABLED) and the host's policy does not say `av: false`.

import { AvCall, summariseStats } from "../core/av.js";
import { h, fill } from "./dom.js";

const STATS_INTERVAL_MS = 300;
const REPORT_INTERVAL_MS = 5000; // av-report to the edge (it takes one per 2 s at most)
const SPEAKING_LEVEL = 0.02; // audioLevel (0..1) above which someone counts as speaking

/** What to tell a person whose browser refused a device (getUserMedia/getDisplayMedia). */
export function deviceProblem(error, what) {
  const name = error?.name || "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return what === "screen"
      ? "Screen sharing was cancelled or refused by the browser."
      : `The browser refused the ${what}: allow it for this site (the icon in the address bar), then try again.`;
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return `No ${what} was found: plug one in or choose another device.`;
  if (name === "NotReadableError" || name === "AbortError") return `The ${what} is in use by another program or could not be started.`;
  if (name === "TypeError") return "This browser does not offer audio/video on this page (it needs HTTPS).";
  return `The ${what} could not be used (${error?.message || error}).`;
}

export class AvPanel {
  /** `container`: where the panel goes; `toast(level, text)`: the app's messages. */
  constructor(connection, workspace, { container, toast, callOptions = {}, media = globalThis.navigator?.mediaDevices } = {}) {
    this.connection = connection;
    this.workspace = workspace;
    this.toast = toast || (() => {});
    this.media = media;
    this.call = new AvCall(connection, callOptions);
    this.speaking = new Set(); // participant ids (this one's own too) speaking now
    this.lastStats = [];
    this.message = "";
    this._statsTimer = null;
    this._reported = 0;
    this.el = {
      panel: h("section", { id: "ct-av", class: "ct-av", hidden: true, "aria-label": "Call" }),
      join: h("button", { id: "ct-av-join", type: "button", onclick: () => this.toggleCall() }, "Join audio"),
      mute: h("button", { id: "ct-av-mute", type: "button", hidden: true, "aria-pressed": "false", onclick: () => this.toggleMute() }, "Mute"),
      camera: h("button", { id: "ct-av-camera", type: "button", hidden: true, "aria-pressed": "false", onclick: () => this.toggleCamera() }, "Camera"),
      screen: h("button", { id: "ct-av-screen", type: "button", hidden: true, "aria-pressed": "false", onclick: () => this.toggleScreen() }, "Share screen"),
      mic: h("select", { id: "ct-av-mic", class: "ct-av-device", "aria-label": "Microphone", onchange: () => this._micChosen() }),
      cam: h("select", { id: "ct-av-cam", class: "ct-av-device", "aria-label": "Camera", onchange: () => this._camChosen() }),
      message: h("p", { id: "ct-av-message", class: "ct-av-message", role: "alert", hidden: true }),
      members: h("ul", { id: "ct-av-members", class: "ct-av-members" }),
      media: h("div", { id: "ct-av-media", class: "ct-av-media" }),
      sounds: h("div", { class: "ct-av-sounds", hidden: true }),
    };
    const e = this.el;
    fill(e.panel,
      h("h2", {}, "Call"),
      h("div", { class: "ct-av-buttons" }, e.join, e.mute, e.camera, e.screen),
      h("details", { class: "ct-av-devices" }, h("summary", {}, "Devices"), e.mic, e.cam),
      e.message, e.members, e.media, e.sounds);
    container?.append(e.panel);

    this.call.on("call", () => this.render());
    this.call.on("peers", () => this.render());
    this.call.on("available", () => this.render());
    this.call.on("screen", () => this.render());
    this.call.on("track", (t) => this._track(t));
    this.call.on("peer-closed", ({ participant }) => this._dropMedia(participant));
    this.call.on("screen-stopped", () => this.toast("info", "The host stopped your screen share."));
    this.warnings = []; // the last few, for tests and debugging
    this.call.on("warning", (text) => {
      console.warn("ct:", text);
      this.warnings.push(text);
      if (this.warnings.length > 20) this.warnings.shift();
    });
    connection.on("participants", () => this.render());
    workspace?.on("policy", () => {
      if (!this.enabled && this.call.inCall) {
        this.call.leave();
        this.toast("info", "The host turned calls off for this session.");
      }
      this.render();
    });
    this.render();
  }

  /** The edge offers ICE servers and the host's policy allows calls. */
  get enabled() {
    return this.call.available && this.workspace?.policy?.av !== false;
  }

  _say(text) {
    this.message = text || "";
    this.el.message.hidden = !text;
    this.el.message.textContent = text || "";
  }

  async toggleCall() {
    if (this.call.inCall) {
      this.call.leave();
      this.call.report();
      this._reported = 0;
      this._stopStats();
      this.el.media.replaceChildren();
      this.el.sounds.replaceChildren();
      this.render();
      return;
    }
    if (!this.enabled) return;
    if (!this.media?.getUserMedia) {
      this._say(deviceProblem({ name: "TypeError" }, "microphone"));
      return;
    }
    let stream;
    try {
      const deviceId = this.el.mic.value;
      stream = await this.media.getUserMedia({ audio: deviceId ? { deviceId: { exact: deviceId } } : true, video: false });
    } catch (error) {
      this._say(deviceProblem(error, "microphone"));
      return;
    }
    this._say("");
    this.call.join(stream);
    this._startStats();
    this._listDevices();
    this.render();
  }

  toggleMute() {
    this.call.setMuted(!this.call.muted);
    this.render();
  }

  async toggleCamera() {
    if (!this.call.inCall) return;
    if (this.call.cameraOn) {
      this.call.setCamera(null);
      this.render();
      return;
    }
    try {
      const deviceId = this.el.cam.value;
      const stream = await this.media.getUserMedia({ video: deviceId ? { deviceId: { exact: deviceId } } : true });
      this.call.setCamera(stream.getVideoTracks()[0]);
      this._say("");
      this._listDevices(); // the cameras' names and ids, now that one is allowed
    } catch (error) {
      this._say(deviceProblem(error, "camera"));
    }
    this.render();
  }

  async toggleScreen() {
    if (!this.call.inCall) return;
    if (this.call.screenStream) {
      this.call.stopScreen();
      this.render();
      return;
    }
    if (this.call.sharer !== null) {
      this._say(`${this._name(this.call.sharer)} is sharing a screen: one share at a time.`);
      return;
    }
    if (!this.media?.getDisplayMedia) {
      this._say("This browser cannot share a screen.");
      return;
    }
    try {
      const stream = await this.media.getDisplayMedia({ video: true, audio: false });
      if (!this.call.startScreen(stream)) {
        stream.getTracks().forEach((t) => t.stop());
        this._say("Someone else started sharing first.");
      } else {
        this._say("");
      }
    } catch (error) {
      this._say(deviceProblem(error, "screen"));
    }
    this.render();
  }

  async _micChosen() {
    if (!this.call.inCall) return;
    try {
      const stream = await this.media.getUserMedia({ audio: { deviceId: { exact: this.el.mic.value } } });
      await this.call.replaceAudioTrack(stream.getAudioTracks()[0]);
      this._say("");
    } catch (error) {
      this._say(deviceProblem(error, "microphone"));
    }
  }

  /** Another camera while the camera is on: its track replaces the old one in the same
   * senders (taking the camera off and on again would need a new transceiver each time). */
  async _camChosen() {
    if (!this.call.inCall || !this.call.cameraOn) return;
    try {
      const stream = await this.media.getUserMedia({ video: { deviceId: { exact: this.el.cam.value } } });
      await this.call.replaceVideoTrack(stream.getVideoTracks()[0]);
      this._say("");
    } catch (error) {
      this._say(deviceProblem(error, "camera"));
    }
    this.render();
  }

  async _listDevices() {
    if (!this.media?.enumerateDevices) return;
    let devices = [];
    try {
      devices = await this.media.enumerateDevices();
    } catch {
      return;
    }
    for (const [select, kind, label] of [[this.el.mic, "audioinput", "Microphone"], [this.el.cam, "videoinput", "Camera"]]) {
      const chosen = select.value;
      const options = devices.filter((d) => d.kind === kind).map((d, i) => h("option", { value: d.deviceId }, d.label || `${label} ${i + 1}`));
      fill(select, options);
      if (chosen) select.value = chosen;
    }
  }

  // ------------------------------------------------------------------ remote media

  _track({ participant, track, stream }) {
    if (track.kind === "audio") {
      let audio = this.el.sounds.querySelector(`audio[data-participant="${participant}"]`);
      if (!audio) {
        audio = h("audio", { autoplay: true, dataset: { participant: String(participant) } });
        this.el.sounds.append(audio);
      }
      audio.srcObject = stream || new MediaStream([track]);
      audio.play?.().catch(() => {});
      return;
    }
    const id = stream?.id || track.id;
    let video = this.el.media.querySelector(`video[data-stream="${CSS.escape(id)}"]`);
    if (!video) {
      video = h("video", { autoplay: true, playsinline: true, muted: true, class: "ct-av-video", dataset: { participant: String(participant), stream: id } });
      video.muted = true;
      this.el.media.append(video);
    }
    video.srcObject = stream || new MediaStream([track]);
    video.play?.().catch(() => {});
    track.addEventListener("ended", () => video.remove());
    stream?.addEventListener?.("removetrack", () => {
      if (!stream.getVideoTracks().length) video.remove();
    });
    this.render();
  }

  _dropMedia(participant) {
    for (const el of [...this.el.panel.querySelectorAll(`[data-participant="${participant}"]`)]) {
      if (el.tagName === "AUDIO" || el.tagName === "VIDEO") el.remove();
    }
    this.speaking.delete(participant);
  }

  // ------------------------------------------------------------------ speaking indicator

  _startStats() {
    this._stopStats();
    this._statsTimer = setInterval(() => this._poll(), STATS_INTERVAL_MS);
  }

  _stopStats() {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    this.speaking.clear();
  }

  async _poll() {
    if (!this.call.inCall) return;
    const stats = await this.call.stats();
    this.lastStats = stats;
    if (Date.now() - this._reported >= REPORT_INTERVAL_MS) {
      this._reported = Date.now();
      this.call.report(stats);
    }
    const speaking = new Set();
    // Someone who said they muted never shows as speaking: what their receiver still plays
    // out of its jitter buffer (or conceals) after the mute is not them speaking.
    for (const s of stats) {
      if (s.audio && s.audio.audioLevel > SPEAKING_LEVEL && !this.call.members.get(s.participant)?.muted) speaking.add(s.participant);
    }
    // Our own level: the media-source of the microphone, in any peer connection's report.
    const first = this.call.peers.values().next().value;
    if (first && !this.call.muted) {
      try {
        (await first.pc.getStats()).forEach((s) => {
          if (s.type === "media-source" && s.kind === "audio" && (s.audioLevel || 0) > SPEAKING_LEVEL) speaking.add(this.connection.participant);
        });
      } catch {
        // closed meanwhile
      }
    }
    const changed = speaking.size !== this.speaking.size || [...speaking].some((p) => !this.speaking.has(p));
    this.speaking = speaking;
    if (changed) this.render();
  }

  // ------------------------------------------------------------------ rendering

  _name(participant) {
    return this.connection.participants.get(participant)?.name ?? `participant ${participant}`;
  }

  render() {
    const e = this.el;
    const call = this.call;
    e.panel.hidden = !this.enabled;
    e.join.textContent = call.inCall ? "Leave" : "Join audio";
    e.join.dataset.state = call.inCall ? "in-call" : "out";
    for (const button of [e.mute, e.camera, e.screen]) button.hidden = !call.inCall;
    e.mute.textContent = call.muted ? "Unmute" : "Mute";
    e.mute.setAttribute("aria-pressed", String(call.muted));
    e.camera.textContent = call.cameraOn ? "Camera off" : "Camera";
    e.camera.setAttribute("aria-pressed", String(call.cameraOn));
    e.screen.textContent = call.screenStream ? "Stop sharing" : "Share screen";
    e.screen.setAttribute("aria-pressed", String(!!call.screenStream));
    e.screen.disabled = call.sharer !== null && call.sharer !== this.connection.participant;
    const me = this.connection.participant;
    const rows = [];
    const inCall = [...call.members.entries()].filter(([, m]) => m.inCall);
    if (call.inCall) inCall.unshift([me, { inCall: true, muted: call.muted, camera: call.cameraOn, screen: call.screenStream?.id }]);
    for (const [id, m] of inCall) {
      const peer = call.peers.get(id);
      const state = id === me ? "self" : (peer?.pc.connectionState ?? "waiting");
      rows.push(h("li", {
        class: "ct-av-member", dataset: { participant: String(id), speaking: String(this.speaking.has(id)), state },
      },
      h("span", { class: "ct-av-level", "aria-hidden": "true" }),
      h("span", { class: "ct-av-name" }, this._name(id), id === me ? " (you)" : ""),
      m.muted ? h("span", { class: "ct-role" }, "muted") : null,
      m.screen || call.sharer === id ? h("span", { class: "ct-role" }, "sharing") : null,
      me === 1 && id !== me && call.sharer === id
        ? h("button", { type: "button", class: "ct-av-stop", onclick: () => call.stopScreenOf(id) }, "Stop share")
        : null));
    }
    fill(e.members, rows);
    // Screens first, large; cameras after.
    for (const video of e.media.querySelectorAll("video")) {
      const member = call.members.get(Number(video.dataset.participant));
      video.dataset.kind = member?.screen === video.dataset.stream ? "screen" : "camera";
    }
  }
}

export { summariseStats };
