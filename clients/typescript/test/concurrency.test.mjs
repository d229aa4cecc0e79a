// Many Node processes at once against one daemon: no lost update, one session per chat.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client } from "../dist/index.js";
import { startDaemon } from "./helpers/daemon.mjs";

const run = promisify(execFile);
const workers = path.join(path.dirname(fileURLToPath(import.meta.url)), "workers");
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  await daemon?.kill();
});

test("8 processes x 200 updateWith increments = exactly 1600", async () => {
  const client = new Client(daemon.socketPath);
  const key = "agent:main:counter";
  try {
    await client.replace(key, { sessionId: "counter", n: 0 });
    const outputs = await Promise.all(
      Array.from({ length: 8 }, () =>
        run(process.execPath, [path.join(workers, "increment.mjs"), daemon.socketPath, key, "200"], { timeout: 60_000 }),
      ),
    );
    const calls = outputs.map((o) => JSON.parse(o.stdout).calls).reduce((a, b) => a + b, 0);
    assert.equal((await client.get(key)).data.n, 1600);
    assert.ok(calls >= 1600, `${calls} callback runs`);
  } finally {
    await client.close();
  }
});

test("8 processes resolving the same new chat at once get one session id", async () => {
  for (const ctx of [
    { From: "+15559990001", Body: "hello" },
    { From: "telegram:group:4242", ChatType: "group", Body: "hi all", GroupSubject: "Race" },
  ]) {
    const startAt = Date.now() + 600;
    const outputs = await Promise.all(
      Array.from({ length: 8 }, () =>
        run(process.execPath, [path.join(workers, "resolve.mjs"), daemon.socketPath, JSON.stringify(ctx), String(startAt)], {
          timeout: 30_000,
        }),
      ),
    );
    const results = outputs.map((o) => JSON.parse(o.stdout));
    assert.equal(new Set(results.map((r) => r.id)).size, 1, JSON.stringify(results));
    assert.equal(new Set(results.map((r) => r.key)).size, 1);
    assert.equal(results.filter((r) => r.isNew).length, 1);
  }
});
