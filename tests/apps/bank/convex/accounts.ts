import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

// The docs' bank example: transfers move money between accounts, so the
// sum of all balances never changes.
export const init = mutation({
  args: { n: v.number(), balance: v.number() },
  handler: async (ctx, { n, balance }) => {
    for (let i = 0; i < n; i++) {
      const name = `acct${i}`;
      const existing = await ctx.db
        .query("accounts")
        .withIndex("by_name", (q) => q.eq("name", name))
        .unique();
      if (existing === null) {
        await ctx.db.insert("accounts", { name, balance });
      }
    }
  },
});

export const balance = query({
  args: { name: v.string() },
  returns: v.number(),
  handler: async (ctx, { name }) => {
    const a = await ctx.db
      .query("accounts")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    return a === null ? 0 : a.balance;
  },
});

export const total = query({
  args: {},
  returns: v.number(),
  handler: async (ctx) => {
    let sum = 0;
    for (const a of await ctx.db.query("accounts").collect()) {
      sum += a.balance;
    }
    return sum;
  },
});

export const transfer = mutation({
  args: { from: v.string(), to: v.string(), amount: v.number() },
  returns: v.boolean(),
  handler: async (ctx, { from, to, amount }) => {
    const a = await ctx.db
      .query("accounts")
      .withIndex("by_name", (q) => q.eq("name", from))
      .unique();
    const b = await ctx.db
      .query("accounts")
      .withIndex("by_name", (q) => q.eq("name", to))
      .unique();
    if (a === null || b === null || a._id === b._id || a.balance < amount) {
      return false;
    }
    await ctx.db.patch(a._id, { balance: a.balance - amount });
    await ctx.db.patch(b._id, { balance: b.balance + amount });
    return true;
  },
});

export const record = mutation({
  args: { key: v.string() },
  handler: async (ctx, { key }) => {
    return await ctx.db.insert("ledger", { key });
  },
});

export const ledger = query({
  args: {},
  returns: v.array(v.string()),
  handler: async (ctx) => {
    return (await ctx.db.query("ledger").collect()).map((r) => r.key);
  },
});

export const post = mutation({
  args: { n: v.number() },
  handler: async (ctx, { n }) => {
    return await ctx.db.insert("messages", { n });
  },
});

export const page = query({
  args: { paginationOpts: v.any() },
  handler: async (ctx, { paginationOpts }) => {
    return await ctx.db.query("messages").order("desc").paginate(paginationOpts);
  },
});

export const all = query({
  args: {},
  returns: v.array(v.number()),
  handler: async (ctx) => {
    return (await ctx.db.query("messages").order("desc").collect()).map((m) => m.n);
  },
});

// Many ledger rows at once, to make `ledger` results large.
export const fill = mutation({
  args: { prefix: v.string(), count: v.number(), filler: v.string() },
  handler: async (ctx, { prefix, count, filler }) => {
    for (let i = 0; i < count; i++) {
      await ctx.db.insert("ledger", { key: `${prefix}-${i}-${filler}` });
    }
  },
});
