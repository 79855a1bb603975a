#!/usr/bin/env node
// Load generator for bench/relay: one Node.js process, driven by run.py over stdin/stdout.
//
// It speaks either server's protocol with the same `ws` client code:
//   edge  - ct protocol v1: JSON host/join, then binary `flags|to|payload` frames,
//           received as `flags|seq|from|payload`; receivers send {"type":"ack"} every 128.
//   y     - y-websocket: every client of a room gets each awareness update the sender
//           makes (the server decodes, applies and re-encodes it, then sends it to all).
//
// Commands (argv[2]): `idle` and `fanout`, options as --name value. Every event is one
// JSON line on stdout; run.py answers on stdin ("next", "start", "close").

'use strict'

const WebSocket = require('ws')
const readline = require('readline')
const { performance } = require('perf_hooks')

function parseArgs (argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i += 2) {
    opts[argv[i].replace(/^--/, '')] = argv[i + 1]
  }
  return opts
}

const cmd = process.argv[2]
const opts = parseArgs(process.argv.slice(3))
const kind = opts.server // 'edge' or 'y'
const base = opts.url // ws://127.0.0.1:PORT
const hardDeadline = Date.now() + 1000 * Number(opts.timeout || 600)

function emit (obj) { process.stdout.write(JSON.stringify(obj) + '\n') }
function fail (msg) { emit({ event: 'error', message: String(msg) }); process.exit(2) }

setInterval(() => { if (Date.now() > hardDeadline) fail('load generator time limit') }, 1000).unref()

const lines = []
let lineWaiter = null
readline.createInterface({ input: process.stdin }).on('line', l => {
  if (lineWaiter) { const w = lineWaiter; lineWaiter = null; w(l.trim()) } else lines.push(l.trim())
}).on('close', () => process.exit(0)) // orchestrator went away: stop
function nextLine () {
  return new Promise(resolve => { if (lines.length) resolve(lines.shift()); else lineWaiter = resolve })
}
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function open (url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 20000 })
    ws.binaryType = 'nodebuffer'
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

function firstMessage (ws, pred) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no handshake reply within 20 s')), 20000)
    const on = (data, isBinary) => {
      if (!pred || pred(data, isBinary)) { clearTimeout(t); ws.off('message', on); resolve(data) }
    }
    ws.on('message', on)
    ws.once('close', (code, reason) => { clearTimeout(t); reject(new Error(`closed ${code} ${reason}`)) })
  })
}

// ---------------------------------------------------------------- edge protocol v1

const edgeUrl = () => base + '/ws/session'
const isControl = (data, isBinary) => !isBinary

async function edgeHost (name) {
  const ws = await open(edgeUrl())
  const reply = firstMessage(ws, isControl)
  ws.send(JSON.stringify({ type: 'host', v: 1, name, client: 'bench' }))
  const hosted = JSON.parse(await reply)
  if (hosted.type !== 'hosted') throw new Error('host refused: ' + JSON.stringify(hosted))
  return { ws, session: hosted.session, token: hosted.joinToken }
}

async function edgeJoin (session, token, name) {
  const ws = await open(edgeUrl())
  const reply = firstMessage(ws, isControl)
  ws.send(JSON.stringify({ type: 'join', v: 1, session, token, name, client: 'bench' }))
  const joined = JSON.parse(await reply)
  if (joined.type !== 'joined') throw new Error('join refused: ' + JSON.stringify(joined))
  return ws
}

// A group = one session (edge) or one room (y): first member hosts, the others join.
async function openGroup (g, size) {
  if (kind === 'edge') {
    const host = await edgeHost(`h${g}`)
    const guests = await Promise.all(Array.from({ length: size - 1 },
      (_, i) => edgeJoin(host.session, host.token, `g${g}-${i}`)))
    return [host.ws, ...guests]
  }
  return Promise.all(Array.from({ length: size }, () => yOpen(`room-${g}`)))
}

// ---------------------------------------------------------------- y-websocket protocol

const SYNC_STEP1_EMPTY = Buffer.from([0, 0, 1, 0]) // messageSync, step 1, state vector {}

async function yOpen (room) {
  const ws = await open(`${base}/${room}`)
  const first = firstMessage(ws) // the server's sync step 1
  ws.send(SYNC_STEP1_EMPTY) // like a fresh y-websocket client: our (empty) state vector
  await first
  return ws
}

function writeVarUint (arr, n) {
  while (n > 0x7f) { arr.push(0x80 | (n & 0x7f)); n = Math.floor(n / 128) }
  arr.push(n)
}

// awareness message: [1, varUint8Array([1 client, clientID, clock, varString(state)])]
function yAwareness (clientID, clock, size) {
  const head = []
  writeVarUint(head, 1)
  writeVarUint(head, clientID)
  writeVarUint(head, clock)
  let state = `{"c":"${'x'.repeat(Math.max(0, size - 40))}"}`
  const sb = Buffer.from(state)
  const strLen = []
  writeVarUint(strLen, sb.length)
  const inner = Buffer.concat([Buffer.from(head), Buffer.from(strLen), sb])
  const outerLen = []
  writeVarUint(outerLen, inner.length)
  return Buffer.concat([Buffer.from([1]), Buffer.from(outerLen), inner])
}

function readVarUint (buf, pos) {
  let n = 0; let mult = 1
  for (;;) {
    const b = buf[pos.p++]
    n += (b & 0x7f) * mult
    if (b < 0x80) return n
    mult *= 128
  }
}

// ---------------------------------------------------------------- idle connections

async function idle () {
  const steps = opts.steps.split(',').map(Number)
  const group = Number(opts.group || 10)
  const parallel = Number(opts.parallel || 50)
  const conns = []
  let g = 0
  for (const target of steps) {
    while (conns.length < target) {
      const batch = []
      let planned = conns.length
      for (let k = 0; k < parallel && planned < target; k++) {
        const size = Math.min(group, target - planned)
        planned += size
        batch.push(openGroup(g++, size))
      }
      for (const members of await Promise.all(batch)) conns.push(...members)
    }
    const closedCount = () => conns.filter(ws => ws.readyState !== WebSocket.OPEN).length
    emit({ event: 'step', connections: conns.length, closed: closedCount() })
    let answer = await nextLine()
    while (answer === 'count') { // after the orchestrator's wait: still open?
      emit({ event: 'count', connections: conns.length, closed: closedCount() })
      answer = await nextLine()
    }
    if (answer !== 'next') break
  }
  for (const ws of conns) ws.terminate()
  emit({ event: 'closed' })
  await sleep(200)
  process.exit(0)
}

// ---------------------------------------------------------------- fan-out

async function fanout () {
  const receivers = Number(opts.receivers)
  const rate = Number(opts.rate || 0) // frames/s; 0 = closed loop
  const duration = Number(opts.duration || 5) * 1000
  const warmup = Number(opts.warmup || 1) * 1000
  const window = Number(opts.window || 32)
  const size = Number(opts.size || 100)
  const ackEvery = 128
  const CAP = 1 << 22
  const sentAt = new Float64Array(CAP) // send time by frame index (ring)
  const lat = new Float64Array(Number(opts.samples || 2000000))
  let nLat = 0
  let recording = false
  let sent = 0
  let delivered = 0 // frames the server delivered to our clients (y: including the echo)
  let late = 0 // deliveries of frames older than the ring (none expected)
  const perReceiver = new Array(receivers).fill(0)

  let sender
  const recv = []
  const senderID = 424242
  const echo = kind === 'y' ? 1 : 0 // y-websocket also sends each update back to its sender

  function record (index, r) {
    delivered++
    perReceiver[r]++
    if (recording && r >= 0 && nLat < lat.length) {
      if (sent - index >= CAP) late++
      else lat[nLat++] = performance.now() - sentAt[index & (CAP - 1)]
    }
  }

  if (kind === 'edge') {
    const host = await edgeHost('sender')
    sender = host.ws
    for (let i = 0; i < receivers; i += 50) {
      const n = Math.min(50, receivers - i)
      recv.push(...await Promise.all(Array.from({ length: n },
        (_, k) => edgeJoin(host.session, host.token, `r${i + k}`))))
    }
    recv.forEach((ws, r) => {
      let lastAck = 0
      ws.on('message', (data, isBinary) => {
        if (!isBinary) return
        const seq = Number(data.readBigUInt64BE(1))
        record(data.readUInt32BE(13), r)
        if (seq - lastAck >= ackEvery) { lastAck = seq; ws.send(`{"type":"ack","seq":${seq}}`) }
        schedulePump()
      })
    })
  } else {
    sender = await yOpen('fanout')
    recv.push(...await Promise.all(Array.from({ length: receivers }, () => yOpen('fanout'))))
    const onAwareness = r => (data) => {
      if (data[0] !== 1) return // sync messages
      const pos = { p: 1 }
      readVarUint(data, pos) // length of the update
      if (readVarUint(data, pos) !== 1) return
      if (readVarUint(data, pos) !== senderID) return
      record(readVarUint(data, pos) - 1, r) // clock = index + 1
      schedulePump()
    }
    recv.forEach((ws, r) => ws.on('message', onAwareness(r)))
    sender.on('message', onAwareness(-1))
  }
  sender.on('close', (code) => { if (!finished) fail(`sender closed ${code}`) })
  let finished = false
  const perFrame = receivers + echo

  const edgeFrame = Buffer.alloc(5 + size) // flags 0, to 0 (everyone), payload: index + filler
  edgeFrame.fill(0x61, 9)
  function sendOne () {
    const index = sent++
    sentAt[index & (CAP - 1)] = performance.now()
    if (kind === 'edge') {
      const f = Buffer.from(edgeFrame)
      f.writeUInt32BE(index, 5)
      sender.send(f, { binary: true })
    } else {
      sender.send(yAwareness(senderID, index + 1, size), { binary: true })
    }
  }

  let pumpQueued = false
  let pumping = false // closed loop only
  function schedulePump () {
    if (pumping && !pumpQueued) { pumpQueued = true; setImmediate(pump) }
  }
  function pump () {
    pumpQueued = false
    if (!pumping) return
    const sock = sender._socket
    sock.cork()
    while ((sent * perFrame - delivered) < window * perFrame) sendOne()
    sock.uncork()
  }

  let ticker = null
  function startRate () {
    const t0 = performance.now()
    const s0 = sent
    ticker = setInterval(() => {
      const due = s0 + Math.floor((performance.now() - t0) * rate / 1000)
      if (due > sent) {
        const sock = sender._socket
        sock.cork()
        while (sent < due) sendOne()
        sock.uncork()
      }
    }, 1)
  }
  function startLoad () { if (rate > 0) startRate(); else { pumping = true; pump() } }
  function stopLoad () { pumping = false; if (ticker) clearInterval(ticker); ticker = null }

  async function drain (ms) {
    const until = performance.now() + ms
    while (delivered < sent * perFrame && performance.now() < until) await sleep(5)
  }

  // warm-up (not measured), then wait until everything is delivered
  emit({ event: 'connected', connections: receivers + 1 })
  startLoad()
  await sleep(warmup)
  stopLoad()
  await drain(10000)
  if (delivered !== sent * perFrame) fail(`warm-up lost frames: ${delivered}/${sent * perFrame}`)
  emit({ event: 'ready' })
  if (await nextLine() !== 'start') process.exit(0)
  const sent0 = sent
  const delivered0 = delivered
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  recording = true
  startLoad()
  await sleep(duration)
  stopLoad()
  const tSend = performance.now() - t0
  await drain(10000)
  const t1 = performance.now()
  recording = false
  finished = true
  const cpu = process.cpuUsage(cpu0)
  const frames = sent - sent0
  const got = delivered - delivered0
  const sorted = lat.subarray(0, nLat).sort()
  const q = p => nLat ? sorted[Math.min(nLat - 1, Math.floor(p * nLat))] : null
  emit({
    event: 'done',
    frames,
    deliveries: got,
    expected: frames * perFrame,
    lost: frames * perFrame - got,
    late,
    send_seconds: tSend / 1000,
    seconds: (t1 - t0) / 1000,
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    max_ms: nLat ? sorted[nLat - 1] : null,
    client_cpu_s: (cpu.user + cpu.system) / 1e6,
    min_receiver: Math.min(...perReceiver)
  })
  await nextLine()
  finished = true
  for (const ws of [sender, ...recv]) ws.terminate()
  await sleep(100)
  process.exit(0)
}

const main = cmd === 'idle' ? idle : cmd === 'fanout' ? fanout : () => fail('usage: loadgen.js idle|fanout ...')
main().catch(e => fail(e && e.stack ? e.stack : e))
