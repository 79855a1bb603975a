// The client core against a real edge (twistd -n ctedge on loopback).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startEdge, host, guest, eventually, snapshot } from "./helpers.js";

test("host and two guests converge on concurrent text edits", async (t) => {
  const edge = await startEdge(t);
  const h = await host(t, edge, { files: { "src/main.py": "print('hi')\n", "README.md": "# Title\n" } });
  const a = await guest(t, h.connection.link, { name: "Ada" });
  const b = await guest(t, h.connection.link, { name: "Bob" });
  assert.equal(a.workspace.read("src/main.py"), "print('hi')\n");
  assert.deepEqual(snapshot(b.workspace), snapshot(h.workspace));

  a.workspace.text("src/main.py").insert(0, "# Ada\n");
  b.workspace.text("src/main.py").insert(0, "# Bob\n");
  h.workspace.text("README.md").insert(7, "Host edit, ünïcödé 🎉\n");
  h.workspace.addFile("new.txt", "fresh");
  await eventually(() => {
    const s = JSON.stringify(snapshot(h.workspace));
    return s === JSON.stringify(snapshot(a.workspace)) && s === JSON.stringify(snapshot(b.workspace))
      && h.workspace.read("src/main.py").includes("# Ada") && h.workspace.read("src/main.py").includes("# Bob")
      && a.workspace.read("new.txt") === "fresh";
  }, "all three converge");
  assert.match(b.workspace.read("README.md"), /ünïcödé 🎉/);
});
