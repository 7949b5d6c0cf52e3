import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

// The fixture app of the browser test (tests/browser): a named counter and
// a message list per room, both read through live queries.
export default defineSchema({
  counters: defineTable({ name: v.string(), value: v.number() }).index("by_name", ["name"]),
  messages: defineTable({ room: v.string(), author: v.string(), body: v.string() }).index(
    "by_room",
    ["room"],
  ),
});
