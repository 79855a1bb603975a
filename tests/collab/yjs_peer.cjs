// A yjs peer for tests/collab/test_yjs_interop.py: reads one JSON request on stdin,
// {"update": hex|null, "edits": [[path, utf16Index, deleteCount, insertText], ...],
//  "awareness": {clientID, state}?}, applies the update, then the edits (Yjs positions:
// UTF-16 code units), and prints {"update": hex of the whole state, "files": {path: text},
// "awareness": hex}.
const Y = require('yjs');
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const doc = new Y.Doc();
  const files = doc.getMap('files');
  if (req.update) Y.applyUpdate(doc, Buffer.from(req.update, 'hex'));
  for (const [path, index, del, text] of req.edits || []) {
    doc.transact(() => {
      let t = files.get(path);
      if (!t) { t = new Y.Text(); files.set(path, t); }
      if (del) t.delete(index, del);
      if (text) t.insert(index, text);
    });
  }
  const out = { update: Buffer.from(Y.encodeStateAsUpdate(doc)).toString('hex'), files: {} };
  files.forEach((v, k) => { out.files[k] = v.toString(); });
  if (req.awareness) {
    const { Awareness, encodeAwarenessUpdate, applyAwarenessUpdate } = require('y-protocols/awareness');
    const aw = new Awareness(doc);
    if (req.awareness.apply) applyAwarenessUpdate(aw, Buffer.from(req.awareness.apply, 'hex'), 'remote');
    aw.setLocalState(req.awareness.state);
    out.awareness = Buffer.from(encodeAwarenessUpdate(aw, [doc.clientID])).toString('hex');
    out.clientID = doc.clientID;
    out.states = {};
    aw.getStates().forEach((s, id) => { out.states[id] = s; });
  }
  process.stdout.write(JSON.stringify(out), () => process.exit(0));
});
