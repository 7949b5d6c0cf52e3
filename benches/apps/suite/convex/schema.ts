import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

// The tables of the benchmark suite's system workloads (`suite run`,
// driven by `benches/js/drive.mjs` through the official client).
export default defineSchema({
  // chat: rooms of messages; every subscriber of a room watches its newest
  // messages through `by_room`.
  messages: defineTable({
    room: v.string(),
    author: v.string(),
    body: v.string(),
    // The sender's clock when it sent the message, ms since the epoch with
    // a fraction; the driver's sequence number of the message.
    sentAt: v.number(),
    seq: v.number(),
  }).index("by_room", ["room"]),
  // insert: append-only events, nothing reads them while they are written.
  events: defineTable({
    client: v.number(),
    n: v.number(),
    body: v.string(),
  }),
  // hot-counter and fan-out: named counters, one document each.
  counters: defineTable({
    name: v.string(),
    value: v.number(),
    // The driver's clock at the write that set `value` (fan-out latency).
    writtenAt: v.number(),
  }).index("by_name", ["name"]),
});
