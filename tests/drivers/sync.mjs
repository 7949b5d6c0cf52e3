// Drives the bank fixture app through the official ConvexClient over the
// WebSocket sync protocol (Node, `ws`).
// Usage: node sync.mjs <url> <step> [args...]; prints one JSON line last;
// exits non-zero (with the failed assertion) when the server misbehaves.
// Every wait is bounded.
import assert from "node:assert/strict";
import net from "node:net";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";

const [url, step, ...rest] = process.argv.slice(2);
const api = anyApi;
const http = new ConvexHttpClient(url);
const clients = [];

function client(address = url) {
  const c = new ConvexClient(address, { unsavedChangesWarning: false });
  clients.push(c);
  return c;
}

const run = Math.random().toString(36).slice(2, 8);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await sleep(10);
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}`);
}

function withTimeout(what, promise, ms = 60000) {
  return Promise.race([
    promise,
    sleep(ms).then(() => assert.fail(`timed out after ${ms} ms: ${what}`)),
  ]);
}

// A subscription sees another client's mutation, and a mutation's promise
// resolves only once its own client's queries reflect it.
async function live() {
  const a = client();
  const b = client();
  let seenByA = null;
  a.onUpdate(api.accounts.ledger, {}, (v) => (seenByA = v));
  let seenByB = null;
  b.onUpdate(api.accounts.ledger, {}, (v) => (seenByB = v));
  await until("the first results", () => seenByA !== null && seenByB !== null);
  const before = seenByA.length;
  await withTimeout("mutation", b.mutation(api.accounts.record, { key: "live-1" }));
  // Resolved only after a Transition covering its commit: b's own
  // subscription already shows it.
  assert.ok(seenByB.includes("live-1"), "b's query reflects b's mutation when it resolves");
  await until("a to see b's mutation", () => seenByA.includes("live-1"));
  assert.equal(seenByA.length, before + 1);
  // Failures arrive as rejected promises; actions run too.
  await assert.rejects(b.mutation(api.accounts.nope, {}), /Could not find public function/);
  const total = await b.query(api.accounts.total, {});
  return { before, after: seenByA.length, total };
}

// Concurrent transfers; every subscriber's view of all balances, taken at
// each update, sums to the same total.
async function bank(transfers, accounts = 10, start = 100) {
  const n = Number(accounts);
  await http.mutation(api.accounts.init, { n, balance: start });
  const names = Array.from({ length: n }, (_, i) => `acct${i}`);
  const expected = n * start;
  const observers = [client(), client()];
  let views = 0;
  const broken = [];
  for (const o of observers) {
    const balances = new Map();
    for (const name of names) {
      o.onUpdate(api.accounts.balance, { name }, (v) => {
        balances.set(name, v);
        // Every query of this client, as of the Transition just applied.
        if (balances.size === n) {
          let sum = 0;
          for (const m of names) {
            sum += o.client.localQueryResult("accounts:balance", { name: m });
          }
          views++;
          if (sum !== expected) broken.push(sum);
        }
      });
    }
    await until("all balances", () => balances.size === n);
  }
  const writers = [client(), client(), client(), client()];
  let ok = 0;
  const count = Number(transfers);
  const jobs = [];
  for (let i = 0; i < count; i++) {
    const w = writers[i % writers.length];
    const from = names[Math.floor(Math.random() * n)];
    const to = names[Math.floor(Math.random() * n)];
    jobs.push(
      w.mutation(api.accounts.transfer, { from, to, amount: 1 + Math.floor(Math.random() * 20) })
        .then((moved) => { if (moved) ok++; }),
    );
  }
  await withTimeout("transfers", Promise.all(jobs), 240000);
  const total = await http.query(api.accounts.total, {});
  assert.equal(total, expected, "the total is preserved");
  assert.deepEqual(broken, [], "no subscriber saw a broken invariant");
  return { transfers: count, moved: ok, views, total };
}

// A TCP proxy whose connections can be cut, to drop the client's socket.
function proxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(Number(port), hostname);
    sockets.add(inbound);
    sockets.add(outbound);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const close = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on("error", close).on("close", close);
    outbound.on("error", close).on("close", close);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        cut() {
          const n = sockets.size;
          for (const s of sockets) s.destroy();
          sockets.clear();
          return n;
        },
        close() {
          server.close();
        },
      });
    });
  });
}

// Mutations in flight while the socket is cut again and again: after
// reconnecting, the client re-sends what is unresolved, and each is
// applied exactly once.
async function dropped(count = 200) {
  const p = await proxy(url);
  const c = client(p.url);
  let ledger = null;
  c.onUpdate(api.accounts.ledger, {}, (v) => (ledger = v));
  await until("the ledger", () => ledger !== null);
  const n = Number(count);
  const keys = Array.from({ length: n }, (_, i) => `drop-${run}-${i}`);
  const done = [];
  let cuts = 0;
  let i = 0;
  // Start a batch, cut the socket while it is in flight, wait for the
  // client to reconnect, and again.
  while (i < n) {
    for (let j = 0; j < 40 && i < n; j++, i++) {
      done.push(c.mutation(api.accounts.record, { key: keys[i] }));
    }
    await sleep(5 + Math.floor(Math.random() * 20));
    if (p.cut() > 0) cuts++;
    await until("the client to reconnect", () => c.connectionState().isWebSocketConnected, 30000);
  }
  await withTimeout("mutations across dropped sockets", Promise.all(done), 120000);
  await until("the ledger to show every key", () => keys.every((k) => ledger.includes(k)), 30000);
  const final = await http.query(api.accounts.ledger, {});
  const mine = final.filter((k) => k.startsWith(`drop-${run}-`));
  assert.equal(mine.length, n, `each mutation applied exactly once (${mine.length} rows for ${n} keys)`);
  assert.equal(new Set(mine).size, n);
  p.close();
  return { mutations: n, cuts, rows: mine.length };
}

// Mutations before and after a server restart (the test restarts convexd
// when this prints RESTART): every one is applied exactly once and the
// subscription resumes.
async function restart(count = 60) {
  const c = client();
  let ledger = null;
  c.onUpdate(api.accounts.ledger, {}, (v) => (ledger = v));
  await until("the ledger", () => ledger !== null);
  const n = Number(count);
  const keys = Array.from({ length: n }, (_, i) => `restart-${run}-${i}`);
  const done = [];
  for (let i = 0; i < n; i++) {
    done.push(c.mutation(api.accounts.record, { key: keys[i] }));
    if (i === Math.floor(n / 2)) {
      console.log("RESTART");
    }
    await sleep(20);
  }
  await withTimeout("mutations across the restart", Promise.all(done), 120000);
  await until("the ledger to show every key", () => keys.every((k) => ledger.includes(k)), 60000);
  const final = await http.query(api.accounts.ledger, {});
  const mine = final.filter((k) => k.startsWith(`restart-${run}-`));
  assert.equal(mine.length, n, `each mutation applied exactly once (${mine.length} rows for ${n} keys)`);
  assert.equal(new Set(mine).size, n);
  return { mutations: n, rows: mine.length };
}

// Two live pages of a paginated query (newest first): new documents grow
// the first page instead of pushing one into the second, so the pages
// stay gapless; a deleted-in-between view is not needed for this check.
async function paginate() {
  for (let i = 0; i < 12; i++) await http.mutation(api.accounts.post, { n: i });
  const c = client();
  let first = null;
  c.onUpdate(api.accounts.page, { paginationOpts: { numItems: 5, cursor: null, id: 1 } }, (v) => (first = v));
  await until("page 1", () => first !== null);
  assert.deepEqual(first.page.map((m) => m.n), [11, 10, 9, 8, 7]);
  let second = null;
  c.onUpdate(api.accounts.page, { paginationOpts: { numItems: 5, cursor: first.continueCursor, id: 1 } }, (v) => (second = v));
  await until("page 2", () => second !== null);
  assert.deepEqual(second.page.map((m) => m.n), [6, 5, 4, 3, 2]);
  for (let i = 12; i < 15; i++) await c.mutation(api.accounts.post, { n: i });
  await until("page 1 to grow", () => first.page.length === 8, 20000);
  assert.deepEqual(first.page.map((m) => m.n), [14, 13, 12, 11, 10, 9, 8, 7]);
  assert.deepEqual(second.page.map((m) => m.n), [6, 5, 4, 3, 2]);
  const all = await http.query(api.accounts.all, {});
  const seen = [...first.page, ...second.page].map((m) => m.n);
  assert.deepEqual(seen, all.slice(0, seen.length), "the pages are the newest documents, gapless");
  return { page1: first.page.length, page2: second.page.length };
}

// Raw protocol checks with `ws`: the version chain, and the errors a
// misbehaving client gets.
async function protocol(adminKey) {
  const { default: WebSocket } = await import("ws");
  const wsUrl = url.replace(/^http/, "ws") + "/api/1.48.0/sync";
  function open() {
    const ws = new WebSocket(wsUrl);
    const inbox = [];
    let closed = null;
    ws.on("message", (m) => inbox.push(JSON.parse(m.toString())));
    ws.on("close", (code) => (closed = code));
    const ready = new Promise((resolve, reject) => {
      ws.on("open", resolve);
      ws.on("error", reject);
    });
    return {
      ws,
      inbox,
      closed: () => closed,
      ready,
      send: (m) => ws.send(JSON.stringify(m)),
      async next(type) {
        await until(`a ${type} message`, () => inbox.some((m) => m.type === type), 10000);
        return inbox.splice(inbox.findIndex((m) => m.type === type), 1)[0];
      },
    };
  }
  const connect = { type: "Connect", sessionId: crypto.randomUUID(), connectionCount: 0, lastCloseReason: "InitialConnect", clientTs: Date.now() };
  const a = open();
  await a.ready;
  a.send(connect);
  a.send({ type: "ModifyQuerySet", baseVersion: 0, newVersion: 1, modifications: [{ type: "Add", queryId: 0, udfPath: "accounts:total", args: [{}] }] });
  const t1 = await a.next("Transition");
  assert.deepEqual(t1.startVersion, { querySet: 0, identity: 0, ts: "AAAAAAAAAAA=" });
  assert.equal(t1.endVersion.querySet, 1);
  assert.equal(t1.modifications[0].type, "QueryUpdated");
  assert.equal(t1.modifications[0].queryId, 0);
  assert.equal(typeof t1.modifications[0].value, "number");
  // Removing it gives QueryRemoved and chains from the previous end.
  a.send({ type: "ModifyQuerySet", baseVersion: 1, newVersion: 2, modifications: [{ type: "Remove", queryId: 0 }] });
  const t2 = await a.next("Transition");
  assert.deepEqual(t2.startVersion, t1.endVersion);
  assert.deepEqual(t2.modifications, [{ type: "QueryRemoved", queryId: 0 }]);
  // A mutation is answered, then a Transition covers its commit.
  a.send({ type: "Mutation", requestId: 0, udfPath: "accounts:record", args: [{ key: `raw-${run}` }] });
  const r = await a.next("MutationResponse");
  assert.equal(r.success, true);
  const t3 = await a.next("Transition");
  const le = (b64) => Buffer.from(b64, "base64").readBigUInt64LE();
  assert.ok(le(t3.endVersion.ts) >= le(r.ts), "the Transition ends at or after the commit");
  // The same request again (a re-send) is not applied twice.
  a.send({ type: "Mutation", requestId: 0, udfPath: "accounts:record", args: [{ key: `raw-${run}` }] });
  const again = await a.next("MutationResponse");
  assert.deepEqual(again.result, r.result, "a re-sent mutation gets the original result");
  const rows = (await http.query(api.accounts.ledger, {})).filter((k) => k === `raw-${run}`);
  assert.equal(rows.length, 1);
  // A wrong base version is a fatal protocol error.
  a.send({ type: "ModifyQuerySet", baseVersion: 7, newVersion: 8, modifications: [] });
  const fatal = await a.next("FatalError");
  assert.match(fatal.error, /BaseVersionMismatch/);
  await until("the socket to close", () => a.closed() !== null, 10000);

  // A wrong admin key and a user token get AuthError.
  const b = open();
  await b.ready;
  b.send({ ...connect, sessionId: crypto.randomUUID() });
  b.send({ type: "Authenticate", baseVersion: 0, tokenType: "Admin", value: "nope" });
  const authError = await b.next("AuthError");
  assert.equal(authError.authUpdateAttempted, true);
  assert.equal(authError.baseVersion, 0);
  const c = open();
  await c.ready;
  c.send({ ...connect, sessionId: crypto.randomUUID() });
  c.send({ type: "Authenticate", baseVersion: 0, tokenType: "User", value: "a.b.c" });
  assert.match((await c.next("AuthError")).error, /not supported/);

  // With the admin key, system queries answer.
  const d = open();
  await d.ready;
  d.send({ ...connect, sessionId: crypto.randomUUID() });
  d.send({ type: "Authenticate", baseVersion: 0, tokenType: "Admin", value: adminKey });
  d.send({ type: "ModifyQuerySet", baseVersion: 0, newVersion: 1, modifications: [{ type: "Add", queryId: 3, udfPath: "_system/cli/tableSize:default", args: [{ tableName: "ledger" }] }] });
  let size = null;
  for (let k = 0; k < 5 && size === null; k++) {
    const t = await d.next("Transition");
    const m = t.modifications.find((x) => x.queryId === 3);
    if (m) size = m;
  }
  assert.equal(size.type, "QueryUpdated", JSON.stringify(size));
  assert.ok(size.value >= 1);
  for (const x of [a, b, c, d]) x.ws.close();
  return { fatal: fatal.error, tableSize: size.value };
}

// A client that stops reading its socket while large updates flow: the
// server closes it (1013, in the server log) instead of queueing without
// bound, and another subscriber keeps getting every update.
async function stall(updates = 300) {
  const filler = "x".repeat(200);
  for (let i = 0; i < 10; i++) {
    await http.mutation(api.accounts.fill, { prefix: `fill-${run}-${i}`, count: 200, filler });
  }
  const { default: WebSocket } = await import("ws");
  const slow = new WebSocket(url.replace(/^http/, "ws") + "/api/1.48.0/sync");
  await new Promise((resolve, reject) => slow.on("open", resolve).on("error", reject));
  let slowClosed = null;
  slow.on("close", (code) => (slowClosed = code));
  slow.on("error", () => {});
  slow.send(JSON.stringify({ type: "Connect", sessionId: crypto.randomUUID(), connectionCount: 0, lastCloseReason: "InitialConnect", clientTs: Date.now() }));
  slow.send(JSON.stringify({ type: "ModifyQuerySet", baseVersion: 0, newVersion: 1, modifications: [{ type: "Add", queryId: 0, udfPath: "accounts:ledger", args: [{}] }] }));
  await sleep(300);
  // Stop reading: the server's writes back up into its queue.
  slow._socket.pause();
  const fast = client();
  let latest = null;
  fast.onUpdate(api.accounts.ledger, {}, (v) => (latest = v));
  await until("the fast client's first result", () => latest !== null);
  const writer = client();
  const n = Number(updates);
  for (let i = 0; i < n; i++) {
    await writer.mutation(api.accounts.record, { key: `stall-${run}-${i}` });
  }
  const last = `stall-${run}-${n - 1}`;
  await until("the fast client to see the last update", () => latest.includes(last), 30000);
  slow._socket.resume();
  await until("the stalled socket to be closed", () => slowClosed !== null, 30000);
  return { updates: n, slowClosed, ledgerBytes: JSON.stringify(latest).length };
}

const steps = { live, bank, dropped, restart, paginate, protocol, stall };
try {
  const result = await steps[step](...rest);
  console.log(JSON.stringify(result));
} finally {
  await Promise.all(clients.map((c) => c.close()));
}
process.exit(0);
