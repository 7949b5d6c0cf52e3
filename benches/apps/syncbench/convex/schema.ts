import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

// One table shared by every session of `syncbench`: each document belongs
// to one of the benchmark's channels, and the sessions of a channel all
// watch its newest documents through `by_channel`.
export default defineSchema({
  items: defineTable({
    channel: v.string(),
    // The driver's sequence number of the mutation (negative for the
    // documents loaded before the sessions connect).
    seq: v.number(),
    // The driver's wall clock when it sent the mutation, ms since the
    // epoch with a fraction.
    sentAt: v.number(),
    body: v.string(),
  }).index("by_channel", ["channel"]),
});
