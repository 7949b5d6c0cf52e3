// Drives the chat fixture app through the official ConvexHttpClient.
// Usage: node chat.mjs <url> <step>; prints one JSON line; exits non-zero
// (with the failed assertion) when the server misbehaves.
import assert from "node:assert/strict";
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";

const [url, step, siteUrl] = process.argv.slice(2);
const client = new ConvexHttpClient(url);
const api = anyApi;

async function expectError(promise, check) {
  try {
    await promise;
  } catch (e) {
    check(e);
    return e;
  }
  assert.fail("expected the call to fail");
}

async function allPages(channel, numItems) {
  const pages = [];
  let cursor = null;
  for (let i = 0; i < 1000; i++) {
    const page = await client.query(api.messages.list, {
      channel,
      paginationOpts: { numItems, cursor },
    });
    pages.push(page.page);
    if (page.isDone) return pages;
    cursor = page.continueCursor;
  }
  assert.fail("pagination never finished");
}

const steps = {
  async populate() {
    const ids = [];
    for (let i = 0; i < 95; i++) {
      ids.push(
        await client.mutation(api.messages.send, {
          channel: "general",
          author: `user${i % 7}`,
          body: `message ${i}`,
        }),
      );
    }
    for (let i = 0; i < 5; i++) {
      await client.mutation(api.messages.send, { channel: "random", author: "r", body: `r${i}` });
    }
    assert.equal(new Set(ids).size, 95);
    for (const id of ids) assert.match(id, /^[0-9a-hjkmnp-tv-z]{32}$/);
    return { sent: 100 };
  },

  async paginate() {
    const pages = await allPages("general", 10);
    const docs = pages.flat();
    assert.equal(docs.length, 95, "every message on some page");
    assert.equal(new Set(docs.map((d) => d._id)).size, 95, "no message twice");
    for (let i = 1; i < docs.length; i++) {
      assert.ok(docs[i - 1]._creationTime > docs[i]._creationTime, "newest first");
    }
    assert.ok(docs.every((d) => d.channel === "general"));
    assert.equal(docs[0].body, "message 94");
    assert.equal(typeof docs[0]._creationTime, "number");
    assert.equal(await client.query(api.messages.count, { channel: "random" }), 5);
    return { pages: pages.length, docs: docs.length };
  },

  async args() {
    const bad = await expectError(
      client.mutation(api.messages.send, { channel: "general", author: "a", body: 5 }),
      (e) => assert.match(e.message, /ArgumentValidationError/),
    );
    const missing = await expectError(
      client.mutation(api.messages.send, { channel: "general", body: "x" }),
      (e) => assert.match(e.message, /ArgumentValidationError[\s\S]*author/),
    );
    const extra = await expectError(
      client.query(api.messages.count, { channel: "general", extra: 1 }),
      (e) => assert.match(e.message, /extra/),
    );
    const missingFn = await expectError(
      client.query(api.messages.nope, {}),
      (e) => assert.match(e.message, /Could not find public function for 'messages:nope'/),
    );
    const wrongKind = await expectError(
      client.query(api.messages.send, { channel: "x", author: "a", body: "b" }),
      (e) => assert.match(e.message, /as Query, but it is defined as Mutation/),
    );
    return {
      bad: bad.message,
      missing: missing.message,
      extra: extra.message,
      missingFn: missingFn.message,
      wrongKind: wrongKind.message,
    };
  },

  async convexError() {
    const e = await expectError(
      client.mutation(api.messages.send, { channel: "general", author: "a", body: "" }),
      (e) => {
        assert.ok(e instanceof ConvexError, `a ConvexError, not ${e}`);
        assert.deepEqual(e.data, { code: "EMPTY", channel: "general" });
      },
    );
    // The failed mutation committed nothing.
    assert.equal(await client.query(api.messages.count, { channel: "general" }), 95);
    return { data: e.data };
  },

  async internal() {
    const e = await expectError(client.query(api.messages.stats, {}), (e) =>
      assert.match(e.message, /Could not find public function for 'messages:stats'/),
    );
    return { refused: e.message };
  },

  async action() {
    const r = await client.action(api.messages.sendAndCount, { channel: "random", body: "from action" });
    assert.equal(r.count, 6);
    assert.equal(r.total, 101);
    assert.match(r.id, /^[0-9a-hjkmnp-tv-z]{32}$/);
    return r;
  },

  // The wire format itself, as the reference gives it.
  async http() {
    const post = async (path, body, headers = {}) => {
      const r = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: await r.json() };
    };
    let r = await post("/api/query", { path: "messages:count", args: [{ channel: "random" }], format: "json" });
    assert.deepEqual(r, { status: 200, body: { status: "success", value: 6 } });
    r = await post("/api/run/messages/count", { args: { channel: "random" } });
    assert.deepEqual(r.body, { status: "success", value: 6 });
    // A ConvexError carries errorData; any other error has no errorData key.
    r = await post("/api/mutation", {
      path: "messages:send",
      args: [{ channel: "c", author: "a", body: "" }],
      format: "convex_encoded_json",
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.status, "error");
    assert.deepEqual(r.body.errorData, { code: "EMPTY", channel: "c" });
    assert.match(r.body.errorMessage, /^\[Request ID: [0-9a-f]+\] Server Error\n/);
    r = await post("/api/mutation", { path: "messages:send", args: [{}], format: "convex_encoded_json" });
    assert.equal(r.body.status, "error");
    assert.ok(!("errorData" in r.body), JSON.stringify(r.body));
    // console.log lines come back.
    r = await post("/api/mutation", {
      path: "messages:send",
      args: [{ channel: "logs", author: "a", body: "b" }],
      format: "convex_encoded_json",
    });
    assert.equal(r.body.status, "success");
    assert.ok(r.body.logLines.some((l) => l.includes("sending to") && l.includes("logs")), JSON.stringify(r.body));
    // A consistent query reads at the timestamp of /api/query_ts.
    const n = await client.consistentQuery(api.messages.count, { channel: "logs" });
    assert.equal(n, 1);
    // Admin endpoints refuse without the admin key, or with a wrong one.
    r = await post("/api/function", { path: "messages:stats", args: {}, format: "json" });
    assert.equal(r.status, 401);
    r = await post("/api/get_config_hashes", { version: "1.48.0", adminKey: "x|y" });
    assert.equal(r.status, 403);
    r = await post("/api/deploy2/finish_push", {}, { Authorization: "Convex nope|nope" });
    assert.equal(r.status, 403);
    return { ok: true };
  },

  // HTTP actions on the site port, routed by convex/http.js.
  async httpActions() {
    let r = await fetch(`${siteUrl}/count?channel=random`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { channel: "random", n: 6 });
    r = await fetch(`${siteUrl}/echo/anything`, { method: "POST", body: "hello" });
    assert.equal(r.status, 201);
    assert.equal(await r.text(), "hello");
    r = await fetch(`${siteUrl}/nowhere`);
    assert.equal(r.status, 404);
    r = await fetch(`${siteUrl}/fail`);
    assert.equal(r.status, 500);
    const body = await r.json();
    assert.match(body.code, /Server Error: [\s\S]*http boom/);
    return { ok: true };
  },

  async afterRestart() {
    const docs = (await allPages("general", 50)).flat();
    assert.equal(docs.length, 95);
    assert.equal(await client.query(api.messages.count, { channel: "random" }), 6);
    const id = await client.mutation(api.messages.send, { channel: "random", author: "a", body: "after" });
    assert.equal(await client.query(api.messages.count, { channel: "random" }), 7);
    return { docs: docs.length, id };
  },
};

const run = steps[step];
if (!run) {
  console.error(`unknown step ${step}; steps: ${Object.keys(steps).join(", ")}`);
  process.exit(2);
}
const out = await run();
console.log(JSON.stringify(out));
