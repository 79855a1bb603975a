// What the editor shows of peers' awareness states.

import { safeColor } from "./dom.js";

const DEFAULT_COLOR = "#30bced";

/**
 * The awareness as y-codemirror.next's remote selections see it: peers' colours go into
 * style attributes, so only plain hex colours pass (a peer controls its own state).
 */
export function guardedAwareness(awareness) {
  return {
    get doc() { return awareness.doc; },
    on: (type, fn) => awareness.on(type, fn),
    off: (type, fn) => awareness.off(type, fn),
    getLocalState: () => awareness.getLocalState(),
    setLocalStateField: (field, value) => awareness.setLocalStateField(field, value),
    getStates() {
      const states = new Map();
      awareness.getStates().forEach((state, clientID) => {
        const user = state && typeof state.user === "object" && state.user ? state.user : null;
        if (!user) {
          states.set(clientID, state);
          return;
        }
        const color = safeColor(user.color, DEFAULT_COLOR);
        states.set(clientID, {
          ...state,
          user: {
            name: typeof user.name === "string" ? user.name.slice(0, 64) : "Anonymous",
            color,
            colorLight: safeColor(user.colorLight, color.length === 7 ? `${color}33` : color),
          },
        });
      });
      return states;
    },
  };
}
