// The chat workload: subscribers watch the newest messages of one room;
// senders post messages, each invalidating that room's query only.
import { mutationGeneric, queryGeneric } from "convex/server";
import { v } from "convex/values";

export const list = queryGeneric({
  args: { room: v.string(), limit: v.number() },
  handler: async (ctx, { room, limit }) => {
    return await ctx.db
      .query("messages")
      .withIndex("by_room", (q) => q.eq("room", room))
      .order("desc")
      .take(limit);
  },
});

export const send = mutationGeneric({
  args: {
    room: v.string(),
    author: v.string(),
    body: v.string(),
    sentAt: v.number(),
    seq: v.number(),
  },
  returns: v.null(),
  handler: async (ctx, args) => {
    await ctx.db.insert("messages", args);
    return null;
  },
});
