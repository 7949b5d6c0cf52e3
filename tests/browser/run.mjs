// The browser test's driver: live queries through `convex/react` in real
// Chromium, against a deployment of tests/apps/browser.
//
// Usage: node tests/browser/run.mjs <deployment url>
//
// Builds the page in tests/browser/app with Vite's JS API into a temporary
// directory, serves it on a loopback port, opens it in two pages (A and B,
// separate browser contexts, so two independent ConvexReactClients) and
// checks that what one page (or an HTTP client) writes shows up in the
// other without a reload: a counter (useQuery + useMutation, including
// contended increments) and a room's messages (usePaginatedQuery, with more
// pages loaded). Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM;
// tests/browser/setup.sh installs it), driven by playwright-core.
//
// Every wait is bounded. Prints one JSON summary line last and exits 0, or
// prints what failed, each page's state, its console and its last WebSocket
// frames, and exits 1. BROWSER_TRACE=1 logs every frame to stderr.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { chromium } from "playwright-core";
import { build } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const deploymentUrl = process.argv[2];
if (!deploymentUrl || !/^https?:\/\//.test(deploymentUrl)) {
  console.error("usage: node tests/browser/run.mjs <deployment url, e.g. http://127.0.0.1:3210>");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// This machine's network is closed: without the background-networking flags
// Chromium keeps trying (and failing) to reach Google's hosts. Playwright
// gives each launch a fresh temporary --user-data-dir of its own.
const chromiumFlags = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** How long a change in one page may take to show in the other. */
const UPDATE_MS = 10_000;
/** How long the pages may take to connect and show their first results. */
const READY_MS = 20_000;
/** The whole run. */
const TOTAL_MS = 180_000;
const PAGE_SIZE = 3;
/** BROWSER_TRACE=1 logs every WebSocket frame to stderr as it passes. */
const trace = process.env.BROWSER_TRACE === "1";
const SEEDED = 7;

const api = anyApi;
const startedAt = Date.now();
const pages = {};
const cleanups = [];
let finished = false;

function elapsed() {
  return Date.now() - startedAt;
}

function log(...args) {
  console.error(`[${(elapsed() / 1000).toFixed(1)}s]`, ...args);
}

const watchdog = setTimeout(() => {
  void fail(new Error(`the driver ran over its ${TOTAL_MS / 1000} s limit`));
}, TOTAL_MS);

async function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function cleanup() {
  for (const f of cleanups.reverse()) {
    try {
      await bounded(Promise.resolve().then(f), 10_000, "cleanup");
    } catch (e) {
      log(`cleanup: ${e.message}`);
    }
  }
}

async function fail(error) {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  const out = [`browser test FAILED: ${error.message}`];
  for (const [name, p] of Object.entries(pages)) {
    let state;
    try {
      state = await bounded(snapshot(p.page), 3_000, "reading the page");
    } catch (e) {
      state = `(could not read: ${e.message})`;
    }
    out.push(`--- page ${name}: ${p.url}`);
    out.push(`state: ${JSON.stringify(state)}`);
    out.push(`sockets: ${JSON.stringify(p.sockets)}`);
    out.push(`console (${p.console.length} lines):`);
    out.push(...p.console.slice(-40).map((l) => `  ${l}`));
    out.push(`last WebSocket frames (${p.frames.length} kept):`);
    out.push(...p.frames.slice(-40).map((f) => `  ${f}`));
  }
  const noSocket = Object.values(pages).some(
    (p) => p.sockets.length > 0 && p.sockets.every((s) => s.received === 0),
  );
  if (noSocket) {
    out.push(
      `hint: a page's WebSocket to ${deploymentUrl}/api/<version>/sync never got a message (refused or closed): does the server speak the sync protocol?`,
    );
  }
  if (error.stack) out.push(`driver stack: ${error.stack}`);
  console.log(out.join("\n"));
  await cleanup();
  process.exit(1);
}

process.on("unhandledRejection", (e) => void fail(e instanceof Error ? e : new Error(String(e))));

// --- the page: build and serve --------------------------------------------

async function buildPage() {
  const outDir = mkdtempSync(join(tmpdir(), "convex-browser-page-"));
  cleanups.push(() => rmSync(outDir, { recursive: true, force: true }));
  await bounded(
    build({
      root: join(here, "app"),
      configFile: false,
      envDir: false,
      base: "./",
      logLevel: "warn",
      clearScreen: false,
      oxc: { jsx: { runtime: "automatic" } },
      build: { outDir, emptyOutDir: true, sourcemap: false, reportCompressedSize: false },
    }),
    120_000,
    "the Vite build",
  );
  return outDir;
}

const contentTypes = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
};

async function serve(root) {
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let file = normalize(join(root, path === "/" ? "index.html" : path));
    if (!file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    try {
      if (statSync(file).isDirectory()) file = join(file, "index.html");
      const body = readFileSync(file);
      res.writeHead(200, {
        "content-type": contentTypes[extname(file)] ?? "application/octet-stream",
        "cache-control": "no-store",
      });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await bounded(
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    }),
    5_000,
    "starting the page server",
  );
  cleanups.push(
    () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${server.address().port}`;
}

// --- the pages --------------------------------------------------------------

function clip(s, n = 600) {
  return s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s;
}

async function openPage(browser, name, pageUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const rec = { page, url: pageUrl, console: [], frames: [], sockets: [], errors: [] };
  pages[name] = rec;
  const t0 = Date.now();
  const stamp = () => `+${((Date.now() - t0) / 1000).toFixed(2)}s`;
  page.on("console", (m) => {
    rec.console.push(`${stamp()} ${m.type()}: ${clip(m.text())}`);
    if (m.type() === "error") rec.errors.push(`console error: ${clip(m.text())}`);
  });
  page.on("pageerror", (e) => {
    rec.console.push(`${stamp()} pageerror: ${e.message}`);
    rec.errors.push(`uncaught: ${e.message}`);
  });
  page.on("websocket", (ws) => {
    const sock = { url: ws.url(), sent: 0, received: 0, closed: false, error: null };
    rec.sockets.push(sock);
    const keep = (dir, payload) => {
      if (trace) log(`${name} ${dir} ${payload}`);
      rec.frames.push(`${stamp()} ${dir} ${clip(String(payload))}`);
      if (rec.frames.length > 300) rec.frames.shift();
    };
    ws.on("framesent", (f) => {
      sock.sent++;
      keep("C->S", f.payload);
    });
    ws.on("framereceived", (f) => {
      sock.received++;
      keep("S->C", f.payload);
    });
    ws.on("socketerror", (e) => {
      sock.error = String(e);
      keep("error", e);
    });
    ws.on("close", () => {
      sock.closed = true;
      keep("close", "");
    });
  });
  await page.goto(pageUrl, { timeout: 15_000, waitUntil: "load" });
  return rec;
}

/** Everything the driver reads off a page, in one evaluation. */
function snapshot(page) {
  return page.evaluate(() => {
    const t = (id) => document.querySelector(`[data-testid="${id}"]`)?.textContent ?? null;
    return {
      connected: t("connected"),
      connectionCount: t("connection-count"),
      counter: t("counter"),
      incrementsDone: t("increments-done"),
      incrementResult: t("increment-result"),
      messageCount: t("message-count"),
      sendsDone: t("sends-done"),
      sendResult: t("send-result"),
      status: t("pagination-status"),
      messages: [...document.querySelectorAll('[data-testid="message"]')].map((e) => e.textContent),
      error: [...document.querySelectorAll('[data-testid="error"]')].map((e) => e.textContent),
    };
  });
}

/**
 * Polls every page's snapshot until `check(snapshots)` is true; returns the
 * milliseconds it took. Fails with the last snapshots after `ms`.
 */
async function until(what, check, ms = UPDATE_MS) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    last = {};
    for (const [name, p] of Object.entries(pages)) {
      last[name] = await bounded(snapshot(p.page), 5_000, `reading page ${name}`);
      if (last[name].error.length > 0) {
        throw new Error(
          `page ${name} shows an error while waiting for ${what}: ${last[name].error.join("; ")}`,
        );
      }
    }
    if (check(last)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(
    `timed out after ${ms} ms waiting for ${what}; last seen: ${JSON.stringify(
      Object.fromEntries(
        Object.entries(last ?? {}).map(([k, v]) => [
          k,
          {
            counter: v.counter,
            messageCount: v.messageCount,
            status: v.status,
            messages: v.messages,
            connected: v.connected,
          },
        ]),
      ),
    )}`,
  );
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function click(name, testId) {
  await pages[name].page.getByTestId(testId).click({ timeout: 5_000 });
}

// --- the run ------------------------------------------------------------------

async function main() {
  const httpClient = new ConvexHttpClient(deploymentUrl);
  const tag = `${process.pid}-${Date.now().toString(36)}`;
  const counter = `c-${tag}`;
  const room = `r-${tag}`;
  const timings = {};

  // Messages that exist before the pages open: three pages of three.
  for (let i = 1; i <= SEEDED; i++) {
    await bounded(
      httpClient.mutation(api.messages.send, { room, author: "seed", body: `seed-${i}` }),
      10_000,
      "seeding a message over HTTP",
    );
  }
  const seeds = Array.from({ length: SEEDED }, (_, i) => `seed-${SEEDED - i}`);
  log(`seeded ${SEEDED} messages in ${room}`);

  let t = Date.now();
  const outDir = await buildPage();
  timings.build = Date.now() - t;
  const origin = await serve(outDir);
  log(`page built in ${timings.build} ms, served at ${origin}`);

  t = Date.now();
  const browser = await bounded(
    chromium.launch({ executablePath, headless: true, args: chromiumFlags, timeout: 30_000 }),
    40_000,
    `launching ${executablePath}`,
  );
  cleanups.push(() => browser.close());
  timings.launch = Date.now() - t;
  const query = (who) =>
    `?${new URLSearchParams({ url: deploymentUrl, counter, room, who, pageSize: String(PAGE_SIZE) })}`;
  await openPage(browser, "A", `${origin}/index.html${query("A")}`);
  await openPage(browser, "B", `${origin}/index.html${query("B")}`);
  log(`Chromium ${browser.version()} opened both pages`);

  const firstPage = seeds.slice(0, PAGE_SIZE);
  timings.ready = await until(
    "both pages to connect and show the counter (0), the count (7) and the first page",
    (s) =>
      Object.values(s).every(
        (p) =>
          p.connected === "yes" &&
          p.counter === "0" &&
          p.messageCount === String(SEEDED) &&
          p.status === "CanLoadMore" &&
          same(p.messages, firstPage),
      ),
    READY_MS,
  );
  log(`both pages live after ${timings.ready} ms`);

  // useQuery + useMutation: A increments, B sees it.
  await click("A", "increment");
  timings.counterAtoB = await until(
    "B's counter to show A's increment (1)",
    (s) => s.B.counter === "1",
  );
  await until(
    "A's increment to resolve with 1 and A's counter to show 1",
    (s) => s.A.incrementsDone === "1" && s.A.incrementResult === "1" && s.A.counter === "1",
  );
  log(`counter: A -> B in ${timings.counterAtoB} ms`);

  // Contended increments from both pages at once: each is a serializable
  // mutation, so none may be lost.
  const perPage = 5;
  t = Date.now();
  await Promise.all(
    ["A", "B"].map(async (name) => {
      for (let i = 0; i < perPage; i++) await click(name, "increment");
    }),
  );
  const total = String(1 + 2 * perPage);
  await until(
    `both counters to show ${total} after ${perPage} increments in each page at once, and every increment to resolve`,
    (s) =>
      s.A.counter === total &&
      s.B.counter === total &&
      s.A.incrementsDone === String(1 + perPage) &&
      s.B.incrementsDone === String(perPage),
  );
  timings.contended = Date.now() - t;
  log(`counter: ${2 * perPage} contended increments settled in ${timings.contended} ms`);

  // usePaginatedQuery: B loads every page.
  await click("B", "load-more");
  await until(
    "B to load its second page",
    (s) => same(s.B.messages, seeds.slice(0, 2 * PAGE_SIZE)) && s.B.status === "CanLoadMore",
  );
  await click("B", "load-more");
  await until(
    "B to load the last page",
    (s) => same(s.B.messages, seeds) && s.B.status === "Exhausted",
  );
  log("B loaded all three pages");

  // A sends; B's paginated list (three pages loaded) gets it at the top,
  // keeps every older message exactly once, and A's first page grows.
  await pages.A.page.getByTestId("body").fill("live-1", { timeout: 5_000 });
  await click("A", "send");
  timings.sendAtoB = await until(
    "A's message to appear at the top of B's paginated list, with every older message still there once",
    (s) => same(s.B.messages, ["live-1", ...seeds]) && s.B.messageCount === String(SEEDED + 1),
  );
  await until(
    "A's send to resolve and A's first page to show the new message above the three it had",
    (s) =>
      s.A.sendsDone === "1" &&
      !s.A.sendResult.startsWith("error") &&
      same(s.A.messages, ["live-1", ...firstPage]) &&
      s.A.messageCount === String(SEEDED + 1),
  );
  log(`messages: A -> B in ${timings.sendAtoB} ms`);

  // Writes over HTTP (ConvexHttpClient) reach the WebSocket subscribers too.
  t = Date.now();
  await bounded(
    httpClient.mutation(api.messages.send, { room, author: "http", body: "http-1" }),
    10_000,
    "an HTTP send",
  );
  await bounded(
    httpClient.mutation(api.counter.increment, { name: counter, by: 100 }),
    10_000,
    "an HTTP increment",
  );
  const afterHttp = String(1 + 2 * perPage + 100);
  await until(
    "an HTTP client's send and increment to reach both pages",
    (s) =>
      s.A.counter === afterHttp &&
      s.B.counter === afterHttp &&
      same(s.B.messages, ["http-1", "live-1", ...seeds]) &&
      same(s.A.messages, ["http-1", "live-1", ...firstPage]),
  );
  timings.httpToPages = Date.now() - t;

  // And back: B sends, A sees it.
  await pages.B.page.getByTestId("body").fill("live-2", { timeout: 5_000 });
  await click("B", "send");
  timings.sendBtoA = await until(
    "B's message to appear in A",
    (s) =>
      same(s.A.messages, ["live-2", "http-1", "live-1", ...firstPage]) &&
      same(s.B.messages, ["live-2", "http-1", "live-1", ...seeds]) &&
      s.A.messageCount === String(SEEDED + 3) &&
      s.B.sendsDone === "1",
  );
  log(`messages: B -> A in ${timings.sendBtoA} ms`);

  // Nothing went wrong on the way: no errors, one socket each, never
  // reconnected.
  const final = {};
  for (const [name, p] of Object.entries(pages)) {
    final[name] = await bounded(snapshot(p.page), 5_000, `reading page ${name}`);
    if (p.errors.length > 0) throw new Error(`page ${name} logged errors: ${p.errors.join(" | ")}`);
    if (final[name].connectionCount !== "1" || p.sockets.length !== 1) {
      throw new Error(
        `page ${name} opened ${final[name].connectionCount} WebSocket connections (${p.sockets.length} seen by the browser); one was expected`,
      );
    }
  }

  const summary = {
    ok: true,
    chromium: browser.version(),
    deployment: deploymentUrl,
    ms: timings,
    counter: Number(final.A.counter),
    messagesInB: final.B.messages.length,
    frames: Object.fromEntries(
      Object.entries(pages).map(([name, p]) => [
        name,
        { sent: p.sockets[0].sent, received: p.sockets[0].received },
      ]),
    ),
    totalMs: elapsed(),
  };
  finished = true;
  clearTimeout(watchdog);
  await cleanup();
  console.log(JSON.stringify(summary));
  process.exit(0);
}

main().catch((e) => fail(e));
