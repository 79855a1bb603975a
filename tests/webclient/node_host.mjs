// A host for the browser tests, on the JavaScript client core: hosts a session sharing an
// in-memory workspace and takes commands as JSON lines on stdin, answering on stdout.
//   node tests/webclient/node_host.mjs SERVER '{"path": "text", ...}' [readOnly]
// Commands: {"op": "write", "path", "text"}, {"op": "read", "path"}, {"op": "paths"},
// {"op": "policy", ...policy}, {"op": "kick", "participant"}, {"op": "end"},
// {"op": "participants"}, {"op": "open", "path"}, {"op": "stop-screen", "participant"}
// (the host stops someone's screen share). The first line out is {"link": ...}.
import readline from "node:readline";
import { createRequire } from "node:module";
import { AvCall, SessionConnection, Workspace } from "../../js/core/index.js";

// `ws` is installed in js/node_modules (this file is outside that npm project).
const WebSocket = createRequire(new URL("../../js/package.json", import.meta.url))("ws");
const [server, filesJson, readOnly] = process.argv.slice(2);
const conn = new SessionConnection({ server, name: "Hannah Host", WebSocket });
const workspace = new Workspace(conn, { user: { name: "Hannah Host", color: "#188038" }, policy: { readOnly: readOnly === "readOnly" } });
for (const [path, text] of Object.entries(JSON.parse(filesJson || "{}"))) workspace.addFile(path, text);
const call = new AvCall(conn); // not in the call: only to stop a screen share
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
conn.on("ended", (e) => out({ event: "ended", ...e }));
await conn.host({ title: "Browser test" });
out({ link: conn.link, session: conn.session });

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const cmd = JSON.parse(line);
  switch (cmd.op) {
    case "write": {
      const text = workspace.text(cmd.path);
      if (!text) workspace.addFile(cmd.path, cmd.text);
      else workspace.doc.transact(() => { text.delete(0, text.length); text.insert(0, cmd.text); });
      out({ ok: true });
      break;
    }
    case "append": {
      const text = workspace.text(cmd.path);
      text.insert(text.length, cmd.text);
      out({ ok: true });
      break;
    }
    case "read":
      out({ path: cmd.path, text: workspace.read(cmd.path) ?? null });
      break;
    case "paths":
      out({ paths: workspace.paths() });
      break;
    case "policy":
      workspace.setPolicy(cmd.policy);
      out({ ok: true });
      break;
    case "open": // the host "opens" a file: its awareness names it
      workspace.setCursor(cmd.path, null);
      out({ ok: true });
      break;
    case "participants":
      out({ participants: [...conn.participants.values()] });
      break;
    case "kick":
      conn.kick(cmd.participant);
      out({ ok: true });
      break;
    case "stop-screen":
      out({ ok: call.stopScreenOf(cmd.participant) });
      break;
    case "end":
      conn.end();
      out({ ok: true });
      break;
    default:
      out({ error: `unknown op ${cmd.op}` });
  }
});
rl.on("close", () => process.exit(0));
