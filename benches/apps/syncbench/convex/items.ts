// The functions of the `syncbench` workload. They import the generic
// builders from "convex/server" so the app needs no generated code.
import { mutationGeneric, queryGeneric } from "convex/server";
import { v } from "convex/values";

// What every session subscribes to: the newest `limit` documents of one
// channel, through the index (a range read of one channel's keys, newest
// first).
export const latest = queryGeneric({
  args: { channel: v.string(), limit: v.number() },
  handler: async (ctx, { channel, limit }) => {
    return await ctx.db
      .query("items")
      .withIndex("by_channel", (q) => q.eq("channel", channel))
      .order("desc")
      .take(limit);
  },
});

// What the driver calls at a fixed rate: one insert into one channel, which
// invalidates that channel's `latest` and no other.
export const add = mutationGeneric({
  args: {
    channel: v.string(),
    seq: v.number(),
    sentAt: v.number(),
    body: v.string(),
  },
  returns: v.null(),
  handler: async (ctx, args) => {
    await ctx.db.insert("items", args);
    return null;
  },
});
