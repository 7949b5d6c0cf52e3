import { ConvexError, v } from "convex/values";
import { mutation, query } from "./_generated/server";

export const addItem = mutation({
  args: { name: v.string(), price: v.number(), stock: v.number() },
  handler: async (ctx, args) => ctx.db.insert("items", args),
});

export const addCart = mutation({
  args: { item: v.id("items") },
  handler: async (ctx, { item }) => {
    const doc = await ctx.db.get(item);
    if (doc === null) {
      throw new ConvexError({ code: "NO_ITEM" });
    }
    if (doc.stock < 1) {
      throw new ConvexError({ code: "OUT_OF_STOCK", item });
    }
    await ctx.db.patch(item, { stock: doc.stock - 1 });
    return await ctx.db.insert("carts", { item, count: 1 });
  },
});

export const item = query({
  args: { item: v.id("items") },
  handler: async (ctx, { item }) => ctx.db.get(item),
});

export const carts = query({
  args: {},
  handler: async (ctx) => (await ctx.db.query("carts").collect()).length,
});

export const random = query({
  args: {},
  handler: async () => ({ r: Math.random(), now: Date.now() }),
});
