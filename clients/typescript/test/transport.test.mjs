// The client's wire behaviour against a scripted stand-in daemon: hello first, ids, reply
// matching, resend order and tokens, timeouts, aborts, limits, connection-level errors,
// reconnect budgets, close().
import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";

import {
  Backoff,
  Client,
  ClientClosedError,
  ConnectionLostError,
  DaemonUnavailableError,
  ForbiddenError,
  ProtocolError,
  RequestTimeoutError,
  RetryPolicy,
  ServerError,
} from "../dist/index.js";
import { FakeServer, HELLO_RESULT, waitFor } from "./helpers/fakeserver.mjs";
import { shortTempDir } from "./helpers/daemon.mjs";

async function withServer(onRequest, fn) {
  const server = await new FakeServer(onRequest).listen();
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

test("hello goes first on every connection; ids grow by one; replies match out of order", async () => {
  await withServer(
    (conn, request) => {
      if (request.op === "hello") conn.ok(request, HELLO_RESULT);
      else if (request.op === "get" && request.key === "a") setTimeout(() => conn.ok(request, null), 30);
      else conn.answerDefault(request);
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        const [a, b] = await Promise.all([client.get("a"), client.patch("b", { x: 1 })]);
        assert.equal(a, null);
        assert.equal(b.data.x, 1);
        const requests = server.connections[0].requests;
        assert.deepEqual(
          requests.map((r) => r.op),
          ["hello", "get", "patch"],
        );
        assert.deepEqual(
          requests.map((r) => r.id),
          [1, 2, 3],
        );
        assert.equal(requests[0].protocol, 1);
        assert.equal(client.serverInfo.version, "fake");
      } finally {
        await client.close();
      }
    },
  );
});

test("writes carry a fresh request_token (random prefix + counter); reads carry none", async () => {
  await withServer(undefined, async (server) => {
    const client = new Client(server.socketPath);
    try {
      await client.patch("k", { a: 1 });
      await client.patch("k", { a: 2 });
      await client.get("k");
      const [p1, p2, g] = server.requests.filter((r) => r.op !== "hello");
      assert.match(p1.request_token, /^[0-9a-f]{24}[0-9a-f]+$/);
      assert.notEqual(p1.request_token, p2.request_token);
      assert.equal(p1.request_token.slice(0, 24), p2.request_token.slice(0, 24));
      assert.equal(g.request_token, undefined);
    } finally {
      await client.close();
    }
  });
});

test("after a connection loss: calls resent in their original order, tokens kept, before new calls", async () => {
  let drop = true;
  await withServer(
    (conn, request) => {
      if (request.op === "hello") return conn.ok(request, HELLO_RESULT);
      if (drop) {
        // Take the whole pipeline, answer nothing, and hang up.
        if (conn.requests.length === 6) {
          drop = false;
          setTimeout(() => conn.socket.destroy(), 20);
        }
        return undefined;
      }
      return conn.answerDefault(request);
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        const first = [1, 2, 3, 4, 5].map((i) => client.patch("k", { i }));
        await waitFor(() => server.connections.length === 1 && server.connections[0].requests.length === 6);
        await waitFor(() => server.connections[0].socket.destroyed);
        const late = client.patch("k", { i: 6 }); // made while the connection is down (or just after)
        const results = await Promise.all([...first, late]);
        assert.deepEqual(
          results.map((s) => s.data.i),
          [1, 2, 3, 4, 5, 6],
        );
        const firstWire = server.connections[0].requests.filter((r) => r.op === "patch");
        const secondWire = server.connections.at(-1).requests;
        assert.equal(secondWire[0].op, "hello");
        const resent = secondWire.filter((r) => r.op === "patch");
        assert.deepEqual(
          resent.map((r) => r.patch.i),
          [1, 2, 3, 4, 5, 6],
        );
        assert.deepEqual(
          resent.slice(0, 5).map((r) => r.request_token),
          firstWire.map((r) => r.request_token),
        );
        const ids = secondWire.map((r) => r.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      } finally {
        await client.close();
      }
    },
  );
});

test("shutting_down and busy: not applied, resent on the next connection", async () => {
  let refusals = 0;
  await withServer(
    (conn, request) => {
      if (request.op === "hello") {
        if (server_count() === 2) {
          // The second connection: refused once at connect with busy (id null), then closed.
          conn.error(null, "busy", "too many connections");
          conn.socket.end();
          return undefined;
        }
        return conn.ok(request, HELLO_RESULT);
      }
      if (server_count() === 1) {
        refusals += 1;
        return conn.error(request, "shutting_down", "stopping");
      }
      return conn.answerDefault(request);
    },
    async (server) => {
      globalThis.__fake = server;
      const client = new Client(server.socketPath);
      try {
        const results = await Promise.all([client.patch("k", { i: 1 }), client.patch("k", { i: 2 })]);
        assert.deepEqual(
          results.map((s) => s.data.i),
          [1, 2],
        );
        assert.equal(refusals, 2);
        assert.equal(server.connections.length, 3);
        assert.deepEqual(
          server.connections[2].requests.map((r) => r.op),
          ["hello", "patch", "patch"],
        );
      } finally {
        await client.close();
      }
    },
  );
  function server_count() {
    return globalThis.__fake.connections.length;
  }
});

test("forbidden (id null) fails every call without retrying", async () => {
  await withServer(
    (conn) => {
      conn.error(null, "forbidden", "uid 1000 is not allowed");
      conn.socket.end();
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        const results = await Promise.allSettled([client.get("a"), client.get("b")]);
        for (const r of results) assert.ok(r.reason instanceof ForbiddenError, String(r.reason));
        assert.equal(server.connections.length, 1);
      } finally {
        await client.close();
      }
    },
  );
});

test("an unknown error code is a ServerError keeping its code", async () => {
  await withServer(
    (conn, request) => (request.op === "hello" ? conn.ok(request, HELLO_RESULT) : conn.error(request, "brand_new", "m")),
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        const error = await client.get("a").catch((e) => e);
        assert.equal(error.constructor, ServerError);
        assert.equal(error.code, "brand_new");
        assert.equal(server.connections.length, 1); // the connection stays usable
        await assert.rejects(client.get("b"), ServerError);
        assert.equal(server.connections.length, 1);
      } finally {
        await client.close();
      }
    },
  );
});

test("a timed-out call fails with RequestTimeoutError; its connection is closed, the others resent", async () => {
  await withServer(
    (conn, request) => {
      if (request.op === "get" && request.key === "slow") return undefined; // never answered
      if (request.op === "get" && request.key === "later" && conn === globalThis.__first) return undefined;
      return conn.answerDefault(request);
    },
    async (server) => {
      server.server.once("connection", () => undefined);
      const client = new Client(server.socketPath, { timeoutMs: 5000 });
      try {
        const slow = client.get("slow", { timeoutMs: 150 }).catch((e) => e);
        await waitFor(() => server.connections.length === 1);
        globalThis.__first = server.connections[0];
        const later = client.get("later");
        const started = Date.now();
        const error = await slow;
        assert.ok(error instanceof RequestTimeoutError, String(error));
        assert.ok(Date.now() - started < 1000);
        assert.equal(await later, null); // resent on a new connection
        assert.equal(server.connections.length, 2);
        assert.ok(server.connections[0].socket.destroyed || server.connections[0].socket.readableEnded);
        assert.deepEqual(
          server.connections[1].requests.map((r) => r.key ?? r.op),
          ["hello", "later"],
        );
      } finally {
        await client.close();
      }
    },
  );
});

test("AbortSignal: a pre-aborted call is not sent; aborting an in-flight call closes its connection", async () => {
  await withServer(
    (conn, request) => {
      if (request.op === "get" && (request.key === "hang" || (request.key === "other" && conn === globalThis.__first2)))
        return undefined;
      return conn.answerDefault(request);
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        await assert.rejects(client.get("x", { signal: AbortSignal.abort() }), { name: "AbortError" });
        assert.equal(server.connections.length, 0);
        const controller = new AbortController();
        const hang = client.get("hang", { signal: controller.signal });
        await waitFor(() => server.connections.length === 1);
        globalThis.__first2 = server.connections[0];
        const other = client.get("other");
        await waitFor(() => server.connections[0].requests.length === 3);
        const reason = new Error("caller gave up");
        controller.abort(reason);
        await assert.rejects(hang, (e) => e === reason);
        assert.equal(await other, null);
        assert.equal(server.connections.length, 2);
      } finally {
        await client.close();
      }
    },
  );
});

test("a reply over the announced max_reply_bytes is a ProtocolError", async () => {
  await withServer(
    (conn, request) => {
      if (request.op === "hello") return conn.ok(request, { ...HELLO_RESULT, max_reply_bytes: 1000 });
      return conn.ok(request, { key: "k", entry: { blob: "x".repeat(2000) }, revision: "0000000000000000" });
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        const error = await client.get("k").catch((e) => e);
        assert.ok(error instanceof ProtocolError, String(error));
        assert.equal(client.serverInfo.maxReplyBytes, 1000);
      } finally {
        await client.close();
      }
    },
  );
});

test("a reply that is not a reply is a ProtocolError; a bad result shape fails only its call", async () => {
  await withServer(
    (conn, request) => {
      if (request.op === "hello") return conn.ok(request, HELLO_RESULT);
      if (request.key === "shape") return conn.ok(request, { key: 5 });
      return conn.send([1, 2, 3]);
    },
    async (server) => {
      const client = new Client(server.socketPath);
      try {
        await assert.rejects(client.get("shape"), ProtocolError);
        assert.equal(server.connections.length, 1);
        await assert.rejects(client.get("garbage"), ProtocolError);
      } finally {
        await client.close();
      }
    },
  );
});

test("request ids wrap before 2^53", async () => {
  await withServer(undefined, async (server) => {
    const client = new Client(server.socketPath);
    try {
      await client.get("a");
      client["nextId"] = Number.MAX_SAFE_INTEGER - 1;
      await Promise.all([client.get("b"), client.get("c"), client.get("d")]);
      const ids = server.requests.map((r) => r.id);
      assert.deepEqual(ids.slice(-3), [Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER, 1]);
      assert.ok(ids.every((id) => Number.isSafeInteger(id) && id > 0));
    } finally {
      await client.close();
    }
  });
});

test("a client that never connected gives up after firstConnectTimeoutMs (1 s)", async () => {
  const client = new Client(path.join(shortTempDir(), "nobody.sock"));
  const started = Date.now();
  const error = await client.get("a").catch((e) => e);
  const elapsed = Date.now() - started;
  assert.ok(error instanceof DaemonUnavailableError, String(error));
  assert.ok(elapsed >= 900 && elapsed < 2500, `${elapsed} ms`);
  await client.close();
});

test("after a loss, reconnecting gives up after reconnectTimeoutMs", async () => {
  const server = await new FakeServer().listen();
  const client = new Client(server.socketPath, {
    retry: new RetryPolicy({ reconnectTimeoutMs: 400, backoff: new Backoff({ baseMs: 10, capMs: 50 }) }),
  });
  try {
    await client.get("a");
    await server.close();
    const started = Date.now();
    const error = await client.get("b").catch((e) => e);
    const elapsed = Date.now() - started;
    assert.ok(error instanceof DaemonUnavailableError || error instanceof ConnectionLostError, String(error));
    assert.ok(elapsed >= 300 && elapsed < 1500, `${elapsed} ms`);
  } finally {
    await client.close();
  }
});

test("close() fails calls in flight at once with ClientClosedError, and later calls too", async () => {
  await withServer(
    (conn, request) => (request.op === "hello" ? conn.ok(request, HELLO_RESULT) : undefined),
    async (server) => {
      const client = new Client(server.socketPath);
      const pending = client.get("a");
      const watch = client.watch("p");
      await waitFor(() => server.requests.length === 3);
      const started = Date.now();
      await client.close();
      await assert.rejects(pending, ClientClosedError);
      await assert.rejects(watch.next(), ClientClosedError);
      assert.ok(Date.now() - started < 100);
      await assert.rejects(client.get("b"), ClientClosedError);
      await waitFor(() => server.connections[0].socket.destroyed || server.connections[0].socket.readableEnded);
    },
  );
});
