// One session participant over Node's `ws` with its DEFAULT options (it offers
// permessage-deflate, as browsers do). Used by tests/edge/test_hardening_ws.py.
//
//   node session_client.js URL FIRST_MESSAGE_JSON SEND_COUNT EXPECT_COUNT
//
// Prints one JSON line per event: {"event": "open", "extensions": ...}, every control
// message received ({"event": "control", "message": ...}), then {"event": "done",
// "received": [payload strings]} once EXPECT_COUNT data frames arrived, then leaves.
// It sends SEND_COUNT frames "node-<i>" to everyone once another participant is there
// (a guest: on "joined"; a host: on the first "participant-joined"). Exits within 30 s.
"use strict";
const WebSocket = require("ws");

const [url, first, sendCount, expectCount] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const received = [];
let finished = false;
let sent = false;

const deadline = setTimeout(() => {
  print({ event: "timeout", received });
  process.exit(2);
}, 30000);

const ws = new WebSocket(url);

function finish() {
  if (finished) return;
  finished = true;
  print({ event: "done", received });
  ws.send(JSON.stringify({ type: "leave" }));
}

ws.on("open", () => {
  print({ event: "open", extensions: ws.extensions });
  ws.send(first);
});

ws.on("message", (data, isBinary) => {
  if (!isBinary) {
    const message = JSON.parse(data.toString("utf8"));
    print({ event: "control", message });
    // Send once someone else is there: a guest at once, a host when the first guest joins.
    if (message.type === "joined" || (message.type === "participant-joined" && !sent)) {
      sent = true;
      for (let i = 0; i < Number(sendCount); i++) {
        const header = Buffer.alloc(5); // flags:u8 = 0 | to:u32 = 0 (everyone else)
        ws.send(Buffer.concat([header, Buffer.from(`node-${i}`)]));
      }
    }
    return;
  }
  // edge -> client: flags:u8 | seq:u64 | from:u32 | payload
  received.push(data.subarray(13).toString("utf8"));
  if (received.length >= Number(expectCount)) finish();
});

ws.on("close", (code, reason) => {
  print({ event: "closed", code, reason: reason.toString() });
  clearTimeout(deadline);
  process.exit(finished ? 0 : 1);
});

ws.on("error", (err) => {
  print({ event: "error", message: String(err) });
});
