// Calls one function with the official ConvexHttpClient and prints
// {"value": ...} or {"error": message, "data": ...} as one JSON line.
// Usage: node call.mjs <url> query|mutation|action <path> [<args JSON>]
import { ConvexHttpClient } from "convex/browser";
import { makeFunctionReference } from "convex/server";
import { ConvexError } from "convex/values";

const [url, kind, path, argsText] = process.argv.slice(2);
const client = new ConvexHttpClient(url);
const args = argsText ? JSON.parse(argsText) : {};
try {
  const value = await client[kind](makeFunctionReference(path), args);
  console.log(JSON.stringify({ value: value === undefined ? null : value }));
} catch (e) {
  console.log(
    JSON.stringify({
      error: e.message,
      convexError: e instanceof ConvexError,
      data: e instanceof ConvexError ? e.data : undefined,
    }),
  );
}
