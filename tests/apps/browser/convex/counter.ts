import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

// The counter's value, 0 before the first increment.
export const get = query({
  args: { name: v.string() },
  returns: v.number(),
  handler: async (ctx, { name }) => {
    const row = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    return row?.value ?? 0;
  },
});

// Adds `by` (default 1) and returns the new value; the first increment
// inserts the row, later ones patch it.
export const increment = mutation({
  args: { name: v.string(), by: v.optional(v.number()) },
  returns: v.number(),
  handler: async (ctx, { name, by }) => {
    const row = await ctx.db
      .query("counters")
      .withIndex("by_name", (q) => q.eq("name", name))
      .unique();
    const value = (row?.value ?? 0) + (by ?? 1);
    if (row === null) {
      await ctx.db.insert("counters", { name, value });
    } else {
      await ctx.db.patch(row._id, { value });
    }
    return value;
  },
});
