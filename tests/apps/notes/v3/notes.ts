import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

export const addMany = mutation({
  args: { n: v.number() },
  handler: async (ctx, { n }) => {
    for (let i = 0; i < n; i++) {
      await ctx.db.insert("notes", { author: `author${i % 4}`, text: `note ${i}` });
    }
  },
});

export const countBy = query({
  args: { author: v.string() },
  handler: async (ctx, { author }) =>
    (await ctx.db.query("notes").withIndex("by_author", (q) => q.eq("author", author)).collect())
      .length,
});

export const version = query({ args: {}, handler: async () => "v3" });
