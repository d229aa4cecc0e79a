// The gateway adapter: a gateway-style bot script runs against the daemon using only
// `sessiond-client/gateway`; store paths map to agents; whole-store writes are refused.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client } from "../dist/index.js";
import {
  UnsupportedGatewayOperationError,
  agentIdFromStorePath,
  configureSessiond,
  closeSessiond,
  resolveSessionKey,
  saveSessionStore,
  updateSessionStore,
} from "../dist/gateway.js";
import { startDaemon } from "./helpers/daemon.mjs";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
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

test("a gateway-style bot script runs against the daemon through the adapter alone", async () => {
  const { stdout } = await run(process.execPath, [path.join(here, "fixtures", "gateway-bot.mjs"), "/srv/clawdbot"], {
    env: { ...process.env, SESSIOND_SOCKET: daemon.socketPath, CLAWDBOT_STATE_DIR: "/srv/clawdbot" },
    timeout: 30_000,
  });
  const out = JSON.parse(stdout);
  assert.equal(out.init.sessionKey, "agent:main:main");
  assert.equal(out.pureKey, out.init.sessionKey);
  assert.equal(out.init.isNewSession, true);
  assert.equal(out.init.bodyStripped, "what's up?");
  assert.equal(out.init.ctxBodyStripped, "what's up?");
  assert.equal(out.init.ctxSessionId, out.init.sessionId);
  assert.equal(out.init.storePath, "/srv/clawdbot/agents/main/sessions/sessions.json");
  assert.equal(out.defaultStorePath, out.init.storePath);
  assert.equal(out.counted.totalTokens, 42);
  assert.equal(out.counted.lastTo, "+15551234567");
  assert.equal(out.counted.lastProvider, "whatsapp");
  assert.equal(out.counted.lastAccountId, "default");
  assert.equal(out.missing, null);
  assert.deepEqual(out.opsKeys, ["agent:ops:cron"]);
  assert.equal(out.opsLabel, "nightly");
  assert.equal(out.mainEntry.sessionId, out.init.sessionId);
  assert.match(out.save, /^UnsupportedGatewayOperationError: saveSessionStore.*updateSessionStoreEntry/s);
  // What the bot wrote is in the daemon, in the stores its paths named.
  const session = await client.get("agent:main:main");
  assert.equal(session.data.totalTokens, 42);
  assert.equal(session.data.sessionId, out.init.sessionId);
  assert.equal((await client.get("agent:ops:cron", { agent: "ops" })).data.label, "nightly");
  assert.equal(await client.get("agent:ops:cron", { agent: "main" }), null);
});

test("store paths name agents", () => {
  assert.equal(agentIdFromStorePath("/home/a/.clawdbot/agents/ops/sessions/sessions.json"), "ops");
  assert.equal(agentIdFromStorePath("agents/Ops_2/sessions/sessions.json"), "Ops_2");
  assert.equal(agentIdFromStorePath("/x/agents/My Agent!/sessions/sessions.json"), "my-agent");
  assert.equal(agentIdFromStorePath("/home/a/.clawdbot/sessions.json"), "main");
  assert.equal(agentIdFromStorePath("/x/agents/ops/sessions/other.json"), "main");
});

test("whole-store writes throw, naming the safe equivalent", async () => {
  await assert.rejects(saveSessionStore("/x/sessions.json", {}), (e) => {
    assert.ok(e instanceof UnsupportedGatewayOperationError);
    assert.match(e.message, /replace/);
    return true;
  });
  await assert.rejects(updateSessionStore("/x/sessions.json", () => undefined), UnsupportedGatewayOperationError);
});

test("resolveSessionKey derives the key the daemon's resolve derives", async () => {
  configureSessiond({ client: new Client(daemon.socketPath) });
  const contexts = [
    { From: "+15550001111", Body: "hi" },
    { From: "whatsapp:+15550002222", Body: "hi" },
    { From: "120363@g.us", Body: "hi" },
    { From: "group:120364@g.us", Body: "hi" },
    { From: "telegram:group:-100123", Body: "hi" },
    { From: "discord:channel:987", Body: "hi" },
    { From: "slack:C123", ChatType: "group", Body: "hi" },
    { From: "room-42", ChatType: "group", Provider: "Signal", Body: "hi" },
    { From: "group:abc", Body: "hi" },
    { From: "x", SessionKey: " agent:main:explicit ", Body: "hi" },
  ];
  try {
    for (const ctx of contexts) {
      for (const [scope, mainKey] of [
        ["per-sender", undefined],
        ["per-sender", "home"],
        ["global", undefined],
      ]) {
        const resolution = await client.resolve(ctx, { scope, mainKey });
        assert.equal(resolveSessionKey(scope, ctx, mainKey), resolution.sessionKey, JSON.stringify([ctx, scope, mainKey]));
      }
    }
  } finally {
    await closeSessiond();
  }
});
