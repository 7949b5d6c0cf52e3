import { paginationOptsValidator } from "convex/server";
import { ConvexError, v } from "convex/values";
import { api, internal } from "./_generated/api";
import {
  action,
  internalMutation,
  internalQuery,
  mutation,
  query,
} from "./_generated/server";

export const send = mutation({
  args: { channel: v.string(), author: v.string(), body: v.string() },
  returns: v.id("messages"),
  handler: async (ctx, args) => {
    if (args.body.length === 0) {
      throw new ConvexError({ code: "EMPTY", channel: args.channel });
    }
    console.log("sending to", args.channel);
    return await ctx.db.insert("messages", args);
  },
});

export const list = query({
  args: { channel: v.string(), paginationOpts: paginationOptsValidator },
  handler: async (ctx, args) => {
    return await ctx.db
      .query("messages")
      .withIndex("by_channel", (q) => q.eq("channel", args.channel))
      .order("desc")
      .paginate(args.paginationOpts);
  },
});

export const count = query({
  args: { channel: v.string() },
  returns: v.number(),
  handler: async (ctx, args) => {
    const all = await ctx.db
      .query("messages")
      .withIndex("by_channel", (q) => q.eq("channel", args.channel))
      .collect();
    return all.length;
  },
});

export const stats = internalQuery({
  args: {},
  handler: async (ctx) => {
    const all = await ctx.db.query("messages").collect();
    return { total: all.length };
  },
});

export const wipe = internalMutation({
  args: {},
  handler: async (ctx) => {
    for (const m of await ctx.db.query("messages").collect()) {
      await ctx.db.delete(m._id);
    }
  },
});

export const sendAndCount = action({
  args: { channel: v.string(), body: v.string() },
  handler: async (ctx, args): Promise<{ id: string; count: number; total: number }> => {
    const id = await ctx.runMutation(api.messages.send, {
      channel: args.channel,
      author: "action",
      body: args.body,
    });
    const count = await ctx.runQuery(api.messages.count, { channel: args.channel });
    const { total } = await ctx.runQuery(internal.messages.stats, {});
    return { id, count, total };
  },
});
