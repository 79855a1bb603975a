// The guest sign-in's pure parts (js/app/signin.js) under Node.
import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { MAX_WAIT_MS, checkReturn, parseReturn, randomState, signInUrl } from "../signin.js";

test("the sign-in address: this page as redirect_uri on the same origin, the join path on another", () => {
  const page = "http://127.0.0.1:8080/join/S1?token=t%2Bx&ctstickiness=st#key=SECRETKEY";
  const same = new URL(signInUrl("../dashboard/sso/host", page, "st4te"));
  assert.equal(same.origin + same.pathname, "http://127.0.0.1:8080/dashboard/sso/host");
  assert.equal(same.searchParams.get("redirect_uri"), "/join/S1?token=t%2Bx&ctstickiness=st");
  assert.equal(same.searchParams.get("state"), "st4te");
  const other = new URL(signInUrl("https://ct.example.com/ct/dashboard/sso/host", page, "s"));
  assert.equal(other.origin, "https://ct.example.com");
  assert.equal(other.searchParams.get("redirect_uri"), "/ct/join/S1?token=t%2Bx&ctstickiness=st");
  for (const url of [same, other]) assert.ok(!url.toString().includes("SECRETKEY"), "the key stays in the page");
  assert.equal(same.hash, "");
});

test("a return: state and token from the fragment; checked against what the tab kept", () => {
  assert.equal(parseReturn("#key=abc"), null);
  assert.equal(parseReturn(""), null);
  assert.equal(parseReturn("#state=s&token=" + "x".repeat(5000)), null);
  const back = parseReturn("#state=s1&token=tok.en.sig");
  assert.deepEqual(back, { state: "s1", token: "tok.en.sig" });
  const kept = { state: "s1", fragment: "#key=K", at: 1000 };
  assert.deepEqual(checkReturn(back, kept, 2000), { token: "tok.en.sig", fragment: "#key=K" });
  assert.deepEqual(checkReturn(back, { ...kept, state: "other" }, 2000), { error: "state" });
  assert.deepEqual(checkReturn(back, null, 2000), { error: "no-sign-in" });
  assert.deepEqual(checkReturn(back, kept, 1000 + MAX_WAIT_MS + 1), { error: "late" });
  assert.equal(checkReturn(null, kept, 2000), null);
});

test("states are random, base64url, long enough for the server (16-128)", () => {
  const a = randomState(webcrypto);
  const b = randomState(webcrypto);
  assert.notEqual(a, b);
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
});
