// The insert-heavy workload: one document per mutation, nothing read.
import { mutationGeneric } from "convex/server";
import { v } from "convex/values";

export const add = mutationGeneric({
  args: { client: v.number(), n: v.number(), body: v.string() },
  returns: v.null(),
  handler: async (ctx, args) => {
    await ctx.db.insert("events", args);
    return null;
  },
});
