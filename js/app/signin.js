// Guests' sign-in (docs/sso.md, "Guests' sign-in"): where the edge (CT_GUEST_AUTH=sso) or
// the host (guestSignIn) asks guests to sign in, a join refused with `sign-in-required`
// shows "Sign in to join". Its button goes to the server's sign-in address (the page's
// `ct-sign-in` meta) with redirect_uri = this join page and a random state; the server
// comes back to the join page with `#state=…&token=…` in the fragment. The session key,
// which lives in the fragment too, waits in sessionStorage meanwhile (it never goes to a
// server) and is put back into the fragment on return.

import { h, fill } from "./dom.js";

export const STORE_KEY = "ct.signin";
export const MAX_WAIT_MS = 15 * 60 * 1000; // a sign-in that takes longer starts over
const SIGN_IN_SUFFIX = "/dashboard/sso/host";

/** 32 random bytes as base64url (the state the server hands back). */
export function randomState(cryptoObj = globalThis.crypto) {
  const bytes = cryptoObj.getRandomValues(new Uint8Array(32));
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The URL the button goes to. `signIn`: the meta's address (absolute, or relative to the
 * page); `page`: the join page's URL. The redirect_uri is a path on the sign-in server:
 * this page's own path and query when it is this origin, else `/join/<session>?query`
 * under the sign-in server's prefix (a locator sends the browser on to the edge, fragment
 * kept).
 */
export function signInUrl(signIn, page, state) {
  const here = new URL(page);
  const target = new URL(signIn, here);
  let redirect;
  if (target.origin === here.origin) {
    redirect = here.pathname + here.search;
  } else {
    const prefix = target.pathname.endsWith(SIGN_IN_SUFFIX) ? target.pathname.slice(0, -SIGN_IN_SUFFIX.length) : "";
    const session = here.pathname.slice(here.pathname.lastIndexOf("/join/"));
    redirect = prefix + session + here.search;
  }
  target.search = new URLSearchParams({ redirect_uri: redirect, state }).toString();
  target.hash = "";
  return target.toString();
}

/** `{state, token}` from a fragment the server sent back, or null. */
export function parseReturn(fragment) {
  const params = new URLSearchParams((fragment || "").replace(/^#/, ""));
  const state = params.get("state");
  const token = params.get("token");
  if (!state || !token || token.length > 4096) return null;
  return { state, token };
}

/**
 * What to do with a return: `{token, fragment}` (the key's fragment to put back) when the
 * state matches what this tab kept, `{error}` when it does not, null when `back` is null.
 */
export function checkReturn(back, kept, now) {
  if (!back) return null;
  if (!kept || typeof kept.state !== "string" || typeof kept.fragment !== "string") {
    return { error: "no-sign-in" };
  }
  if (kept.state !== back.state) return { error: "state" };
  if (!(now - kept.at >= 0 && now - kept.at <= MAX_WAIT_MS)) return { error: "late" };
  return { token: back.token, fragment: kept.fragment };
}

function readKept(storage) {
  try {
    const raw = storage.getItem(STORE_KEY);
    storage.removeItem(STORE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/**
 * Called first on load: when the page comes back from the sign-in, check the state, put
 * the key's fragment back (history.replaceState) and return `{token}`; `{page}` for a
 * page to show instead; null when this is no return from a sign-in.
 */
export function takeReturn(win = window) {
  const back = parseReturn(win.location.hash);
  if (!back) return null;
  const result = checkReturn(back, readKept(win.sessionStorage), Date.now());
  if (result.error) {
    // Forget the token; the link's key is gone from this tab's address: start again.
    win.history.replaceState(null, "", win.location.pathname + win.location.search);
    return {
      page: {
        kind: "sign-in-failed", title: "Sign-in did not complete",
        text: ["This page did not start that sign-in, or it took too long.", "Open the join link from the host again."],
      },
    };
  }
  win.history.replaceState(null, "", win.location.pathname + win.location.search + result.fragment);
  return { token: result.token };
}

/** The sign-in address the server gave the page, or null. */
export function signInAddress(doc = document) {
  return doc.querySelector('meta[name="ct-sign-in"]')?.content || null;
}

/**
 * Replaces the page with "Sign in to join" (or says sign-in is not available here). The
 * button keeps the state and the key's fragment in sessionStorage and leaves for the
 * sign-in; the fragment is not in the address it goes to.
 */
export function showSignIn(win = window, { again = false } = {}) {
  const doc = win.document;
  const address = signInAddress(doc);
  doc.body.className = "ct-page";
  if (!address) {
    doc.body.dataset.ctPage = "sign-in-unavailable";
    doc.title = "Sign-in needed · CodeTogether";
    fill(doc.body, h("div", { class: "ct-message" }, h("h1", {}, "Sign-in needed"),
      h("p", {}, "This session's guests must sign in, but this server has no sign-in address configured (CT_GUEST_SIGN_IN_URL)."),
      h("p", {}, "Tell the server's operator.")));
    return;
  }
  doc.body.dataset.ctPage = "sign-in";
  doc.title = "Sign in to join · CodeTogether";
  const button = h("button", {
    id: "ct-sign-in", type: "button",
    onclick: () => {
      const state = randomState(win.crypto);
      try {
        win.sessionStorage.setItem(STORE_KEY, JSON.stringify({ state, fragment: win.location.hash, at: Date.now() }));
      } catch {
        fill(doc.body, h("div", { class: "ct-message" }, h("h1", {}, "Cannot sign in from this tab"),
          h("p", {}, "The browser does not let this page keep data for the sign-in (session storage is off).")));
        return;
      }
      win.location.assign(signInUrl(address, win.location.href, state));
    },
  }, "Sign in");
  fill(doc.body, h("div", { class: "ct-message ct-card" },
    h("h1", {}, "Sign in to join"),
    h("p", {}, again
      ? "The sign-in was not accepted (it may have expired). Sign in again to join."
      : "The host or the server's policy requires guests to sign in with your organisation's account."),
    h("p", {}, "The others will see the name of your account."),
    button));
}
