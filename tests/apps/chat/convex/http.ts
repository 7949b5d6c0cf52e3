import { httpRouter } from "convex/server";
import { api } from "./_generated/api";
import { httpAction } from "./_generated/server";

const http = httpRouter();

http.route({
  path: "/count",
  method: "GET",
  handler: httpAction(async (ctx, req) => {
    const channel = new URL(req.url).searchParams.get("channel") ?? "general";
    const n = await ctx.runQuery(api.messages.count, { channel });
    return new Response(JSON.stringify({ channel, n }), {
      headers: { "content-type": "application/json" },
    });
  }),
});

http.route({
  pathPrefix: "/echo/",
  method: "POST",
  handler: httpAction(async (_ctx, req) => new Response(await req.text(), { status: 201 })),
});

http.route({
  path: "/fail",
  method: "GET",
  handler: httpAction(async () => {
    throw new Error("http boom");
  }),
});

export default http;
