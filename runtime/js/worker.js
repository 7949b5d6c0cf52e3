// The worker shim: runs inside each Deno worker process and executes the
// user's Convex functions on behalf of the Rust side (`runtime/src/worker/`).
//
// Protocol (stdin/stdout; stderr is free text the host logs): every frame is
// a u32 little-endian byte length followed by that many bytes of UTF-8 JSON,
// an object whose `t` field names it.
//
//   worker -> host  {t:"ready", deno}                       once, at start
//   host -> worker  {t:"run", ...}  or  {t:"analyze", ...}   one at a time
//   worker -> host  {t:"syscall", op, args, async}           args: JSON text
//   host -> worker  {t:"result", ok}  or  {t:"result", error:{message,data?}}
//   worker -> host  {t:"log", line}                          no reply
//   worker -> host  {t:"imported"}                           no reply
//   worker -> host  {t:"done", ok} or {t:"done", error:{message, data?}}
//   worker -> host  {t:"analysis", modules, schema}          ends an analyze
//
// While a call runs, the worker only writes syscall/log/imported frames and
// then exactly one done (or analysis) frame; the host answers each syscall
// before the worker goes on. `Convex.syscall` blocks on that answer
// (`Deno.stdin.readSync`); `Convex.asyncSyscall` does the same and hands back
// a settled promise. Two ops are the shim's own, not Convex's (see "Query
// streams" below): `shim/queryStreamNextBatch`, which answers several
// `1.0/queryStreamNext` calls in one round trip, and, in queries,
// `shim/queryStreamWithBatch`, which is `1.0/queryStream` and the first
// such batch in one.
//
// The shim hides `Deno` (and Node's compatibility globals) from user code and
// replaces the nondeterministic globals: in queries, mutations and at import
// time `Math.random`, `crypto.getRandomValues` and `crypto.randomUUID` draw
// from a ChaCha12 stream seeded per call, `Date` is frozen at the call's
// timestamp, and `fetch` and the timers are refused with Convex's messages.
// Actions get the real ones. Console output becomes Convex log lines.

"use strict";

// ---------------------------------------------------------------------------
// Captured before user code can touch anything.

const DenoNs = globalThis.Deno;
const stdin = DenoNs.stdin;
const stdout = DenoNs.stdout;
const stderr = DenoNs.stderr;
const exitProcess = DenoNs.exit;
const denoVersion = DenoNs.version.deno;

const JSONparse = JSON.parse;
const JSONstringify = JSON.stringify;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const RealDate = Date;
const realDateNow = Date.now;
const realMathRandom = Math.random;
const realPerformanceNow = performance.now.bind(performance);
const realGetRandomValues = crypto.getRandomValues.bind(crypto);
const realRandomUUID = crypto.randomUUID.bind(crypto);
const realFetch = globalThis.fetch;
const realSetTimeout = globalThis.setTimeout;
const realSetInterval = globalThis.setInterval;
const realClearTimeout = globalThis.clearTimeout;
const realClearInterval = globalThis.clearInterval;
const realSetImmediate = globalThis.setImmediate;
const RealAbortController = AbortController;
const RealAbortSignal = AbortSignal;
const RealBlob = Blob;
const RealPromise = Promise;
const RealError = Error;
const RealTypeError = TypeError;
const SHIM_URL = import.meta.url;
const CONVEX_ERROR = Symbol.for("ConvexError");

const MAX_LOG_LINES = 256;
const MAX_LOG_LINE_BYTES = 32768;
const MAX_INSPECT_STRING = 32768;
const MAX_GET_RANDOM_VALUES_BYTES = 65536;

// ---------------------------------------------------------------------------
// Frames.

const READ_CHUNK = 64 * 1024;
let rbuf = new Uint8Array(READ_CHUNK);
let rstart = 0;
let rend = 0;

function ensureBuffered(n) {
  if (rend - rstart >= n) return;
  if (rstart + n > rbuf.length) {
    if (n > rbuf.length) {
      const bigger = new Uint8Array(Math.max(n, READ_CHUNK));
      bigger.set(rbuf.subarray(rstart, rend));
      rbuf = bigger;
    } else {
      rbuf.copyWithin(0, rstart, rend);
    }
    rend -= rstart;
    rstart = 0;
  }
  while (rend - rstart < n) {
    const got = stdin.readSync(rbuf.subarray(rend));
    if (got === null || got === 0) {
      // The host closed our stdin: it is done with us.
      exitProcess(0);
    }
    rend += got;
  }
}

function readFrame() {
  ensureBuffered(4);
  const len = rbuf[rstart] | (rbuf[rstart + 1] << 8) | (rbuf[rstart + 2] << 16) |
    (rbuf[rstart + 3] << 24) >>> 0;
  ensureBuffered(4 + len);
  const text = decoder.decode(rbuf.subarray(rstart + 4, rstart + 4 + len));
  rstart += 4 + len;
  if (rstart === rend) {
    rstart = 0;
    rend = 0;
    if (rbuf.length > 4 * READ_CHUNK) rbuf = new Uint8Array(READ_CHUNK);
  }
  return JSONparse(text);
}

let wbuf = new Uint8Array(READ_CHUNK);

function writeFrame(message) {
  const text = JSONstringify(message);
  // UTF-8 takes at most 3 bytes per UTF-16 code unit.
  const cap = 4 + text.length * 3;
  if (cap > wbuf.length) {
    wbuf = new Uint8Array(cap);
  }
  const { written } = encoder.encodeInto(text, wbuf.subarray(4));
  wbuf[0] = written & 0xff;
  wbuf[1] = (written >>> 8) & 0xff;
  wbuf[2] = (written >>> 16) & 0xff;
  wbuf[3] = (written >>> 24) & 0xff;
  const frame = wbuf.subarray(0, 4 + written);
  let off = 0;
  while (off < frame.length) {
    off += stdout.writeSync(frame.subarray(off));
  }
  if (wbuf.length > 4 * READ_CHUNK) wbuf = new Uint8Array(READ_CHUNK);
}

function debugLog(text) {
  const bytes = encoder.encode(text + "\n");
  let off = 0;
  while (off < bytes.length) off += stderr.writeSync(bytes.subarray(off));
}

// ---------------------------------------------------------------------------
// Per-call state. `call` is null between calls.

/**
 * @typedef {{
 *   kind: "run" | "analyze",
 *   udfType: string,
 *   requestId: string,
 *   dirUrl: string,
 *   logCount: number,
 *   fatal: unknown,
 *   fatalPlain: boolean,
 *   hasFatal: boolean,
 *   timers: Set<number>,
 *   aborts: Set<AbortController>,
 *   syscallFailed: boolean,
 * }} Call
 */
/** @type {Call | null} */
let call = null;

// "deterministic": seeded randomness, frozen time, no fetch or timers.
// "real": an action's body.
let mode = "real";
// "import" while a module is being evaluated, else "run".
let phase = "run";
let frozenNowMs = 0;
let callStartPerf = 0;
let envVars = Object.create(null);

// ---------------------------------------------------------------------------
// ChaCha12, the generator Convex seeds per call. Key = the 32-byte seed,
// nonce 0, 64-bit block counter from 0; output words in stream order.

const chachaKey = new Uint32Array(8);
const chachaState = new Uint32Array(16);
const chachaOut = new Uint32Array(16);
let chachaCounter = 0;
let chachaIndex = 16;

function seedRng(hex) {
  for (let i = 0; i < 8; i++) {
    let w = 0;
    for (let b = 3; b >= 0; b--) {
      w = (w << 8) | parseInt(hex.substr((i * 4 + b) * 2, 2), 16);
    }
    chachaKey[i] = w >>> 0;
  }
  chachaCounter = 0;
  chachaIndex = 16;
}

function rotl(x, n) {
  return (x << n) | (x >>> (32 - n));
}

function chachaBlock() {
  const s = chachaState;
  s[0] = 0x61707865;
  s[1] = 0x3320646e;
  s[2] = 0x79622d32;
  s[3] = 0x6b206574;
  for (let i = 0; i < 8; i++) s[4 + i] = chachaKey[i];
  s[12] = chachaCounter >>> 0;
  s[13] = Math.floor(chachaCounter / 4294967296) >>> 0;
  s[14] = 0;
  s[15] = 0;
  let x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6],
    x7 = s[7], x8 = s[8], x9 = s[9], x10 = s[10], x11 = s[11], x12 = s[12],
    x13 = s[13], x14 = s[14], x15 = s[15];
  for (let r = 0; r < 6; r++) {
    // Column round.
    x0 = (x0 + x4) | 0; x12 = rotl(x12 ^ x0, 16); x8 = (x8 + x12) | 0; x4 = rotl(x4 ^ x8, 12);
    x0 = (x0 + x4) | 0; x12 = rotl(x12 ^ x0, 8); x8 = (x8 + x12) | 0; x4 = rotl(x4 ^ x8, 7);
    x1 = (x1 + x5) | 0; x13 = rotl(x13 ^ x1, 16); x9 = (x9 + x13) | 0; x5 = rotl(x5 ^ x9, 12);
    x1 = (x1 + x5) | 0; x13 = rotl(x13 ^ x1, 8); x9 = (x9 + x13) | 0; x5 = rotl(x5 ^ x9, 7);
    x2 = (x2 + x6) | 0; x14 = rotl(x14 ^ x2, 16); x10 = (x10 + x14) | 0; x6 = rotl(x6 ^ x10, 12);
    x2 = (x2 + x6) | 0; x14 = rotl(x14 ^ x2, 8); x10 = (x10 + x14) | 0; x6 = rotl(x6 ^ x10, 7);
    x3 = (x3 + x7) | 0; x15 = rotl(x15 ^ x3, 16); x11 = (x11 + x15) | 0; x7 = rotl(x7 ^ x11, 12);
    x3 = (x3 + x7) | 0; x15 = rotl(x15 ^ x3, 8); x11 = (x11 + x15) | 0; x7 = rotl(x7 ^ x11, 7);
    // Diagonal round.
    x0 = (x0 + x5) | 0; x15 = rotl(x15 ^ x0, 16); x10 = (x10 + x15) | 0; x5 = rotl(x5 ^ x10, 12);
    x0 = (x0 + x5) | 0; x15 = rotl(x15 ^ x0, 8); x10 = (x10 + x15) | 0; x5 = rotl(x5 ^ x10, 7);
    x1 = (x1 + x6) | 0; x12 = rotl(x12 ^ x1, 16); x11 = (x11 + x12) | 0; x6 = rotl(x6 ^ x11, 12);
    x1 = (x1 + x6) | 0; x12 = rotl(x12 ^ x1, 8); x11 = (x11 + x12) | 0; x6 = rotl(x6 ^ x11, 7);
    x2 = (x2 + x7) | 0; x13 = rotl(x13 ^ x2, 16); x8 = (x8 + x13) | 0; x7 = rotl(x7 ^ x8, 12);
    x2 = (x2 + x7) | 0; x13 = rotl(x13 ^ x2, 8); x8 = (x8 + x13) | 0; x7 = rotl(x7 ^ x8, 7);
    x3 = (x3 + x4) | 0; x14 = rotl(x14 ^ x3, 16); x9 = (x9 + x14) | 0; x4 = rotl(x4 ^ x9, 12);
    x3 = (x3 + x4) | 0; x14 = rotl(x14 ^ x3, 8); x9 = (x9 + x14) | 0; x4 = rotl(x4 ^ x9, 7);
  }
  const o = chachaOut;
  o[0] = x0 + s[0]; o[1] = x1 + s[1]; o[2] = x2 + s[2]; o[3] = x3 + s[3];
  o[4] = x4 + s[4]; o[5] = x5 + s[5]; o[6] = x6 + s[6]; o[7] = x7 + s[7];
  o[8] = x8 + s[8]; o[9] = x9 + s[9]; o[10] = x10 + s[10]; o[11] = x11 + s[11];
  o[12] = x12 + s[12]; o[13] = x13 + s[13]; o[14] = x14 + s[14]; o[15] = x15 + s[15];
  chachaCounter += 1;
  chachaIndex = 0;
}

function nextU32() {
  if (chachaIndex >= 16) chachaBlock();
  return chachaOut[chachaIndex++];
}

function seededRandom() {
  // 53 random bits from a 64-bit draw (low word first), as `rand` makes an f64.
  const lo = nextU32();
  const hi = nextU32();
  return ((hi >>> 0) * 2097152 + (lo >>> 11)) / 9007199254740992;
}

function fillSeeded(bytes) {
  let i = 0;
  while (i < bytes.length) {
    let w = nextU32();
    for (let b = 0; b < 4 && i < bytes.length; b++, i++) {
      bytes[i] = w & 0xff;
      w >>>= 8;
    }
  }
}

// ---------------------------------------------------------------------------
// Messages Convex uses.

function notInQueriesOrMutations(what) {
  return `Can't use ${what} in queries and mutations. Please consider using an action. ` +
    "See https://docs.convex.dev/functions/actions for more details.";
}

function cryptoRandomnessRefused() {
  return phase === "import"
    ? "Cannot use cryptographic randomness at import time"
    : notInQueriesOrMutations("cryptographic randomness");
}

/**
 * Ends the current call with `error` even if user code catches it. A
 * `plain` error is the runtime's own refusal, reported by its message alone
 * (not as "Uncaught ...").
 */
function uncatchable(error, plain = false) {
  if (call !== null && !call.hasFatal) {
    call.fatal = error;
    call.fatalPlain = plain;
    call.hasFatal = true;
  }
  return error;
}

// ---------------------------------------------------------------------------
// Deterministic globals.

Math.random = function random() {
  return mode === "deterministic" ? seededRandom() : realMathRandom();
};

function currentNowMs() {
  return mode === "deterministic" ? frozenNowMs : realDateNow();
}

const DateShim = new Proxy(RealDate, {
  construct(target, args, newTarget) {
    if (args.length === 0) {
      return Reflect.construct(target, [currentNowMs()], newTarget === DateShim ? target : newTarget);
    }
    return Reflect.construct(target, args, newTarget === DateShim ? target : newTarget);
  },
  apply() {
    return new RealDate(currentNowMs()).toString();
  },
  get(target, prop, receiver) {
    if (prop === "now") return dateNow;
    return Reflect.get(target, prop, receiver);
  },
});
function dateNow() {
  return currentNowMs();
}
Object.defineProperty(RealDate.prototype, "constructor", {
  value: DateShim,
  writable: true,
  configurable: true,
  enumerable: false,
});
globalThis.Date = DateShim;

// In queries (and at import time) `performance.now()` stands still at 0, the
// start of the call; in mutations it counts from there; in actions it is
// the process's clock.
performance.now = function now() {
  if (mode !== "deterministic") return realPerformanceNow();
  if (phase === "run" && call !== null && call.udfType === "Mutation") {
    return realPerformanceNow() - callStartPerf;
  }
  return 0;
};

crypto.getRandomValues = function getRandomValues(array) {
  if (mode !== "deterministic") return realGetRandomValues(array);
  if (
    !ArrayBuffer.isView(array) || array instanceof Float32Array ||
    array instanceof Float64Array || array instanceof DataView
  ) {
    throw new RealTypeError(
      "Failed to execute 'getRandomValues' on 'Crypto': The provided value is not of an integer array type",
    );
  }
  if (array.byteLength > MAX_GET_RANDOM_VALUES_BYTES) {
    throw new RealTypeError(
      `Byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (${MAX_GET_RANDOM_VALUES_BYTES})`,
    );
  }
  fillSeeded(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
  return array;
};

crypto.randomUUID = function randomUUID() {
  if (mode !== "deterministic") return realRandomUUID();
  const b = new Uint8Array(16);
  fillSeeded(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  let hex = "";
  for (let i = 0; i < 16; i++) {
    hex += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-";
  }
  return hex;
};

{
  const subtle = crypto.subtle;
  const algorithmName = (alg) => String(typeof alg === "string" ? alg : alg?.name).toUpperCase();
  const guard = (method, needsRandomness) => {
    const real = subtle[method].bind(subtle);
    subtle[method] = function (...args) {
      if (mode === "deterministic" && needsRandomness(args)) {
        return RealPromise.reject(new RealError(cryptoRandomnessRefused()));
      }
      return real(...args);
    };
  };
  guard("generateKey", () => true);
  guard("encrypt", (args) => algorithmName(args[0]) === "RSA-OAEP");
  guard("sign", (args) => ["RSA-PSS", "ECDSA"].includes(algorithmName(args[0])));
}

function mergeSignal(signal, controller) {
  if (signal === undefined || signal === null) return controller.signal;
  return RealAbortSignal.any([signal, controller.signal]);
}

globalThis.fetch = async function fetch(input, init) {
  if (mode === "deterministic") {
    throw new RealError(notInQueriesOrMutations("fetch()"));
  }
  if (call === null) return realFetch(input, init);
  // An action's requests end with it: a request still running when the
  // action returns must not call back into a later call.
  const controller = new RealAbortController();
  call.aborts.add(controller);
  const signal = mergeSignal(init?.signal ?? (input instanceof Request ? input.signal : undefined), controller);
  return realFetch(input, { ...init, signal });
};

let fakeTimerId = 0;

function makeTimer(name, real) {
  return function (handler, timeout, ...args) {
    if (mode === "deterministic") {
      uncatchable(new RealError(notInQueriesOrMutations(name)), true);
      return ++fakeTimerId;
    }
    if (typeof handler === "string") {
      throw uncatchable(new RealError(`Not implemented: code string argument for ${name}.`), true);
    }
    if (call === null) return real(handler, timeout, ...args);
    const owner = call;
    let id;
    const wrapped = (...a) => {
      if (name === "setTimeout") owner.timers.delete(id);
      handler(...a);
    };
    id = real(wrapped, timeout, ...args);
    owner.timers.add(id);
    return id;
  };
}

globalThis.setTimeout = makeTimer("setTimeout", realSetTimeout);
globalThis.setInterval = makeTimer("setInterval", realSetInterval);
globalThis.clearTimeout = function clearTimeout(id) {
  call?.timers.delete(id);
  realClearTimeout(id);
};
globalThis.clearInterval = function clearInterval(id) {
  call?.timers.delete(id);
  realClearInterval(id);
};

// A WeakRef that never lets go and a FinalizationRegistry that never calls
// back: garbage collection must not be observable, as in Convex.
globalThis.WeakRef = class WeakRef {
  #target;
  constructor(target) {
    if ((typeof target !== "object" || target === null) && typeof target !== "function") {
      throw new RealTypeError("WeakRef: target must be an object");
    }
    this.#target = target;
  }
  deref() {
    return this.#target;
  }
  get [Symbol.toStringTag]() {
    return "WeakRef";
  }
};
globalThis.FinalizationRegistry = class FinalizationRegistry {
  constructor(callback) {
    if (typeof callback !== "function") {
      throw new RealTypeError("FinalizationRegistry: cleanup must be callable");
    }
  }
  register() {}
  unregister() {
    return false;
  }
  get [Symbol.toStringTag]() {
    return "FinalizationRegistry";
  }
};

// `process.env.X` reads the deployment's environment variables.
const envProxy = new Proxy({}, {
  get(_t, key) {
    return typeof key === "string" && Object.hasOwn(envVars, key) ? envVars[key] : undefined;
  },
  has(_t, key) {
    return typeof key === "string" && Object.hasOwn(envVars, key);
  },
  ownKeys() {
    return Object.keys(envVars);
  },
  getOwnPropertyDescriptor(_t, key) {
    if (typeof key === "string" && Object.hasOwn(envVars, key)) {
      return { value: envVars[key], writable: false, enumerable: true, configurable: true };
    }
    return undefined;
  },
  set() {
    return false;
  },
  deleteProperty() {
    return false;
  },
});
const processShim = Object.freeze({ env: envProxy });

// ---------------------------------------------------------------------------
// Console: Convex log lines, `[LEVEL] <each argument rendered> ...`, each
// argument rendered as object-inspect renders it with `indent: 2`.

function lowbyte(c) {
  const n = c.charCodeAt(0);
  const named = { 8: "b", 9: "t", 10: "n", 12: "f", 13: "r" }[n];
  if (named) return "\\" + named;
  return "\\x" + (n < 0x10 ? "0" : "") + n.toString(16).toUpperCase();
}

function inspectString(str) {
  let s = str;
  let tail = "";
  if (s.length > MAX_INSPECT_STRING) {
    const remaining = s.length - MAX_INSPECT_STRING;
    s = s.slice(0, MAX_INSPECT_STRING);
    tail = `... ${remaining} more character${remaining > 1 ? "s" : ""}`;
  }
  s = s.replace(/(['\\])/g, "\\$1").replace(/[\x00-\x1f]/g, lowbyte);
  return "'" + s + "'" + tail;
}

function indentedJoin(items, depth) {
  if (items.length === 0) return "";
  const prev = "  ".repeat(depth);
  const line = "\n" + prev + "  ";
  return line + items.join("," + line) + "\n" + prev;
}

function keyName(key) {
  return /[^\w$]/.test(key) ? inspectString(key) : key;
}

function ownEntries(obj, inspectChild, isArr) {
  const out = [];
  if (isArr) {
    for (let i = 0; i < obj.length; i++) {
      out.push(Object.hasOwn(obj, i) ? inspectChild(obj[i]) : "");
    }
  }
  for (const key of Object.keys(obj)) {
    if (isArr && String(Number(key)) === key && Number(key) < obj.length) continue;
    out.push(keyName(key) + ": " + inspectChild(obj[key]));
  }
  for (const sym of Object.getOwnPropertySymbols(obj)) {
    if (Object.prototype.propertyIsEnumerable.call(obj, sym)) {
      out.push("[" + String(sym) + "]: " + inspectChild(obj[sym]));
    }
  }
  return out;
}

function functionName(f) {
  try {
    return typeof f.name === "string" && f.name !== "" ? f.name : null;
  } catch {
    return null;
  }
}

function inspect(value, depth = 0, seen = []) {
  switch (typeof value) {
    case "undefined":
      return "undefined";
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return inspectString(value);
    case "number":
      return value === 0 ? (1 / value > 0 ? "0" : "-0") : String(value);
    case "bigint":
      return String(value) + "n";
    case "symbol":
      return String(value);
  }
  if (value === null) return "null";
  if (typeof value === "object" && depth >= 5) {
    return Array.isArray(value) ? "[Array]" : "[Object]";
  }
  if (seen.includes(value)) return "[Circular]";
  const inner = [...seen, value];
  const child = (v) => inspect(v, depth + 1, inner);
  const childNoIndent = (v) => inspect(v, depth + 1, inner).replace(/\n\s*/g, " ");

  if (typeof value === "function") {
    const name = functionName(value);
    const keys = ownEntries(value, child, false);
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(value));
    const head = isClass
      ? `[class ${name ?? "(anonymous)"}]`
      : `[Function${name ? ": " + name : " (anonymous)"}]`;
    return head + (keys.length > 0 ? " { " + keys.join(", ") + " }" : "");
  }
  if (Array.isArray(value)) {
    const xs = ownEntries(value, child, true);
    if (xs.length === 0) return "[]";
    if (xs.some((x) => x.includes("\n"))) return "[" + indentedJoin(xs, depth) + "]";
    return "[ " + xs.join(", ") + " ]";
  }
  if (value instanceof RealError) {
    const parts = ownEntries(value, child, false);
    let text;
    try {
      text = String(value);
    } catch {
      text = "Error";
    }
    if (parts.length === 0) return "[" + text + "]";
    return "{ [" + text + "] " + parts.join(", ") + " }";
  }
  if (value instanceof Map) {
    const entries = [];
    for (const [k, v] of value) entries.push(childNoIndent(k) + " => " + child(v));
    return `Map (${value.size}) {` + indentedJoin(entries, depth) + "}";
  }
  if (value instanceof Set) {
    const entries = [];
    for (const v of value) entries.push(child(v));
    return `Set (${value.size}) {` + indentedJoin(entries, depth) + "}";
  }
  if (value instanceof RealDate) {
    const t = RealDate.prototype.getTime.call(value);
    return Number.isNaN(t) ? "Invalid Date" : RealDate.prototype.toISOString.call(value);
  }
  if (value instanceof RegExp) return String(value);
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    const kind = value instanceof Number ? "Number" : value instanceof String ? "String" : "Boolean";
    return `[${kind}: ${inspect(value.valueOf())}]`;
  }
  const proto = Object.getPrototypeOf(value);
  const isPlain = proto === Object.prototype;
  const nullProto = proto === null;
  let stringTag = "";
  if (!isPlain && Symbol.toStringTag in value) {
    stringTag = Object.prototype.toString.call(value).slice(8, -1);
  } else if (nullProto) {
    stringTag = "Object";
  }
  let ctorName = "";
  if (!isPlain && !nullProto) {
    try {
      const ctor = value.constructor;
      if (typeof ctor === "function" && functionName(ctor)) ctorName = functionName(ctor) + " ";
    } catch {
      // A throwing getter: no name.
    }
  }
  const tagParts = [];
  if (stringTag) tagParts.push(stringTag);
  if (nullProto) tagParts.push("null prototype");
  const tag = ctorName + (tagParts.length > 0 ? "[" + tagParts.join(": ") + "] " : "");
  const ys = ownEntries(value, child, false);
  if (ys.length === 0) return tag + "{}";
  return tag + "{" + indentedJoin(ys, depth) + "}";
}

function safeInspect(value) {
  try {
    return inspect(value);
  } catch (e) {
    return `[inspect failed: ${e?.message ?? e}]`;
  }
}

function truncateUtf8(text, maxBytes) {
  // Cut `text` to at most `maxBytes` UTF-8 bytes on a character boundary.
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return null;
  let end = maxBytes;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}

function emitLogLine(level, message) {
  let text = message;
  if (text.length * 3 > MAX_LOG_LINE_BYTES) {
    const cut = truncateUtf8(text, MAX_LOG_LINE_BYTES);
    if (cut !== null) text = cut + " (truncated due to length)";
  }
  const line = `[${level}] ${text}`;
  if (call === null) {
    debugLog(line);
    return;
  }
  if (call.logCount >= MAX_LOG_LINES) return;
  call.logCount += 1;
  if (call.logCount === MAX_LOG_LINES) {
    writeFrame({ t: "log", line: `[ERROR] Log overflow (maximum ${MAX_LOG_LINES}). Remaining log lines omitted.` });
    return;
  }
  writeFrame({ t: "log", line });
}

function consoleMessage(level, args) {
  emitLogLine(level, args.map(safeInspect).join(" "));
}

function labelOf(label) {
  return label === undefined ? "default" : label === null ? "null" : String(label);
}

const consoleTimers = new Map();
const counters = new Map();
const consoleShim = {
  log: (...args) => consoleMessage("LOG", args),
  info: (...args) => consoleMessage("INFO", args),
  warn: (...args) => consoleMessage("WARN", args),
  error: (...args) => consoleMessage("ERROR", args),
  debug: (...args) => consoleMessage("DEBUG", args),
  dir: (value) => consoleMessage("LOG", [value]),
  dirxml: (...args) => consoleMessage("LOG", args),
  table: (...args) => consoleMessage("LOG", args),
  trace: (...args) => {
    const frames = userFrames(new RealError().stack ?? "");
    emitLogLine("LOG", args.map(safeInspect).join(" ") + (frames.length ? "\n" + frames.join("\n") : ""));
  },
  assert: (condition, ...args) => {
    if (!condition) consoleMessage("ERROR", ["Assertion failed", ...args]);
  },
  time: (label) => {
    const name = labelOf(label);
    if (consoleTimers.has(name)) {
      consoleMessage("WARN", [`Timer '${name}' already exists`]);
      return;
    }
    consoleTimers.set(name, realDateNow());
  },
  timeLog: (label, ...args) => {
    const name = labelOf(label);
    if (!consoleTimers.has(name)) {
      consoleMessage("WARN", [`Timer '${name}' does not exist`]);
      return;
    }
    const rest = args.length > 0 ? " " + args.map(safeInspect).join(" ") : "";
    emitLogLine("INFO", `${name}: ${realDateNow() - consoleTimers.get(name)}ms${rest}`);
  },
  timeEnd: (label) => {
    const name = labelOf(label);
    if (!consoleTimers.has(name)) {
      consoleMessage("WARN", [`Timer '${name}' does not exist`]);
      return;
    }
    emitLogLine("INFO", `${name}: ${realDateNow() - consoleTimers.get(name)}ms`);
    consoleTimers.delete(name);
  },
  count: (label) => {
    const name = labelOf(label);
    const n = (counters.get(name) ?? 0) + 1;
    counters.set(name, n);
    emitLogLine("INFO", `${name}: ${n}`);
  },
  countReset: (label) => counters.delete(labelOf(label)),
  group: (...args) => {
    if (args.length > 0) consoleMessage("LOG", args);
  },
  groupCollapsed: (...args) => {
    if (args.length > 0) consoleMessage("LOG", args);
  },
  groupEnd: () => {},
};
globalThis.console = consoleShim;

// ---------------------------------------------------------------------------
// Errors as Convex reports them: "Uncaught <Name>: <message>" and the user's
// stack frames, source-mapped by Deno, with paths relative to the module
// directory.

function relativeUrl(url) {
  if (call === null || !url.startsWith("file://")) return url;
  const dir = call.dirUrl; // ends with "/"
  if (url.startsWith(dir)) return url.slice(dir.length);
  // A source-mapped frame points next to the bundle (`../convex/x.ts`).
  const dirParts = dir.slice(7, -1).split("/");
  const parts = url.slice(7).split("/");
  let common = 0;
  while (common < dirParts.length && common < parts.length - 1 && dirParts[common] === parts[common]) common++;
  return "../".repeat(dirParts.length - common) + parts.slice(common).join("/");
}

function userFrames(stack) {
  const frames = [];
  for (const line of String(stack).split("\n")) {
    if (!/^\s+at /.test(line)) continue;
    if (line.includes(SHIM_URL)) continue;
    if (/\bext:/.test(line)) continue;
    frames.push(line.replace(/file:\/\/[^\s)]+/g, (u) => relativeUrl(u)));
  }
  return frames;
}

function describeThrown(thrown) {
  if (thrown instanceof RealError || (thrown !== null && typeof thrown === "object" && "stack" in thrown)) {
    let name;
    let message;
    let stack;
    try {
      name = thrown.name === undefined ? "Error" : String(thrown.name);
      message = thrown.message === undefined ? "" : String(thrown.message);
      stack = thrown.stack;
    } catch {
      return "Uncaught Error";
    }
    const head = message === "" ? `Uncaught ${name}` : `Uncaught ${name}: ${message}`;
    const frames = stack === undefined ? [] : userFrames(stack);
    return frames.length > 0 ? head + "\n" + frames.join("\n") : head;
  }
  return "Uncaught " + (typeof thrown === "string" ? thrown : safeInspect(thrown));
}

/** The `{message, data?}` a failed call reports. */
function errorPayload(thrown) {
  if (thrown !== null && typeof thrown === "object") {
    let isConvexError = false;
    try {
      isConvexError = thrown[CONVEX_ERROR] === true && typeof thrown.data === "string";
    } catch {
      isConvexError = false;
    }
    if (isConvexError) {
      let data;
      try {
        data = JSONparse(thrown.data);
      } catch (e) {
        return { message: `ConvexError with invalid data: ${e?.message ?? e}` };
      }
      return { message: describeThrown(thrown), data };
    }
  }
  return { message: describeThrown(thrown) };
}

// ---------------------------------------------------------------------------
// Syscalls.

function roundTrip(op, argsText, isAsync) {
  writeFrame({ t: "syscall", op, args: argsText, async: isAsync });
  const reply = readFrame();
  if (reply.t !== "result") {
    debugLog(`protocol error: expected a result frame, got ${reply.t}`);
    exitProcess(70);
  }
  return reply;
}

function syscallRefusal() {
  if (call === null) return "Convex syscalls can only be used while a function runs";
  if (phase === "import") return "Can't use database at import time";
  return null;
}

function syscall(op, argsText) {
  const refused = syscallRefusal();
  if (refused !== null) throw new RealError(refused);
  if (op === "1.0/queryCleanup") {
    const local = cleanupLocally(String(argsText));
    if (local !== null) return local;
  }
  if (op === "1.0/queryStream" && call.udfType === "Query") {
    return startStreamWithBatch(String(argsText));
  }
  const reply = roundTrip(String(op), String(argsText), false);
  if (reply.error !== undefined) {
    call.syscallFailed = true;
    throw new RealError(reply.error.message);
  }
  return reply.ok;
}

function asyncSyscall(op, argsText) {
  const refused = syscallRefusal();
  if (refused !== null) return RealPromise.reject(new RealError(refused));
  if (op === "1.0/queryStreamNext") {
    const id = streamIdOf(String(argsText));
    if (id !== null) return nextFromBatch(id, String(argsText));
  }
  return settledReply(roundTrip(String(op), String(argsText), true));
}

function settledReply(reply) {
  if (reply.error !== undefined) {
    call.syscallFailed = true;
    const err = new RealError(reply.error.message);
    if (reply.error.data !== undefined) err.data = reply.error.data;
    return RealPromise.reject(err);
  }
  return RealPromise.resolve(reply.ok);
}

// Query streams. `query.collect()` / `take(n)` call `1.0/queryStreamNext`
// once per document and once more for `done`, and `queryCleanup` after it:
// a round trip to the host each. Instead the first `queryStreamNext` asks
// the host for `shim/queryStreamNextBatch`: the answers the next calls
// would get, as many as the stream has already read from the index (the
// host reads nothing more for them, so the read set is what one-by-one
// calls would record). They are handed out one per call, unchanged; a
// `queryCleanup` after the host closed the stream (its `done` was in the
// batch) is answered here with what the host would have said.

// The stream id of `{"queryId": n}`, or null for anything else (which goes
// to the host as it is, to be refused there).
function streamIdOf(argsText) {
  let args;
  try {
    args = JSONparse(argsText);
  } catch {
    return null;
  }
  if (args === null || typeof args !== "object" || Array.isArray(args)) return null;
  const keys = Object.keys(args);
  if (keys.length !== 1 || keys[0] !== "queryId") return null;
  const id = args.queryId;
  return Number.isInteger(id) && id >= 0 && id <= 0xffffffff ? id : null;
}

// In a query, `queryStream` also brings the stream's first batch, in one
// round trip (`shim/queryStreamWithBatch`): `convex/server` asks for the
// first `queryStreamNext` right after `queryStream` (`QueryImpl.next`,
// `[Symbol.asyncIterator]`), and a query cannot write in between, so the
// batch is what that call would have read. If reading it failed, the first
// `queryStreamNext` rejects with that error, as it would have. Mutations
// keep the two apart: one could write between them through an iterator it
// holds, and its first read must see that write.
function startStreamWithBatch(argsText) {
  const reply = roundTrip("shim/queryStreamWithBatch", argsText, false);
  if (reply.error !== undefined) {
    call.syscallFailed = true;
    throw new RealError(reply.error.message);
  }
  const { queryId, values, done, error } = JSONparse(reply.ok);
  call.ahead.set(queryId, error !== undefined ? { error } : aheadOf(values, done));
  return `{"queryId":${JSONstringify(queryId)}}`;
}

// The answers a batch gives the next `queryStreamNext` calls, in order.
function aheadOf(values, done) {
  const texts = [];
  for (let i = 0; i < values.length; i++) {
    texts[i] = `{"value":${JSONstringify(values[i])},"done":false}`;
  }
  if (done) texts[values.length] = `{"value":null,"done":true}`;
  return { texts, at: 0, closed: done };
}

function nextFromBatch(id, argsText) {
  let ahead = call.ahead.get(id);
  if (ahead === undefined) {
    const reply = roundTrip("shim/queryStreamNextBatch", argsText, true);
    if (reply.error !== undefined) return settledReply(reply);
    const { values, done } = JSONparse(reply.ok);
    ahead = aheadOf(values, done);
    call.ahead.set(id, ahead);
  } else if (ahead.error !== undefined) {
    // The first batch failed; the host still holds the stream.
    call.ahead.delete(id);
    return settledReply({ error: ahead.error });
  }
  const text = ahead.texts[ahead.at++];
  if (ahead.at === ahead.texts.length) {
    call.ahead.delete(id);
    if (ahead.closed) call.finished.add(id);
  }
  return RealPromise.resolve(text);
}

// `queryCleanup`'s answer when the host already closed the stream, else
// null (ask the host).
function cleanupLocally(argsText) {
  const id = streamIdOf(argsText);
  if (id === null) return null;
  const ahead = call.ahead.get(id);
  if (ahead !== undefined) {
    call.ahead.delete(id);
    // Still open as far as the function knows: the host would say true.
    if (ahead.closed) return "true";
    return null;
  }
  if (call.finished.delete(id)) return "false";
  return null;
}

function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// jsSyscalls receive live objects. The storage ones become ordinary async
// syscalls with the blob as base64:
//   storage/storeBlob {requestId, version, blob: base64, contentType|null, sha256|null} -> storageId
//   storage/getBlob   {requestId, version, storageId} -> null | {blob: base64, contentType|null}
function jsSyscall(op, args) {
  switch (op) {
    case "storage/storeBlob":
      return (async () => {
        const blob = args.blob;
        if (!(blob instanceof RealBlob)) throw new RealTypeError("storage.store() expects a Blob");
        const bytes = new Uint8Array(await blob.arrayBuffer());
        const text = await asyncSyscall("storage/storeBlob", JSONstringify({
          requestId: args.requestId,
          version: args.version,
          blob: bytesToBase64(bytes),
          contentType: blob.type === "" ? null : blob.type,
          sha256: args.options?.sha256 ?? null,
        }));
        return JSONparse(text);
      })();
    case "storage/getBlob":
      return (async () => {
        const text = await asyncSyscall("storage/getBlob", JSONstringify({
          requestId: args.requestId,
          version: args.version,
          storageId: args.storageId,
        }));
        const answer = JSONparse(text);
        if (answer === null) return null;
        return new RealBlob([base64ToBytes(answer.blob)], { type: answer.contentType ?? "" });
      })();
    default:
      throw uncatchable(new RealError(`Unknown JS syscall: ${op}`), true);
  }
}

// ---------------------------------------------------------------------------
// Hide what Convex's runtime does not have, then install Convex's globals.

for (
  const name of [
    "Deno", "Buffer", "global", "setImmediate", "clearImmediate", "localStorage",
    "sessionStorage", "caches", "alert", "confirm", "prompt",
  ]
) {
  delete globalThis[name];
}
Object.defineProperty(globalThis, "process", {
  value: processShim,
  writable: true,
  configurable: true,
  enumerable: false,
});
Object.defineProperty(globalThis, "Convex", {
  value: Object.freeze({ syscall, asyncSyscall, jsSyscall }),
  writable: false,
  configurable: false,
  enumerable: false,
});

let unhandled = [];
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  if (call !== null) uncatchable(event.reason);
  else unhandled.push(event.reason);
});
globalThis.addEventListener("error", (event) => {
  event.preventDefault();
  if (call !== null) uncatchable(event.error);
  else unhandled.push(event.error);
});

// When the event loop has nothing left to do while a call's promise is
// pending, the promise can never settle.
let onStall = null;
globalThis.addEventListener("beforeunload", (event) => {
  if (onStall !== null) {
    const resolve = onStall;
    onStall = null;
    event.preventDefault();
    resolve();
  }
});

const NEVER = Symbol("never");

// One turn of the event loop. Deno reports unhandled rejections between
// turns, so after this resolves every rejection made before it has been
// reported. An immediate (Deno's own `setImmediate`, captured before the
// shim hides it from user code) is the cheapest turn: about 2 us of CPU
// where a fresh MessageChannel took 12-28 us in a tight loop and 50-75 us
// between real calls, and a 0 ms timer waits 1-2 ms. A pending immediate
// keeps the loop alive only until it runs. (A Deno without a global
// `setImmediate`, which `--deno` could name, gets the channel.)
function eventLoopTurn() {
  return new RealPromise((resolve) => {
    if (typeof realSetImmediate === "function") {
      realSetImmediate(resolve);
      return;
    }
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}

async function settle(promise) {
  let stalled;
  const stall = new RealPromise((resolve) => {
    stalled = resolve;
  }).then(() => NEVER);
  onStall = stalled;
  try {
    return await RealPromise.race([promise, stall]);
  } finally {
    onStall = null;
  }
}

// ---------------------------------------------------------------------------
// Modules.

const loaded = new Map(); // url -> namespace

async function importModule(dirUrl, path, importSeed, importNowMs) {
  const url = dirUrl + encodeURI(path);
  const cached = loaded.get(url);
  if (cached !== undefined) return { ns: cached, fresh: false };
  const saved = { mode, phase, frozenNowMs, callStartPerf, key: chachaKey.slice(), counter: chachaCounter, index: chachaIndex, out: chachaOut.slice() };
  mode = "deterministic";
  phase = "import";
  frozenNowMs = importNowMs;
  callStartPerf = realPerformanceNow();
  seedRng(importSeed);
  try {
    const ns = await settle(import(url));
    if (ns === NEVER) {
      throw new RealError(`Importing ${path} never finishes: its top-level await waits forever`);
    }
    loaded.set(url, ns);
    return { ns, fresh: true };
  } finally {
    mode = saved.mode;
    phase = saved.phase;
    frozenNowMs = saved.frozenNowMs;
    callStartPerf = saved.callStartPerf;
    chachaKey.set(saved.key);
    chachaCounter = saved.counter;
    chachaIndex = saved.index;
    chachaOut.set(saved.out);
  }
}

function beginCall(kind, msg) {
  call = {
    kind,
    udfType: msg.udfType ?? "Query",
    requestId: msg.requestId ?? "",
    dirUrl: msg.dirUrl,
    logCount: 0,
    fatal: undefined,
    fatalPlain: false,
    hasFatal: false,
    timers: new Set(),
    aborts: new Set(),
    syscallFailed: false,
    // Query streams read ahead (see `nextFromBatch`): queryId -> {texts,
    // at, closed}, and the ids whose `done` answer was handed out.
    ahead: new Map(),
    finished: new Set(),
  };
  fakeTimerId = 0;
  consoleTimers.clear();
  counters.clear();
  if (msg.env !== undefined && msg.env !== null) {
    envVars = Object.assign(Object.create(null), msg.env);
  }
  reportBetweenCalls();
}

// Failures reported while no call runs (a rejection Deno reported after
// its call ended) belong to no call: they go to stderr.
function reportBetweenCalls() {
  for (const reason of unhandled) {
    debugLog("unhandled error after its call ended: " + describeThrown(reason));
  }
  unhandled = [];
}

function endCall() {
  if (call !== null) {
    for (const id of call.timers) {
      realClearTimeout(id);
      realClearInterval(id);
    }
    for (const controller of call.aborts) controller.abort();
  }
  call = null;
  mode = "real";
  phase = "run";
}

function finish(outcome) {
  // An uncatchable error wins over whatever the function returned.
  if (call !== null && call.hasFatal) {
    if (call.fatalPlain) return { t: "done", error: { message: call.fatal.message } };
    return { t: "done", error: errorPayload(call.fatal) };
  }
  return outcome;
}

const INVOKERS = {
  Query: { invoke: "invokeQuery" },
  Mutation: { invoke: "invokeMutation" },
  Action: { invoke: "invokeAction" },
};

function classify(fn, udfType, udfPath) {
  const isQuery = fn.isQuery === true;
  const isMutation = fn.isMutation === true;
  const isAction = fn.isAction === true;
  if (udfType === "Query" && isQuery && !isMutation && !isAction) return null;
  if (udfType === "Mutation" && isMutation && !isQuery && !isAction) return null;
  if (udfType === "Action" && isAction && !isQuery && !isMutation) return null;
  if (udfType === "Action") {
    return `Function ${udfPath} is not registered as an action. Did you forget to wrap it with \`action\`?`;
  }
  if (udfType === "Query" && isMutation) {
    return `Function ${udfPath} is registered as a mutation but is being run as a query.`;
  }
  if (udfType === "Mutation" && isQuery) {
    return `Function ${udfPath} is registered as a query but is being run as a mutation.`;
  }
  if (isAction) {
    return `Function ${udfPath} is registered as an action but is being run as a ${udfType.toLowerCase()}.`;
  }
  return `Function ${udfPath} is neither a query or mutation. Did you forget to wrap it with \`query\` or \`mutation\`?`;
}

async function runFunction(msg) {
  // msg: {t:"run", dirUrl, module, name, udfType, args, seed, nowMs,
  //       requestId, importSeed, importNowMs, importing, env?}
  beginCall("run", msg);
  let mod;
  try {
    const { ns } = await importModule(msg.dirUrl, msg.module, msg.importSeed, msg.importNowMs);
    mod = ns;
    // The host times the import apart from the call when it thinks the
    // module is new to this worker; tell it the import is over.
    if (msg.importing) writeFrame({ t: "imported" });
  } catch (e) {
    return finish({ t: "done", error: errorPayload(e) });
  }
  if (msg.udfType === "HttpAction") return await runHttpAction(mod, msg);
  const udfPath = `${msg.module}:${msg.name}`;
  let fn;
  try {
    fn = mod[msg.name];
  } catch (e) {
    return finish({ t: "done", error: errorPayload(e) });
  }
  if (fn === undefined || fn === null || (typeof fn !== "function" && typeof fn !== "object")) {
    return finish({ t: "done", error: { message: `Couldn't find ${JSONstringify(msg.name)} in module ${JSONstringify(msg.module)}.` } });
  }
  const wrong = classify(fn, msg.udfType, udfPath);
  if (wrong !== null) return finish({ t: "done", error: { message: wrong } });
  const invoker = INVOKERS[msg.udfType];

  if (msg.udfType === "Action") {
    mode = "real";
  } else {
    mode = "deterministic";
    seedRng(msg.seed);
    frozenNowMs = msg.nowMs;
    callStartPerf = realPerformanceNow();
  }
  phase = "run";
  let result;
  try {
    const promise = msg.udfType === "Action"
      ? fn[invoker.invoke].call(globalThis, msg.requestId, msg.args)
      : fn[invoker.invoke].call(globalThis, msg.args);
    result = await settle(promise);
  } catch (e) {
    return finish({ t: "done", error: errorPayload(e) });
  }
  // A failed syscall whose promise nobody awaited (a write that failed) must
  // fail the call, as in Convex: let Deno report such rejections now.
  if (call.syscallFailed) await eventLoopTurn();
  if (result === NEVER) {
    return finish({ t: "done", error: { message: "Returned promise will never resolve" } });
  }
  if (typeof result !== "string") {
    return finish({ t: "done", error: { message: `Function ${udfPath} returned a non-string from ${invoker.invoke}` } });
  }
  return finish({ t: "done", ok: result });
}

// HTTP actions: `msg.args` is the request, {method, url, headers: [[name,
// value]], body: base64 | null}; the answer is the response, {status,
// headers, body: base64}.
async function runHttpAction(mod, msg) {
  const router = mod.default;
  if (router === null || typeof router !== "object" || router.isRouter !== true) {
    return finish({ t: "done", error: { message: "The default export of `convex/http.js` is not a Router." } });
  }
  const req = JSONparse(msg.args);
  mode = "real";
  phase = "run";
  let response;
  try {
    const match = router.lookup(new URL(req.url).pathname, req.method);
    if (match === null) {
      response = new Response("No matching routes found", { status: 404 });
    } else {
      const [handler] = match;
      const body = req.body === null || req.method === "GET" || req.method === "HEAD"
        ? undefined
        : base64ToBytes(req.body);
      const request = new Request(req.url, { method: req.method, headers: req.headers, body });
      const result = await settle(handler.invokeHttpAction(request));
      if (result === NEVER) {
        return finish({ t: "done", error: { message: "Returned promise will never resolve" } });
      }
      if (!(result instanceof Response)) {
        return finish({ t: "done", error: { message: "HTTP actions must return a Response" } });
      }
      response = result;
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    return finish({
      t: "done",
      ok: JSONstringify({ status: response.status, headers: [...response.headers], body: bytesToBase64(bytes) }),
    });
  } catch (e) {
    return finish({ t: "done", error: errorPayload(e) });
  }
}

// ---------------------------------------------------------------------------
// Analysis: what each module exports (convex/server's registration flags).

function analyzeExport(name, value) {
  if (value === null || (typeof value !== "function" && typeof value !== "object")) return null;
  const flags = [value.isQuery === true, value.isMutation === true, value.isAction === true];
  if (flags.filter(Boolean).length !== 1) return null;
  const udfType = flags[0] ? "Query" : flags[1] ? "Mutation" : "Action";
  const isPublic = value.isPublic === true;
  const isInternal = value.isInternal === true;
  if (isPublic && isInternal) return null;
  const visibility = isInternal ? { kind: "internal" } : { kind: "public" };
  const args = typeof value.exportArgs === "function" ? value.exportArgs() : '{"type":"any"}';
  let returns = typeof value.exportReturns === "function" ? value.exportReturns() : null;
  if (returns === "null") returns = null;
  return { name, pos: null, udfType, visibility, args, returns };
}

async function analyzeModules(msg) {
  // msg: {t:"analyze", dirUrl, modules: [path], importSeed, importNowMs}
  beginCall("analyze", msg);
  const modules = {};
  let schema = null;
  for (const path of msg.modules) {
    let ns;
    try {
      ({ ns } = await importModule(msg.dirUrl, path, msg.importSeed, msg.importNowMs));
    } catch (e) {
      return finish({ t: "done", error: { message: `Failed to analyze ${path}: ${errorPayload(e).message}` } });
    }
    try {
      if (path === "schema.js") {
        const def = ns.default;
        if (def === undefined || typeof def?.export !== "function") {
          throw new RealError("schema.js must have a default export from defineSchema()");
        }
        schema = JSONparse(def.export());
        continue;
      }
      const functions = [];
      for (const [name, value] of Object.entries(ns)) {
        const f = analyzeExport(name, value);
        if (f !== null) functions.push(f);
      }
      let httpRoutes = null;
      if (path === "http.js" && ns.default?.isRouter === true && typeof ns.default.getRoutes === "function") {
        httpRoutes = ns.default.getRoutes().map(([routePath, method]) => ({ path: routePath, method }));
      }
      let cronSpecs = null;
      if (path === "crons.js" && ns.default?.isCrons === true && typeof ns.default.export === "function") {
        cronSpecs = JSONparse(ns.default.export());
      }
      modules[path] = { functions, httpRoutes, cronSpecs, sourceMapped: null };
    } catch (e) {
      return finish({ t: "done", error: { message: `Failed to analyze ${path}: ${errorPayload(e).message}` } });
    }
  }
  return finish({ t: "analysis", modules, schema });
}

// ---------------------------------------------------------------------------
// The loop. Not a top-level await: with one, Deno would exit on a promise
// that can never settle instead of dispatching `beforeunload`.

async function main() {
  writeFrame({ t: "ready", deno: denoVersion });
  for (;;) {
    const msg = readFrame();
    let reply;
    try {
      if (msg.t === "run") reply = await runFunction(msg);
      else if (msg.t === "analyze") reply = await analyzeModules(msg);
      else {
        debugLog(`protocol error: unexpected frame ${msg.t}`);
        exitProcess(70);
      }
    } catch (e) {
      reply = { t: "done", error: { message: "Internal error in the worker: " + describeThrown(e) } };
    } finally {
      endCall();
    }
    writeFrame(reply);
    // While the host reads the answer, give Deno a turn to report what the
    // call left behind, so none of it is blamed on the next call.
    await eventLoopTurn();
    reportBetweenCalls();
  }
}

main();
