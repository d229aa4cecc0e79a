// watch against a real daemon: events in order, break sends unwatch, since/compacted, and
// resuming across daemon restarts (SIGKILL and SIGTERM) with no gap and no duplicate.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, CompactedError } from "../dist/index.js";
import { startDaemon } from "./helpers/daemon.mjs";

let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  await daemon?.kill();
});

async function take(watch, n, predicate = () => true) {
  const events = [];
  for await (const event of watch) {
    if (predicate(event)) events.push(event);
    if (events.length >= n) break;
  }
  return events;
}

test("put, delete and progress events, in seq order; break ends the watch (unwatch)", async () => {
  const client = new Client(daemon.socketPath);
  try {
    const watch = client.watch("agent:main:w1:");
    const iterator = watch[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.value.type, "progress");
    const start = first.value.seq;
    await client.patch("agent:main:w1:a", { n: 1 });
    await client.patch("agent:main:other", { n: 1 }); // outside the prefix
    await client.patch("agent:main:w1:b", { n: 2 });
    await client.delete("agent:main:w1:a");
    const events = await take(watch, 3, (e) => e.type !== "progress");
    assert.deepEqual(
      events.map((e) => [e.type, e.key]),
      [
        ["put", "agent:main:w1:a"],
        ["put", "agent:main:w1:b"],
        ["delete", "agent:main:w1:a"],
      ],
    );
    assert.equal(events[0].entry.n, 1);
    assert.match(events[0].revision, /^[0-9a-f]{16}$/);
    assert.equal(events[2].entry, null);
    assert.ok(events[0].seq > start && events[1].seq > events[0].seq && events[2].seq > events[1].seq);
    assert.equal(watch.position, events[2].seq);
    // The loop's break sent unwatch: the daemon no longer runs a watch for this client.
    const again = await watch.next();
    assert.equal(again.done, true);
    const stats = await client.stats();
    assert.equal(stats.ops.unwatch, 1);
  } finally {
    await client.close();
  }
});

test("since replays history; a since too old is CompactedError with oldestSeq", async () => {
  const client = new Client(daemon.socketPath);
  try {
    const a = await client.patch("agent:hist:x", { n: 1 });
    await client.patch("agent:hist:x", { n: 2 });
    const events = await take(client.watch("", { agent: "hist", since: a.seq - 1 }), 2, (e) => e.type === "put");
    assert.deepEqual(
      events.map((e) => e.entry.n),
      [1, 2],
    );
    const watch = client.watch("", { agent: "hist", since: 10_000 });
    const error = await take(watch, 1).catch((e) => e);
    assert.ok(error instanceof CompactedError, String(error));
    assert.equal(typeof error.oldestSeq, "number");
  } finally {
    await client.close();
  }
});

test("an aborted watch ends with the signal's reason", async () => {
  const client = new Client(daemon.socketPath);
  try {
    const controller = new AbortController();
    const watch = client.watch("agent:main:abort:", { signal: controller.signal });
    const seen = [];
    const loop = (async () => {
      for await (const event of watch) {
        seen.push(event);
        controller.abort();
      }
    })();
    await assert.rejects(loop, { name: "AbortError" });
    assert.equal(seen.length, 1);
    // The client goes on working.
    assert.equal((await client.patch("agent:main:abort:x", { n: 1 })).data.n, 1);
  } finally {
    await client.close();
  }
});

for (const signal of ["SIGKILL", "SIGTERM"]) {
  test(`a watch resumes across a daemon restart (${signal}): every change once, in order`, async () => {
    const writer = new Client(daemon.socketPath);
    const watcher = new Client(daemon.socketPath);
    const key = `agent:main:resume-${signal}`;
    try {
      const watch = watcher.watch(key);
      const received = [];
      let stop = false;
      const collector = (async () => {
        for await (const event of watch) {
          if (event.type === "put") received.push(event);
          if (stop && received.length >= 40) break;
        }
      })();
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 20; i += 1) await writer.patch(key, { i });
      await new Promise((r) => setTimeout(r, 100));
      await daemon.restart(signal);
      for (let i = 20; i < 40; i += 1) await writer.patch(key, { i });
      stop = true;
      let timer;
      await Promise.race([
        collector,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`only ${received.length} events`)), 10_000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.deepEqual(
        received.map((e) => e.entry.i),
        Array.from({ length: 40 }, (_, i) => i),
      );
      for (let i = 1; i < received.length; i += 1) assert.equal(received[i].seq, received[i - 1].seq + 1);
    } finally {
      await writer.close();
      await watcher.close();
    }
  });
}
