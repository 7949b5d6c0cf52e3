import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

// Existing notes have string text: this schema must be refused.
export default defineSchema({
  notes: defineTable({ author: v.string(), text: v.number() }),
});
