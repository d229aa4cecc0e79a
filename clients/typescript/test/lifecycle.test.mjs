// close() leaks nothing and an idle client does not hold the process: scripts run in child
// processes must exit on their own, promptly.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { FakeServer, HELLO_RESULT } from "./helpers/fakeserver.mjs";
import { shortTempDir, startDaemon } from "./helpers/daemon.mjs";

const INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "index.js");
let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  await daemon?.kill();
});

function runScript(body, args, timeout = 10_000) {
  const code = `import { Client, ClientClosedError } from ${JSON.stringify(INDEX)};\n${body}`;
  const started = Date.now();
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", code, "--", ...args], {
    encoding: "utf8",
    timeout,
  });
  return { ...result, elapsed: Date.now() - started };
}

test("a client used then closed: the process exits at once", () => {
  const r = runScript(
    `const c = new Client(process.argv[1]); await c.patch("agent:main:life", {a: 1}); await c.close(); console.log("done");`,
    [daemon.socketPath],
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "done");
  assert.ok(r.elapsed < 3000, `${r.elapsed} ms`);
});

test("an idle client that was never closed does not keep the process alive", () => {
  const r = runScript(
    `const c = new Client(process.argv[1]); await c.get("agent:main:life"); console.log("idle");`,
    [daemon.socketPath],
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "idle");
  assert.ok(r.elapsed < 3000, `${r.elapsed} ms`);
});

test("close() with a call in flight and a watch running: both fail at once, the process exits", async () => {
  const server = await new FakeServer((conn, request) => (request.op === "hello" ? conn.ok(request, HELLO_RESULT) : undefined)).listen();
  try {
    const r = await new Promise((resolve) => {
      // The fake server runs in this process: the child must not block it, so run async.
      const started = Date.now();
      import("node:child_process").then(({ execFile }) => {
        const code = `import { Client, ClientClosedError } from ${JSON.stringify(INDEX)};
const c = new Client(process.argv[1], { timeoutMs: 60000 });
const call = c.get("never").catch((e) => e);
const watch = c.watch("p");
const next = watch.next().catch((e) => e);
await new Promise((r) => setTimeout(r, 200));
await c.close();
const [e1, e2] = await Promise.all([call, next]);
console.log(e1 instanceof ClientClosedError, e2 instanceof ClientClosedError);`;
        execFile(process.execPath, ["--input-type=module", "-e", code, "--", server.socketPath], { timeout: 10_000 }, (error, stdout, stderr) =>
          resolve({ error, stdout, stderr, elapsed: Date.now() - started }),
        );
      });
    });
    assert.equal(r.error, null, r.stderr);
    assert.equal(r.stdout.trim(), "true true");
    assert.ok(r.elapsed < 3000, `${r.elapsed} ms: a timer or socket outlived close()`);
  } finally {
    await server.close();
  }
});

test("close() while reconnecting to a missing daemon: the process exits at once", () => {
  const r = runScript(
    `const c = new Client(process.argv[1]); const p = c.get("x").catch((e) => e.constructor.name);
await new Promise((r) => setTimeout(r, 100)); await c.close(); console.log(await p);`,
    [path.join(shortTempDir(), "none.sock")],
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), "ClientClosedError");
  assert.ok(r.elapsed < 3000, `${r.elapsed} ms`);
});
