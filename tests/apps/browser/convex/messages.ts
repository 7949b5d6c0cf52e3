import { paginationOptsValidator } from "convex/server";
import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

export const send = mutation({
  args: { room: v.string(), author: v.string(), body: v.string() },
  returns: v.id("messages"),
  handler: async (ctx, args) => {
    return await ctx.db.insert("messages", args);
  },
});

// Newest first, a page at a time (usePaginatedQuery).
export const list = query({
  args: { room: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, { room, paginationOpts }) => {
    return await ctx.db
      .query("messages")
      .withIndex("by_room", (q) => q.eq("room", room))
      .order("desc")
      .paginate(paginationOpts);
  },
});

// How many messages the room has, for the page's header.
export const count = query({
  args: { room: v.string() },
  returns: v.number(),
  handler: async (ctx, { room }) => {
    const all = await ctx.db
      .query("messages")
      .withIndex("by_room", (q) => q.eq("room", room))
      .collect();
    return all.length;
  },
});
