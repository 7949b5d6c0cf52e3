import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

export default defineSchema({
  accounts: defineTable({ name: v.string(), balance: v.number() }).index("by_name", ["name"]),
  // One row per applied `record` mutation: a duplicate shows a mutation
  // applied twice.
  ledger: defineTable({ key: v.string() }).index("by_key", ["key"]),
  messages: defineTable({ n: v.number() }),
});
