// Every operation against a real daemon: results, options, CAS conflicts, typed errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  Client,
  CompactedError,
  ConflictError,
  FrameTooLargeError,
  InvalidRequestError,
  ServerError,
  Session,
  SessiondError,
  UnknownOpError,
  serverErrorFor,
} from "../dist/index.js";
import { startDaemon } from "./helpers/daemon.mjs";

let daemon;
let client;

before(async () => {
  daemon = await startDaemon();
  client = new Client(daemon.socketPath);
});

after(async () => {
  await client?.close();
  await daemon?.kill();
});

describe("operations", () => {
  test("hello reports the protocol and the limits", async () => {
    const info = await client.hello();
    assert.equal(info.protocol, 1);
    assert.deepEqual(info.protocols, [1]);
    assert.equal(info.server, "sessiond");
    assert.equal(info.maxReplyBytes, 4 * 1024 * 1024);
    assert.equal(info.maxFrameBytes, 16 * 1024 * 1024);
    assert.equal(client.serverInfo.maxListLimit, 1000);
  });

  test("patch creates, get reads, seq only on writes", async () => {
    const written = await client.patch("agent:main:ops-1", { lastTo: "+1555", custom: { a: [1, 2] } });
    assert.ok(written instanceof Session);
    assert.equal(written.key, "agent:main:ops-1");
    assert.equal(written.data.lastTo, "+1555");
    assert.deepEqual(written.data.custom, { a: [1, 2] });
    assert.equal(typeof written.sessionId, "string");
    assert.equal(typeof written.data.updatedAt, "number");
    assert.match(written.revision, /^[0-9a-f]{16}$/);
    assert.equal(typeof written.seq, "number");
    const read = await client.get("agent:main:ops-1");
    assert.deepEqual(read.data, written.data);
    assert.equal(read.revision, written.revision);
    assert.equal(read.seq, null);
    assert.equal(await client.get("agent:main:missing"), null);
  });

  test("a null in a patch deletes the field", async () => {
    await client.patch("agent:main:ops-null", { a: 1, b: 2 });
    const s = await client.patch("agent:main:ops-null", { a: null });
    assert.equal("a" in s.data, false);
    assert.equal(s.data.b, 2);
  });

  test("fields projects and keeps the whole entry's revision", async () => {
    const full = await client.patch("agent:main:ops-fields", { label: "x", model: "m", other: 1 });
    const projected = await client.get("agent:main:ops-fields", { fields: ["label"] });
    assert.deepEqual(Object.keys(projected.data).sort(), ["label", "sessionId", "updatedAt"]);
    assert.equal(projected.revision, full.revision);
  });

  test("getMany returns the keys that exist", async () => {
    await client.patch("agent:main:gm-1", { n: 1 });
    await client.patch("agent:main:gm-2", { n: 2 });
    const many = await client.getMany(["agent:main:gm-1", "agent:main:gm-2", "agent:main:gm-none"]);
    assert.deepEqual(Object.keys(many).sort(), ["agent:main:gm-1", "agent:main:gm-2"]);
    assert.equal(many["agent:main:gm-2"].data.n, 2);
    assert.equal(many["agent:main:gm-2"].key, "agent:main:gm-2");
  });

  test("update only updates existing entries", async () => {
    assert.equal(await client.update("agent:main:upd-missing", { a: 1 }), null);
    await client.patch("agent:main:upd", { a: 1 });
    const s = await client.update("agent:main:upd", { b: 2 });
    assert.deepEqual([s.data.a, s.data.b], [1, 2]);
  });

  test("replace stores the entry as given", async () => {
    const entry = { sessionId: "s-1", updatedAt: 1234, only: true };
    const s = await client.replace("agent:main:rep", entry);
    assert.deepEqual(s.data, entry);
    await assert.rejects(client.replace("agent:main:rep2", { only: true }), InvalidRequestError);
  });

  test("updateLastRoute records the route and leaves updatedAt alone unless touch", async () => {
    const before = await client.replace("agent:main:route", { sessionId: "r", updatedAt: 1000 });
    const s = await client.updateLastRoute("agent:main:route", { provider: "telegram", to: " 42 ", accountId: "acc" });
    assert.equal(s.data.lastProvider, "telegram");
    assert.equal(s.data.lastTo, "42");
    assert.equal(s.data.lastAccountId, "acc");
    assert.equal(s.data.updatedAt, before.data.updatedAt);
    const kept = await client.updateLastRoute("agent:main:route", { provider: "telegram", to: "", accountId: " " });
    assert.equal("lastTo" in kept.data, false);
    assert.equal(kept.data.lastAccountId, "acc");
    const touched = await client.updateLastRoute("agent:main:route", { provider: "telegram", touch: true });
    assert.ok(touched.data.updatedAt > 1000);
  });

  test("delete says whether the entry existed", async () => {
    await client.patch("agent:main:del", { a: 1 });
    assert.equal(await client.delete("agent:main:del"), true);
    assert.equal(await client.delete("agent:main:del"), false);
    assert.equal(await client.get("agent:main:del"), null);
  });

  test("resolve creates, continues, and resets a session", async () => {
    const first = await client.resolve({ From: "+15550001", Body: "hi" }, { mainKey: "resolve-main" });
    assert.equal(first.sessionKey, "agent:main:resolve-main");
    assert.equal(first.isNew, true);
    assert.equal(first.resetTriggered, false);
    assert.equal(first.bodyStripped, null);
    assert.equal(first.session.data.sessionId, first.sessionId);
    assert.equal(first.session.data.chatType, "direct");
    assert.equal(typeof first.session.seq, "number");
    const again = await client.resolve({ From: "+15550001", Body: "more" }, { mainKey: "resolve-main" });
    assert.equal(again.sessionId, first.sessionId);
    assert.equal(again.isNew, false);
    const reset = await client.resolve({ From: "+15550001", Body: "/new Hello There" }, { mainKey: "resolve-main" });
    assert.notEqual(reset.sessionId, first.sessionId);
    assert.equal(reset.resetTriggered, true);
    assert.equal(reset.bodyStripped, "hello there");
    const unauthorized = await client.resolve(
      { From: "+15550001", Body: "/new" },
      { mainKey: "resolve-main", authorized: false },
    );
    assert.equal(unauthorized.sessionId, reset.sessionId);
    const group = await client.resolve({ From: "telegram:group:777", Body: "x", GroupSubject: "Team" });
    assert.equal(group.sessionKey, "agent:main:telegram:group:777");
    assert.equal(group.session.data.chatType, "group");
  });

  test("list pages newest first; iterList walks every page", async () => {
    const agent = "lister";
    for (let i = 0; i < 25; i += 1) {
      await client.replace(`agent:${agent}:k${String(i).padStart(2, "0")}`, { sessionId: `s${i}`, updatedAt: 1000 + i });
    }
    const page = await client.list({ agent, limit: 10 });
    assert.equal(page.items.length, 10);
    assert.equal(page.items[0].key, "agent:lister:k24");
    assert.equal(typeof page.cursor, "string");
    assert.equal(typeof page.seq, "number");
    const next = await client.list({ agent, limit: 10, cursor: page.cursor });
    assert.equal(next.items[0].key, "agent:lister:k14");
    const all = [];
    for await (const s of client.iterList({ agent, pageSize: 7 })) all.push(s.key);
    assert.equal(all.length, 25);
    assert.equal(new Set(all).size, 25);
    const prefixed = await client.list({ agent, prefix: "agent:lister:k1" });
    assert.equal(prefixed.items.length, 10);
    assert.equal(prefixed.cursor, null);
  });

  test("list filters by label, spawnedBy and activeMinutes", async () => {
    const agent = "filters";
    await client.patch(`agent:${agent}:a`, { label: "L", spawnedBy: "p" }, { agent });
    await client.replace(`agent:${agent}:old`, { sessionId: "o", updatedAt: 1, label: "L" }, { agent });
    assert.deepEqual((await client.list({ agent, label: "L" })).items.map((s) => s.key).sort(), [
      `agent:${agent}:a`,
      `agent:${agent}:old`,
    ]);
    assert.deepEqual((await client.list({ agent, spawnedBy: "p" })).items.map((s) => s.key), [`agent:${agent}:a`]);
    assert.deepEqual((await client.list({ agent, activeMinutes: 5 })).items.map((s) => s.key), [`agent:${agent}:a`]);
  });

  test("flush, stats and prune", async () => {
    await client.patch("agent:main:flushme", { a: 1 });
    assert.equal(await client.flush(), true);
    assert.equal(await client.flush({ agent: "main" }), true);
    const stats = await client.stats();
    assert.equal(typeof stats.uptime_s, "number");
    assert.ok(stats.stores.main);
    const one = await client.stats({ agent: "main" });
    assert.deepEqual(Object.keys(one.stores), ["main"]);
    const pruned = await client.prune({ dryRun: true });
    assert.equal(pruned.dryRun, true);
    assert.ok(Array.isArray(pruned.pruned));
    assert.ok(Array.isArray(pruned.kept));
    assert.equal(typeof pruned.entries, "number");
    assert.equal(typeof pruned.overCap, "boolean");
    const real = await client.prune({ agent: "main" });
    assert.equal(real.dryRun, false);
  });

  test("the agent option picks the store", async () => {
    await client.patch("plain-key", { a: 1 }, { agent: "other" });
    assert.equal(await client.get("plain-key"), null);
    assert.equal((await client.get("plain-key", { agent: "other" })).data.a, 1);
  });
});

describe("export / import (PROTOCOL.md §6.12-6.13)", () => {
  test("an export copies a store page by page; an import stores entries exactly, at commit", async (t) => {
    const agent = "exim";
    for (let i = 0; i < 5; i += 1) await client.replace(`agent:${agent}:k${i}`, { sessionId: `s${i}`, n: i }, { agent });
    let first;
    try {
      first = await client.export({ agent, limit: 2 });
    } catch (error) {
      if (error instanceof UnknownOpError) return t.skip("this daemon has no export/import");
      throw error;
    }
    const copy = {};
    await client.patch(`agent:${agent}:k9`, { n: 9 }, { agent }); // after the copy: not in it
    let page = first;
    for (;;) {
      for (const s of page.items) copy[s.key] = s.data;
      if (page.cursor === null) break;
      page = await client.export({ agent, cursor: page.cursor, limit: 2 });
    }
    assert.equal(Object.keys(copy).length, 5);
    const staged = await client.importEntries({ "agent:exim2:a": copy["agent:exim:k1"] }, { agent: "exim2" });
    assert.equal(staged.staged, 1);
    assert.equal(await client.get("agent:exim2:a", { agent: "exim2" }), null);
    const done = await client.importEntries({ "agent:exim2:b": { sessionId: "b", x: null } }, {
      agent: "exim2",
      importId: staged.importId,
      commit: true,
    });
    assert.equal(done.imported, 2);
    assert.equal(typeof done.seq, "number");
    assert.deepEqual((await client.get("agent:exim2:a", { agent: "exim2" })).data, copy["agent:exim:k1"]);
    assert.deepEqual((await client.get("agent:exim2:b", { agent: "exim2" })).data, { sessionId: "b", x: null });
  });
});

describe("compare-and-set", () => {
  test("ifRevision: a stale revision conflicts and changes nothing", async () => {
    const first = await client.patch("agent:main:cas", { n: 1 });
    const second = await client.patch("agent:main:cas", { n: 2 }, { ifRevision: first.revision });
    assert.equal(second.data.n, 2);
    await assert.rejects(client.patch("agent:main:cas", { n: 3 }, { ifRevision: first.revision }), ConflictError);
    await assert.rejects(client.update("agent:main:cas", { n: 3 }, { ifRevision: first.revision }), ConflictError);
    await assert.rejects(client.replace("agent:main:cas", { sessionId: "x" }, { ifRevision: first.revision }), ConflictError);
    await assert.rejects(client.delete("agent:main:cas", { ifRevision: first.revision }), ConflictError);
    await assert.rejects(client.updateLastRoute("agent:main:cas", { to: "x", ifRevision: first.revision }), ConflictError);
    const error = await client.patch("agent:main:cas", { n: 3 }, { ifRevision: "0000000000000000" }).catch((e) => e);
    assert.ok(error instanceof ServerError && error instanceof SessiondError);
    assert.equal(error.code, "conflict");
    assert.equal((await client.get("agent:main:cas")).data.n, 2);
    assert.equal(await client.delete("agent:main:cas", { ifRevision: second.revision }), true);
  });

  test("ifAbsent only creates", async () => {
    await client.patch("agent:main:absent", { n: 1 }, { ifAbsent: true });
    await assert.rejects(client.patch("agent:main:absent", { n: 2 }, { ifAbsent: true }), ConflictError);
    await assert.rejects(client.replace("agent:main:absent", { sessionId: "x" }, { ifAbsent: true }), ConflictError);
    assert.equal((await client.get("agent:main:absent")).data.n, 1);
  });

  test("updateWith retries conflicts; async fn; null means no change; missing key is null", async () => {
    await client.patch("agent:main:uw", { n: 0 });
    let calls = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        client.updateWith("agent:main:uw", async (s) => {
          calls += 1;
          await new Promise((r) => setTimeout(r, 1));
          return { n: s.data.n + 1 };
        }),
      ),
    );
    assert.equal(results.length, 20);
    assert.equal((await client.get("agent:main:uw")).data.n, 20);
    assert.ok(calls >= 20);
    const before = await client.get("agent:main:uw");
    const unchanged = await client.updateWith("agent:main:uw", () => null);
    assert.equal(unchanged.revision, before.revision);
    assert.equal((await client.updateWith("agent:main:uw", () => undefined)).revision, before.revision);
    assert.equal(await client.updateWith("agent:main:uw-missing", () => ({ n: 1 })), null);
    await assert.rejects(client.updateWith("agent:main:uw", () => 5), TypeError);
  });
});

describe("typed errors for bad input", () => {
  test("NaN and Infinity are invalid_request, and the connection stays usable", async () => {
    await assert.rejects(client.patch("agent:main:bad", { x: NaN }), InvalidRequestError);
    await assert.rejects(client.patch("agent:main:bad", { x: Infinity }), InvalidRequestError);
    await assert.rejects(client.resolve({ From: "+1", Body: "x", n: -Infinity }), InvalidRequestError);
    assert.equal(await client.get("agent:main:bad"), null);
  });

  test("a bad agent is invalid_request naming the normal form", async () => {
    for (const agent of ["../x", "..", "é", "", " ops", "a/b"]) {
      const error = await client.get("k", { agent }).catch((e) => e);
      assert.ok(error instanceof InvalidRequestError, `${agent}: ${error}`);
      assert.equal(error.code, "invalid_request");
    }
  });

  test("wrong types, bad keys, bad limits", async () => {
    await assert.rejects(client.patch("agent:main:t", { updatedAt: "yesterday" }), InvalidRequestError);
    await assert.rejects(client.patch("agent:main:t", { systemSent: 1 }), InvalidRequestError);
    await assert.rejects(client.get(""), InvalidRequestError);
    await assert.rejects(client.get("k".repeat(1025)), InvalidRequestError);
    await assert.rejects(client.list({ limit: 0 }), InvalidRequestError);
    await assert.rejects(client.list({ activeMinutes: -1 }), InvalidRequestError);
    await assert.rejects(client.get(42), InvalidRequestError);
  });

  test("values msgpack or JSON cannot carry", async () => {
    await assert.rejects(client.patch("agent:main:v", { when: new Date() }), InvalidRequestError);
    await assert.rejects(client.patch("agent:main:v", { bytes: new Uint8Array([1]) }), InvalidRequestError);
    await assert.rejects(client.patch("agent:main:v", { big: 10n }), InvalidRequestError); // not sent
    const cyclic = {};
    cyclic.self = cyclic;
    await assert.rejects(client.patch("agent:main:v", cyclic), InvalidRequestError); // not sent
    let deep = { leaf: 1 };
    for (let i = 0; i < 40; i += 1) deep = { deep };
    await assert.rejects(client.patch("agent:main:v", deep), InvalidRequestError);
    assert.equal(await client.get("agent:main:v"), null);
  });

  test("oversized: an entry over max_entry_bytes, a frame over max_frame_bytes", async () => {
    await assert.rejects(client.patch("agent:main:big", { blob: "x".repeat(1024 * 1024 + 10) }), InvalidRequestError);
    const huge = await client.patch("agent:main:big", { blob: "x".repeat(17 * 1024 * 1024) }).catch((e) => e);
    assert.ok(huge instanceof FrameTooLargeError, String(huge));
    assert.equal(huge.code, "frame_too_large");
    // Nothing was sent: the connection (and the calls on it) live on.
    assert.equal((await client.patch("agent:main:big", { blob: "small" })).data.blob, "small");
  });

  test("error classes per wire code; unknown codes keep their spelling", () => {
    assert.ok(serverErrorFor("unknown_op", "m") instanceof UnknownOpError);
    const compacted = serverErrorFor("compacted", "m", 7);
    assert.ok(compacted instanceof CompactedError);
    assert.equal(compacted.oldestSeq, 7);
    const future = serverErrorFor("brand_new", "m");
    assert.equal(future.constructor, ServerError);
    assert.equal(future.code, "brand_new");
    assert.equal(future.message, "m");
  });
});

describe("JSON names JavaScript objects treat specially", () => {
  test("a __proto__ field or key is an ordinary own property, as JSON.parse makes it", async () => {
    const patch = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}');
    const written = await client.patch("__proto__", patch);
    assert.ok(Object.hasOwn(written.data, "__proto__"));
    assert.deepEqual(written.data["__proto__"], { polluted: true });
    assert.equal({}.polluted, undefined);
    assert.equal(Object.getPrototypeOf(written.data), Object.prototype);
    const many = await client.getMany(["__proto__"]);
    assert.ok(Object.hasOwn(many, "__proto__"));
    assert.equal(many["__proto__"].data.ok, 1);
    const page = await client.list({ prefix: "__proto" });
    assert.equal(page.items[0].key, "__proto__");
  });
});

describe("pipelining", () => {
  test("a thousand concurrent calls on one connection", async () => {
    const writes = Array.from({ length: 500 }, (_, i) => client.patch(`agent:main:pipe-${i % 50}`, { i }));
    const reads = Array.from({ length: 500 }, (_, i) => client.get(`agent:main:pipe-${i % 50}`));
    const [w, r] = await Promise.all([Promise.all(writes), Promise.all(reads)]);
    w.forEach((s, i) => assert.equal(s.data.i, i));
    assert.equal(r.length, 500);
    const stats = await client.stats();
    assert.equal(stats.connections, 1);
  });
});
