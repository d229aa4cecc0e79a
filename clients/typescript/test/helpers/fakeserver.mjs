// A scriptable stand-in for the daemon on a Unix socket, to check the client's wire
// behaviour exactly (ids, order, hello first, tokens, timeouts, limits). Each connection
// records the requests it received; `onRequest(conn, request)` decides the replies.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { decode, encode } from "@msgpack/msgpack";

import { shortTempDir } from "./daemon.mjs";

export function frame(value) {
  const payload = encode(value);
  const out = Buffer.alloc(4 + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, 4);
  return out;
}

export const HELLO_RESULT = {
  protocol: 1,
  protocols: [1],
  server: "sessiond",
  version: "fake",
  max_frame_bytes: 16 * 1024 * 1024,
  max_reply_bytes: 4 * 1024 * 1024,
  max_key_bytes: 1024,
  max_entry_bytes: 1024 * 1024,
  max_keys_per_request: 1000,
  max_list_limit: 1000,
  max_depth: 32,
  max_fields: 10000,
  max_inflight_per_connection: 256,
};

export class FakeServer {
  constructor(onRequest) {
    this.dir = shortTempDir();
    this.socketPath = path.join(this.dir, "f.sock");
    this.connections = [];
    this.onRequest = onRequest ?? ((conn, request) => conn.answerDefault(request));
    this.server = net.createServer((socket) => this.accept(socket));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(this.socketPath, resolve));
    return this;
  }

  accept(socket) {
    const conn = {
      socket,
      requests: [],
      send: (value) => socket.write(frame(value)),
      ok: (request, result, extra = {}) => socket.write(frame({ id: request.id, ok: true, result, ...extra })),
      error: (request, code, message = code, extra = {}) =>
        socket.write(frame({ id: request === null ? null : request.id, ok: false, error: { code, message, ...extra } })),
      answerDefault: (request) => {
        if (request.op === "hello") conn.ok(request, HELLO_RESULT);
        else if (request.op === "get") conn.ok(request, null);
        else if (request.op === "patch")
          conn.ok(request, { key: request.key, entry: request.patch, revision: "0000000000000000" }, { seq: request.id });
        else conn.ok(request, true);
      },
    };
    this.connections.push(conn);
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 4) {
        const length = buffered.readUInt32BE(0);
        if (buffered.length < 4 + length) break;
        const request = decode(buffered.subarray(4, 4 + length));
        buffered = buffered.subarray(4 + length);
        conn.requests.push(request);
        this.onRequest(conn, request);
      }
    });
    socket.on("error", () => undefined);
  }

  /** Every request received, in order, across connections. */
  get requests() {
    return this.connections.flatMap((c) => c.requests);
  }

  dropAll() {
    for (const conn of this.connections) conn.socket.destroy();
  }

  async close() {
    this.dropAll();
    await new Promise((resolve) => this.server.close(resolve));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function waitFor(predicate, timeoutMs = 5000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      let value;
      try {
        value = predicate();
      } catch (error) {
        reject(error);
        return;
      }
      if (value) resolve(value);
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
