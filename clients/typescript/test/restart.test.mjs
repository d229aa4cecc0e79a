// Daemon restarts in the middle of a pipeline (SIGKILL: a crash; SIGTERM: a graceful stop
// that answers `shutting_down`): every call is answered, every write is applied exactly
// once and in the order it was made.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client } from "../dist/index.js";
import { startDaemon } from "./helpers/daemon.mjs";

let daemon;

before(async () => {
  daemon = await startDaemon();
});

after(async () => {
  await daemon?.kill();
});

const N = 500;

for (const signal of ["SIGKILL", "SIGTERM"]) {
  test(`${N} pipelined patches across a ${signal} restart: all answered, applied once, in order`, async () => {
    const client = new Client(daemon.socketPath);
    const key = `agent:main:pipeline-${signal}`;
    try {
      const start = await client.patch(key, { n: -1 });
      let answered = 0;
      let restarting = null;
      let answeredAfterRestart = 0;
      const calls = [];
      for (let i = 0; i < N; i += 1) {
        calls.push(
          client.patch(key, { n: i }).then((s) => {
            answered += 1;
            if (restarting !== null) answeredAfterRestart += 1;
            // Restart once a fifth of the pipeline is answered: the rest is in flight or
            // not yet sent.
            if (answered === N / 5 && restarting === null) restarting = daemon.restart(signal);
            return s;
          }),
        );
        // Spread the pipeline over time, so the restart lands in the middle of it.
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 2));
      }
      const settled = await Promise.allSettled(calls);
      await restarting;
      const failures = settled.filter((r) => r.status === "rejected").map((r) => String(r.reason));
      assert.deepEqual(failures, []);
      const results = settled.map((r) => r.value);
      results.forEach((s, i) => assert.equal(s.data.n, i, `reply ${i}`));
      // One change per write, in call order: applied exactly once each, never reordered.
      results.forEach((s, i) => assert.equal(s.seq, start.seq + 1 + i, `seq of write ${i}`));
      const final = await client.get(key);
      assert.equal(final.data.n, N - 1);
      assert.ok(restarting !== null, "the daemon was restarted mid-pipeline");
      assert.ok(answeredAfterRestart > N / 4, `${answeredAfterRestart} calls answered after the restart began`);
    } finally {
      await client.close();
    }
  });
}
