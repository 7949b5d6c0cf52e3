// Drives the store fixture app (the docs' Swaghaus): 50 concurrent
// addCart mutations on one item with 10 in stock.
import assert from "node:assert/strict";
import { ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { ConvexError } from "convex/values";

const [url, step] = process.argv.slice(2);

const steps = {
  async swaghaus() {
    const admin = new ConvexHttpClient(url);
    const item = await admin.mutation(api.shop.addItem, { name: "hoodie", price: 40, stock: 10 });
    // One client per buyer: a client sends its mutations one at a time.
    const buyers = Array.from({ length: 50 }, () => new ConvexHttpClient(url));
    const results = await Promise.allSettled(
      buyers.map((c) => c.mutation(api.shop.addCart, { item })),
    );
    const ok = results.filter((r) => r.status === "fulfilled").length;
    const failed = results.filter((r) => r.status === "rejected");
    for (const f of failed) {
      assert.ok(f.reason instanceof ConvexError, `unexpected failure: ${f.reason}`);
      assert.equal(f.reason.data.code, "OUT_OF_STOCK");
    }
    const doc = await admin.query(api.shop.item, { item });
    assert.equal(ok, 10, "exactly the stock is sold");
    assert.equal(doc.stock, 0);
    assert.equal(await admin.query(api.shop.carts, {}), 10);
    return { ok, outOfStock: failed.length, stock: doc.stock };
  },

  async determinism() {
    const c = new ConvexHttpClient(url);
    const a = await c.query(api.shop.random, {});
    assert.ok(a.r >= 0 && a.r < 1);
    assert.ok(Math.abs(a.now - Date.now()) < 60_000, "Date.now() is the call's time");
    assert.equal(a.now % 1, 0, "whole milliseconds");
    return a;
  },
};

const out = await steps[step]();
console.log(JSON.stringify(out));
