// A minimal event emitter that works the same in browsers and Node.

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Calls fn(...args) on each `type` event; returns a function that unsubscribes. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  once(type, fn) {
    const off = this.on(type, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        // One listener's failure does not stop the others, nor the connection.
        if (type !== "listener-error" && this._listeners.get("listener-error")?.size) this.emit("listener-error", e, type);
        else console.error(`listener of '${type}' failed:`, e);
      }
    }
  }

  /**
   * Resolves with the first `type` event's first argument for which predicate holds;
   * rejects after timeoutMs (tests, scripts).
   */
  waitFor(type, { predicate = () => true, timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for '${type}'`));
      }, timeoutMs);
      const off = this.on(type, (...args) => {
        if (!predicate(...args)) return;
        clearTimeout(timer);
        off();
        resolve(args[0]);
      });
    });
  }
}
