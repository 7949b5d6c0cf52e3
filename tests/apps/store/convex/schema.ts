import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  items: defineTable({ name: v.string(), price: v.number(), stock: v.number() }),
  carts: defineTable({ item: v.id("items"), count: v.number() }),
});
