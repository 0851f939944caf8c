// The Node.js runtime's worker process: loads one handler (ESM or CommonJS) and runs one invocation at a time,
// like a Lambda sandbox. Started by fastgw (fastgw/functions/pool.py) with the function's folder as working
// directory; talks to the gateway over the socket whose descriptor is in _FASTGW_CHANNEL_FD, in frames of a
// 4-byte big-endian length and a JSON message.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import util from "node:util";
import { pathToFileURL } from "node:url";

const fn = JSON.parse(process.env._FASTGW_FUNCTION);
const chan = new net.Socket({ fd: Number(process.env._FASTGW_CHANNEL_FD), readable: true, writable: true });
delete process.env._FASTGW_FUNCTION;
delete process.env._FASTGW_CHANNEL_FD;
let currentId = "";

function send(msg) {
  const body = Buffer.from(JSON.stringify(msg));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  chan.write(Buffer.concat([head, body]));
}

function errorOf(err, type) {
  if (err instanceof Error) {
    return { errorType: type || err.name, errorMessage: err.message, trace: String(err.stack || "").split("\n") };
  }
  return { errorType: type || "Error", errorMessage: typeof err === "string" ? err : util.inspect(err), trace: [] };
}

// console.* goes to the gateway's log in Lambda's format: time, request id, level, message.
for (const [method, level] of [["log", "INFO"], ["info", "INFO"], ["warn", "WARN"], ["error", "ERROR"],
                               ["debug", "DEBUG"], ["trace", "TRACE"]]) {
  console[method] = (...args) => {
    const text = util.format(...args);
    for (const line of text.split("\n")) {
      send({ t: "log", id: currentId, line: `${new Date().toISOString()}\t${currentId || "undefined"}\t${level}\t${line}` });
    }
  };
}

async function loadHandler(spec) {
  const dot = spec.lastIndexOf(".");
  const moduleName = spec.slice(0, dot);
  const exportName = spec.slice(dot + 1);
  const file = [".mjs", ".js", ".cjs"].map((ext) => path.resolve(moduleName + ext)).find((f) => fs.existsSync(f));
  if (!file) {
    const err = new Error(`Cannot find module '${moduleName}'`);
    err.name = "Runtime.ImportModuleError";
    throw err;
  }
  const mod = await import(pathToFileURL(file).href);
  const handler = mod[exportName] ?? mod.default?.[exportName];
  if (typeof handler !== "function") {
    const err = new Error(`${moduleName}.${exportName} is undefined or not exported`);
    err.name = "Runtime.HandlerNotFound";
    throw err;
  }
  return handler;
}

function context(msg) {
  const ctx = {
    awsRequestId: msg.id,
    functionName: fn.name,
    functionVersion: "$LATEST",
    invokedFunctionArn: fn.arn,
    memoryLimitInMB: String(fn.memory),
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: fn.log_stream,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, msg.deadline_ms - Date.now()),
  };
  return ctx;
}

function runHandler(handler, event, ctx) {
  if (handler.length >= 3) {
    // Callback style: the first of callback(err, value) or a returned promise settles the invocation.
    return new Promise((resolve, reject) => {
      const callback = (err, value) => (err ? reject(err) : resolve(value));
      ctx.succeed = (value) => resolve(value);
      ctx.fail = (err) => reject(err);
      ctx.done = callback;
      const returned = handler(event, ctx, callback);
      if (returned && typeof returned.then === "function") returned.then(resolve, reject);
    });
  }
  return Promise.resolve().then(() => handler(event, ctx));
}

function fatal(err, type) {
  // An error no invocation can catch: report it for the invocation in flight, then exit like Lambda's runtime.
  // `exiting` tells the gateway not to give this worker another invocation in the meantime.
  if (currentId) send({ t: "result", id: currentId, ok: false, exiting: true, error: errorOf(err, type) });
  else send({ t: "log", id: "", line: `${type}: ${util.inspect(err)}` });
  chan.end(() => process.exit(1));
}
process.on("uncaughtException", (err) => fatal(err, "Runtime.UncaughtException"));
process.on("unhandledRejection", (err) => fatal(err, "Runtime.UnhandledPromiseRejection"));

let handler;
try {
  handler = await loadHandler(fn.handler);
} catch (err) {
  const type = err?.name?.startsWith("Runtime.") ? err.name
    : err instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
  send({ t: "init_error", error: errorOf(err, type) });
  chan.end(() => process.exit(1));
}

if (handler) {
  let buf = Buffer.alloc(0);
  const queue = [];
  let busy = false;
  const next = async () => {
    if (busy || !queue.length) return;
    busy = true;
    const msg = queue.shift();
    currentId = msg.id;
    let reply;
    try {
      const value = await runHandler(handler, msg.event, context(msg));
      reply = { t: "result", id: msg.id, ok: true, value: value === undefined ? null : value };
    } catch (err) {
      reply = { t: "result", id: msg.id, ok: false, error: errorOf(err) };
    }
    try {
      send(reply); // stringifies before writing anything: a value that cannot be sent fails this invocation only
    } catch (err) {
      send({ t: "result", id: msg.id, ok: false, error: errorOf(err, "Runtime.MarshalError") });
    }
    currentId = "";
    busy = false;
    next();
  };
  chan.on("data", (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const n = buf.readUInt32BE(0);
      if (buf.length < 4 + n) break;
      queue.push(JSON.parse(buf.subarray(4, 4 + n).toString("utf8")));
      buf = buf.subarray(4 + n);
    }
    next();
  });
  chan.on("end", () => process.exit(0));
  chan.on("error", () => process.exit(1));
  send({ t: "ready", pid: process.pid });
}
