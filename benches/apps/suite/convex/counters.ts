// The hot-counter and fan-out workloads: one document per named counter.
// `increment` reads and writes it, so concurrent increments of one counter
// conflict and the server retries them (optimistic concurrency).
import { mutationGeneric, queryGeneric } from "convex/server";
import { v } from "convex/values";

export const create = mutationGeneric({
  args: { name: v.string() },
  returns: v.null(),
  handler: async (ctx, { name }) => {
    const existing = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    if (existing === null) {
      await ctx.db.insert("counters", { name, value: 0, writtenAt: 0 });
    }
    return null;
  },
});

export const increment = mutationGeneric({
  args: { name: v.string(), writtenAt: v.number() },
  returns: v.number(),
  handler: async (ctx, { name, writtenAt }) => {
    const counter = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    if (counter === null) {
      throw new Error(`no counter ${name}; create it first`);
    }
    const value = counter.value + 1;
    await ctx.db.patch(counter._id, { value, writtenAt });
    return value;
  },
});

// `viewer` only makes each viewer's query a live query of its own: the
// fan-out workload has thousands of distinct queries reading one document.
export const get = queryGeneric({
  args: { name: v.string(), viewer: v.number() },
  handler: async (ctx, { name }) => {
    const counter = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    return counter === null ? null : { value: counter.value, writtenAt: counter.writtenAt };
  },
});
