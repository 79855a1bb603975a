// The peer's editor page: CodeMirror 6 bound to a Y.Text with y-codemirror.next, synced through
// y-websocket's server (no encryption). The same editor stack as js/app, so the two latency
// figures differ only by the transport: ?server=ws://127.0.0.1:PORT&room=NAME&file=PATH
import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import { yCollab } from "y-codemirror.next";
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";

const params = new URLSearchParams(location.search);
const doc = new Y.Doc();
const files = doc.getMap("files");
const provider = new WebsocketProvider(params.get("server"), params.get("room"), doc);
provider.awareness.setLocalStateField("user", { name: params.get("name") || "peer", color: "#30bced", colorLight: "#30bced33" });
let view = null;

function open(path) {
  const text = files.get(path);
  if (!text || view) return;
  view = new EditorView({
    state: EditorState.create({ doc: text.toString(), extensions: [basicSetup, yCollab(text, provider.awareness)] }),
    parent: document.getElementById("editor"),
  });
}

const status = { synced: false };
provider.on("sync", (synced) => {
  status.synced = synced;
  if (synced && params.get("file")) open(params.get("file"));
});
files.observe(() => { if (status.synced && params.get("file")) open(params.get("file")); });

window.bench = Object.freeze({
  get synced() { return status.synced; },
  get opened() { return view !== null; },
  paths: () => Array.from(files.keys()),
  editorText: () => (view ? view.state.doc.toString() : null),
});
