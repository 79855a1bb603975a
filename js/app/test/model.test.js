// The browser app's pure helpers (js/app/model.js, js/app/dom.js's safeColor) under Node.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  PALETTE, bannerFor, buildTree, colorFor, endPage, firstFile, formatSize, languageOf, unsharedReason,
} from "../model.js";
import { safeColor } from "../dom.js";

test("languages by extension", () => {
  assert.equal(languageOf("src/main.py"), "python");
  assert.equal(languageOf("a/b/App.TSX"), "tsx");
  assert.equal(languageOf("index.mjs"), "javascript");
  assert.equal(languageOf("README.md"), "markdown");
  assert.equal(languageOf("Makefile"), null);
  assert.equal(languageOf(".gitignore"), null);
  assert.equal(languageOf("dir.py/file"), null);
  assert.equal(languageOf("notes.txt"), null);
});

test("colours by participant id, wrapping around the palette", () => {
  assert.equal(colorFor(1), PALETTE[0]);
  assert.equal(colorFor(2), PALETTE[1]);
  assert.equal(colorFor(PALETTE.length + 1), PALETTE[0]);
  assert.equal(colorFor(undefined), PALETTE[0]);
  assert.equal(colorFor(-3), PALETTE[0]);
});

test("a peer's colour is used only when it is a plain hex colour", () => {
  assert.equal(safeColor("#30bced", "#000"), "#30bced");
  assert.equal(safeColor("#30bced33", "#000"), "#30bced33");
  assert.equal(safeColor("#abc", "#000"), "#abc");
  for (const bad of ["red; background:url(https://x)", "url(x)", "#12345", "", null, 7, "#30bced;"]) {
    assert.equal(safeColor(bad, "#000"), "#000", String(bad));
  }
});

test("the tree: folders first-level sorted, unshared files listed with their reason", () => {
  const tree = buildTree(["src/b.py", "README.md", "src/a.py", "src/lib/x.js"],
    [{ path: "logo.png", size: 2048, reason: "binary" }, { path: "src/a.py", size: 1, reason: "binary" }]);
  assert.deepEqual([...tree.folders.keys()], ["src"]);
  assert.deepEqual(tree.files.map((f) => f.name), ["README.md", "logo.png"]);
  assert.deepEqual(tree.files[1].unshared, { size: 2048, reason: "binary" });
  const src = tree.folders.get("src");
  assert.equal(src.path, "src");
  assert.deepEqual(src.files.map((f) => [f.path, !!f.unshared]), [["src/a.py", false], ["src/b.py", false]]);
  assert.deepEqual(src.folders.get("lib").files.map((f) => f.path), ["src/lib/x.js"]);
  assert.equal(unsharedReason("too-large"), "over the size limit, not shared");
  assert.equal(unsharedReason("something-new"), "not shared");
});

test("the first file: a README at the top, else the first path", () => {
  assert.equal(firstFile(["a.py", "docs/README.md", "readme.txt"]), "readme.txt");
  assert.equal(firstFile(["b.py", "c.py"]), "b.py");
  assert.equal(firstFile([]), null);
});

test("sizes", () => {
  assert.equal(formatSize(512), "512 B");
  assert.equal(formatSize(20480), "20 KB");
  assert.equal(formatSize(3 * 1024 * 1024), "3.0 MB");
});

test("full pages for every way a session ends", () => {
  assert.equal(endPage("session-ended", "ended-by-host").kind, "ended");
  assert.match(endPage("session-ended", "ended-by-host").text[0], /host ended/);
  assert.match(endPage("session-ended", "host-left").text[0], /host left/);
  for (const [code, kind] of [["removed", "removed"], ["not-found", "not-found"], ["resume-expired", "resume-expired"],
    ["forbidden", "forbidden"], ["superseded", "superseded"], ["resume-failed", "disconnected"], ["closed", "disconnected"]]) {
    assert.equal(endPage(code).kind, kind, code);
    assert.ok(endPage(code).title.length > 0);
  }
});

test("banners per connection state", () => {
  assert.equal(bannerFor("connected"), null);
  assert.equal(bannerFor("reconnecting").kind, "reconnecting");
  assert.equal(bannerFor("resyncing").kind, "resyncing");
});

test("peers' colours reach the editor only as plain hex colours", async () => {
  const { guardedAwareness } = await import("../awareness.js");
  const states = new Map([
    [1, { user: { name: "Ada", color: "#1a73e8", colorLight: "#1a73e833" }, cursor: { anchor: 1, head: 2 } }],
    [2, { user: { name: "Eve".repeat(40), color: "red; background-image: url(https://evil)", colorLight: "x" }, cursor: null }],
    [3, { user: null, cursor: null }],
  ]);
  const calls = [];
  const awareness = {
    doc: { clientID: 9 },
    getStates: () => states,
    getLocalState: () => ({ cursor: null }),
    setLocalStateField: (k, v) => calls.push([k, v]),
    on: (t) => calls.push(["on", t]),
    off: (t) => calls.push(["off", t]),
  };
  const guarded = guardedAwareness(awareness);
  const seen = guarded.getStates();
  assert.deepEqual(seen.get(1).user, { name: "Ada", color: "#1a73e8", colorLight: "#1a73e833" });
  assert.deepEqual(seen.get(1).cursor, { anchor: 1, head: 2 });
  assert.equal(seen.get(2).user.color, "#30bced");
  assert.equal(seen.get(2).user.colorLight, "#30bced33");
  assert.equal(seen.get(2).user.name.length, 64);
  assert.equal(seen.get(3).user, null);
  assert.equal(guarded.doc.clientID, 9);
  guarded.setLocalStateField("cursor", null);
  guarded.on("change", () => {});
  assert.deepEqual(calls, [["cursor", null], ["on", "change"]]);
});
