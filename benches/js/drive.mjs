// The load driver of the benchmark suite's system workloads (`suite run`).
// It talks to `convexd` only through the official client (`ConvexClient`
// from `convex/browser`, over the WebSocket sync protocol), and to the
// PostgreSQL + LISTEN/NOTIFY baseline (`pgchat`) through plain WebSockets
// (`ws`), measuring both the same way in this one process.
//
// Usage: node drive.mjs <workload> '<json config>'
//   workload: chat | insert | counter | fanout
// Prints progress on stderr and one JSON object (the measurements, raw
// latency samples in ms) as the last line of stdout; exits 1 with the
// reason on stderr when the server misbehaves or a bound runs out.
// Every loop is bounded in count and in time.
import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";
import WebSocket from "ws";

const api = anyApi;
const [workload, configText] = process.argv.slice(2);
const config = JSON.parse(configText ?? "{}");
const runId = Math.random().toString(36).slice(2, 8);

// Latency samples kept per series at most; beyond it, a uniform reservoir.
const SAMPLES_MAX = 200_000;
// Sessions opening at once.
const OPEN_BATCH = 100;
// Messages a subscriber's query returns (newest first).
const LIMIT = 20;
// Error messages kept (the count goes on).
const ERRORS_KEPT = 100;

/** Keeps the first ERRORS_KEPT errors and counts them all. */
class Errors {
  constructor() {
    this.kept = [];
    this.total = 0;
  }
  push(e) {
    this.total++;
    if (this.kept.length < ERRORS_KEPT) this.kept.push(e);
  }
  get length() {
    return this.total;
  }
  get first() {
    return this.kept[0];
  }
}

/** Wall clock in ms with a fraction: one clock for senders and receivers. */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => process.stderr.write(`drive ${workload}: ${msg}\n`);
// The suite measures CPU between these two lines (stderr is written
// synchronously to a pipe).
const mark = (what) => process.stderr.write(`@@measure-${what}\n`);

function fail(msg) {
  throw new Error(msg);
}

/** A bounded list of samples: every sample until SAMPLES_MAX, then a reservoir. */
class Samples {
  constructor() {
    this.values = [];
    this.seen = 0;
  }
  push(v) {
    this.seen++;
    if (this.values.length < SAMPLES_MAX) {
      this.values.push(v);
    } else {
      const i = Math.floor(Math.random() * this.seen);
      if (i < SAMPLES_MAX) this.values[i] = v;
    }
  }
}

async function until(what, check, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(5);
  }
  fail(`timed out after ${ms} ms waiting for ${what}`);
}

function withTimeout(what, promise, ms) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

const clients = [];
function convexClient() {
  const c = new ConvexClient(config.url, { unsavedChangesWarning: false });
  clients.push(c);
  return c;
}

const sockets = [];
function pgSocket() {
  const ws = new WebSocket(config.url, { perMessageDeflate: false });
  sockets.push(ws);
  return ws;
}

function text(bytes, seed) {
  const words = ["the", "room", "said", "hello", "and", "then", "every", "one", "replied", "soon"];
  let s = "";
  let x = seed;
  while (s.length < bytes) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += (s ? " " : "") + words[x % words.length];
  }
  return s.slice(0, bytes);
}

// ---------------------------------------------------------------------------
// chat: S subscribers watch the newest LIMIT messages of one room each
// (subscriber i watches room i mod R); senders post messages open loop at
// a fixed rate, each to a random room, which must reach every subscriber
// of that room. Latency: the sender's clock at send to the subscriber's
// clock when an update first shows the message.

/** A subscriber's bookkeeping, the same for both targets. */
class Subscriber {
  constructor(room, shared) {
    this.room = room;
    this.shared = shared;
    this.lastSeqs = new Set();
    this.ready = false;
  }
  onMessages(messages) {
    const seqs = new Set();
    const t = now();
    for (const m of messages) {
      seqs.add(m.seq);
      if (this.ready && !this.lastSeqs.has(m.seq) && m.seq >= this.shared.measuredFrom) {
        this.shared.latencies.push(t - m.sentAt);
        this.shared.received++;
      }
    }
    this.lastSeqs = seqs;
    if (!this.ready) {
      this.ready = true;
      this.shared.ready++;
    }
  }
}

/** The convexd side of chat: ConvexClient sessions and mutations. */
const convexChat = {
  subscribe(room, sub) {
    const c = convexClient();
    c.onUpdate(
      api.chat.list,
      { room, limit: LIMIT },
      (messages) => sub.onMessages(messages),
      (err) => sub.shared.errors.push(`query failed: ${err}`),
    );
  },
  async sender() {
    const c = convexClient();
    return (msg) => c.mutation(api.chat.send, msg);
  },
};

/** The baseline's side: one WebSocket per session, JSON messages. */
const pgChat = {
  subscribe(room, sub) {
    const ws = pgSocket();
    ws.on("open", () => ws.send(JSON.stringify({ type: "subscribe", room, limit: LIMIT })));
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === "messages") sub.onMessages(m.messages);
      else if (m.type === "error") sub.shared.errors.push(`server: ${m.message}`);
    });
    ws.on("error", (e) => sub.shared.errors.push(`socket: ${e.message}`));
  },
  async sender() {
    const ws = pgSocket();
    const pending = new Map();
    let next = 0;
    await withTimeout(
      "a sender's socket",
      new Promise((resolve, reject) => {
        ws.on("open", resolve);
        ws.on("error", reject);
      }),
      30_000,
    );
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString());
      const p = pending.get(m.id);
      if (p === undefined) return;
      pending.delete(m.id);
      if (m.type === "sent") p.resolve(null);
      else p.reject(new Error(m.message ?? `unexpected ${m.type}`));
    });
    return (msg) =>
      new Promise((resolve, reject) => {
        const id = next++;
        pending.set(id, { resolve, reject });
        ws.send(JSON.stringify({ type: "send", id, ...msg }));
      });
  },
};

async function chat() {
  const target = config.target === "pg" ? pgChat : convexChat;
  const { subscribers, rooms, rate, seconds, warmup, senders } = config;
  const drainMs = (config.drainSeconds ?? 10) * 1000;
  const roomName = (r) => `${runId}-r${r}`;
  const warmupCount = Math.round(rate * warmup);
  const total = warmupCount + Math.round(rate * seconds);
  const shared = {
    measuredFrom: warmupCount,
    latencies: new Samples(),
    received: 0,
    ready: 0,
    errors: new Errors(),
  };
  const perRoom = new Array(rooms).fill(0);
  const subs = [];
  const openStarted = now();
  for (let i = 0; i < subscribers; i += OPEN_BATCH) {
    for (let j = i; j < Math.min(subscribers, i + OPEN_BATCH); j++) {
      const sub = new Subscriber(roomName(j % rooms), shared);
      perRoom[j % rooms]++;
      subs.push(sub);
      target.subscribe(sub.room, sub);
    }
    await until(
      `subscribers ${i}..${i + OPEN_BATCH} to get their first result`,
      () => shared.ready >= Math.min(subscribers, i + OPEN_BATCH) || shared.errors.length > 0,
      60_000,
    );
    if (shared.errors.length > 0) fail(shared.errors.first);
  }
  const openSeconds = (now() - openStarted) / 1000;
  log(`${subscribers} subscribers ready in ${openSeconds.toFixed(1)} s`);
  const send = [];
  for (let i = 0; i < senders; i++) send.push(await target.sender());

  const acks = new Samples();
  let answered = 0;
  let failed = 0;
  let expected = 0;
  const started = now();
  let measureStarted = null;
  const period = 1000 / rate;
  const body = text(config.bodyBytes ?? 100, 7);
  for (let seq = 0; seq < total; seq++) {
    const at = started + seq * period;
    const wait = at - now();
    if (wait > 0) await sleep(wait);
    if (seq === warmupCount) {
      measureStarted = now();
      mark("start");
    }
    const r = Math.floor(Math.random() * rooms);
    const sentAt = now();
    const msg = { room: roomName(r), author: `user${seq % 97}`, body, sentAt, seq };
    send[seq % senders](msg).then(
      () => {
        answered++;
        if (seq >= warmupCount) {
          acks.push(now() - sentAt);
          expected += perRoom[r];
        }
      },
      (e) => {
        answered++;
        failed++;
        shared.errors.push(`send failed: ${e.message ?? e}`);
      },
    );
  }
  const measureSeconds = measureStarted === null ? 0 : (now() - measureStarted) / 1000;
  mark("end");
  const lastSend = now();
  const drainDeadline = Date.now() + drainMs;
  while (Date.now() < drainDeadline && (answered < total || shared.received < expected)) {
    await sleep(10);
  }
  return {
    target: config.target,
    subscribers,
    rooms,
    sent: total,
    measured: total - warmupCount,
    answered,
    failed,
    expected,
    received: shared.received,
    measure_seconds: measureSeconds,
    open_seconds: openSeconds,
    drain_seconds: (now() - lastSend) / 1000,
    latency_ms: shared.latencies.values,
    ack_ms: acks.values,
    errors: shared.errors.kept.slice(0, 5),
    error_count: shared.errors.total,
  };
}

// ---------------------------------------------------------------------------
// insert: C clients, each awaiting one insert mutation at a time (closed
// loop), for the warm-up and then the measured seconds.

// `expected(e)`: an error the workload counts (`gave_up`) and goes on
// after, instead of failing.
async function closedLoop(count, makeOp, expected = () => false) {
  const { seconds, warmup } = config;
  const latencies = new Samples();
  const start = now();
  const measureFrom = start + warmup * 1000;
  const until = measureFrom + seconds * 1000;
  const opsMax = config.opsMax ?? 10_000_000;
  let ops = 0;
  let all = 0;
  let gaveUp = 0;
  let lastDone = measureFrom;
  const errors = [];
  const workers = [];
  let marked = 0;
  const markNext = () => mark(marked++ === 0 ? "start" : "end");
  const marks = [setTimeout(markNext, warmup * 1000), setTimeout(markNext, (warmup + seconds) * 1000)];
  for (let i = 0; i < count; i++) {
    const op = await makeOp(i);
    workers.push(
      (async () => {
        for (let n = 0; n < opsMax; n++) {
          const t = now();
          if (t >= until || errors.length > 0) return;
          try {
            await op(n);
          } catch (e) {
            if (expected(e)) {
              gaveUp++;
              continue;
            }
            errors.push(String(e.message ?? e));
            return;
          }
          all++;
          const done = now();
          if (t >= measureFrom) {
            latencies.push(done - t);
            ops++;
            lastDone = Math.max(lastDone, done);
          }
        }
      })(),
    );
  }
  await withTimeout("the workers", Promise.all(workers), (warmup + seconds) * 1000 + 120_000);
  for (const m of marks) clearTimeout(m);
  while (marked < 2) markNext();
  if (errors.length > 0) fail(errors[0]);
  return {
    clients: count,
    ops,
    all_ops: all,
    gave_up: gaveUp,
    elapsed_seconds: Math.max(1e-9, (lastDone - measureFrom) / 1000),
    latency_ms: latencies.values,
  };
}

async function insert() {
  const body = text(config.bodyBytes ?? 100, 3);
  return closedLoop(config.clients, async (i) => {
    const c = convexClient();
    return (n) => c.mutation(api.events.add, { client: i, n, body });
  });
}

// ---------------------------------------------------------------------------
// counter: C clients increment one counter document in a closed loop; every
// increment reads and writes it, so they conflict and the server retries.

async function counter() {
  const name = `hot-${runId}`;
  const setup = convexClient();
  await withTimeout("creating the counter", setup.mutation(api.counters.create, { name }), 30_000);
  // The server runs a conflicting mutation again a bounded number of times;
  // one that conflicted every time fails with this message, and commits
  // nothing. The workload counts those.
  const exhausted = (e) => String(e.message ?? e).includes("changed while this mutation was being run");
  const result = await closedLoop(
    config.clients,
    async () => {
      const c = convexClient();
      return () => c.mutation(api.counters.increment, { name, writtenAt: now() });
    },
    exhausted,
  );
  const final = await withTimeout("reading the counter", setup.query(api.counters.get, { name, viewer: -1 }), 30_000);
  return { ...result, final_value: final?.value ?? null };
}

// ---------------------------------------------------------------------------
// fanout: Q distinct live queries (spread over K sessions) all read one
// counter; one write at a time, and the time from its send until each
// query shows it, until every query has it.

async function fanout() {
  const { queries, sessions, writes } = config;
  const timeoutMs = (config.writeTimeoutSeconds ?? 30) * 1000;
  const name = `fan-${runId}`;
  const writer = convexClient();
  await withTimeout("creating the counter", writer.mutation(api.counters.create, { name }), 30_000);
  const seen = new Array(queries).fill(-1);
  const errors = new Errors();
  let target = 0;
  let sentAt = 0;
  let arrived = 0;
  const latencies = new Samples();
  const openStarted = now();
  const perSession = Math.ceil(queries / sessions);
  let ready = 0;
  for (let s = 0; s < sessions; s++) {
    const c = convexClient();
    for (let q = s * perSession; q < Math.min(queries, (s + 1) * perSession); q++) {
      c.onUpdate(
        api.counters.get,
        { name, viewer: q },
        (v) => {
          const value = v?.value ?? -1;
          if (seen[q] === -1) ready++;
          if (value >= target && seen[q] < target && target > 0) {
            latencies.push(now() - sentAt);
            arrived++;
          }
          seen[q] = Math.max(seen[q], value);
        },
        (err) => errors.push(`query failed: ${err}`),
      );
    }
    if ((s + 1) % 10 === 0 || s === sessions - 1) {
      await until(`${ready} of the live queries to get their first result`, () => ready >= Math.min(queries, (s + 1) * perSession) || errors.length > 0, 120_000);
      if (errors.length > 0) fail(errors.first);
    }
  }
  const openSeconds = (now() - openStarted) / 1000;
  log(`${queries} live queries over ${sessions} sessions ready in ${openSeconds.toFixed(1)} s`);
  const toAll = [];
  const mutationMs = [];
  mark("start");
  for (let w = 1; w <= writes; w++) {
    target = w;
    arrived = 0;
    sentAt = now();
    const value = await withTimeout("a write", writer.mutation(api.counters.increment, { name, writtenAt: sentAt }), timeoutMs);
    mutationMs.push(now() - sentAt);
    if (value !== w) fail(`the counter reads ${value} after write ${w}`);
    await until(`write ${w} to reach all ${queries} queries (${arrived} so far)`, () => arrived >= queries || errors.length > 0, timeoutMs);
    if (errors.length > 0) fail(errors.first);
    toAll.push(now() - sentAt);
    await sleep(50);
  }
  mark("end");
  return {
    queries,
    sessions,
    writes,
    open_seconds: openSeconds,
    latency_ms: latencies.values,
    to_all_ms: toAll,
    mutation_ms: mutationMs,
  };
}

// ---------------------------------------------------------------------------

const workloads = { chat, insert, counter, fanout };
const run = workloads[workload];
if (run === undefined) {
  process.stderr.write(`drive: unknown workload ${JSON.stringify(workload)}; use one of ${Object.keys(workloads).join(", ")}\n`);
  process.exit(2);
}
const hardLimitMs = (config.hardLimitSeconds ?? 600) * 1000;
const killer = setTimeout(() => {
  process.stderr.write(`drive ${workload}: still running after ${hardLimitMs} ms; giving up\n`);
  process.exit(1);
}, hardLimitMs);
try {
  const result = await run();
  // A pipe is written asynchronously: exit only once it has taken it all.
  await new Promise((resolve) => process.stdout.write(JSON.stringify(result) + "\n", resolve));
  clearTimeout(killer);
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  for (const s of sockets) s.terminate();
  process.exit(0);
} catch (e) {
  process.stderr.write(`drive ${workload}: ${e.stack ?? e}\n`);
  process.exit(1);
}
