// Preloaded into the y-websocket server (node --expose-gc -r ./gc_on_signal.js) by run.py:
// SIGUSR2 runs a full garbage collection, so idle memory can also be read without the
// garbage V8 has not collected yet. It changes nothing else in the server.
'use strict'
process.on('SIGUSR2', () => { if (global.gc) global.gc() })
