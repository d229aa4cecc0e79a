// Interop with the Python client, both ways, through one daemon: unknown fields and
// unicode come back exactly as written, and both clients see the same revisions.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client, InvalidRequestError } from "../dist/index.js";
import { runPython, startDaemon } from "./helpers/daemon.mjs";

// A tiny Python bot: read a JSON command on stdin, use sessiond_client.Client, print JSON.
const PY = `
import json, sys
from sessiond_client import Client

cmd = json.loads(sys.stdin.read())
with Client(sys.argv[1]) as client:
    if cmd["op"] == "get":
        s = client.get(cmd["key"])
        out = None if s is None else {"data": s.data, "revision": s.revision}
    elif cmd["op"] == "patch":
        s = client.patch(cmd["key"], cmd["patch"])
        out = {"data": s.data, "revision": s.revision, "seq": s.seq}
    elif cmd["op"] == "update_with":
        s = client.update_with(cmd["key"], lambda s: {"n": s.data.get("n", 0) + 1})
        out = {"data": s.data, "revision": s.revision}
sys.stdout.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")))
`;

function python(socketPath, command) {
  return JSON.parse(runPython(PY, [socketPath], JSON.stringify(command)));
}

// Unknown fields of every JSON kind, and text that trips naive encoders.
const TRICKY = {
  note: "héllo wörld — ünïcödé ✓ 日本語 한국어 עברית العربية",
  emoji: "👩🏽‍💻🚀 family: 👨‍👩‍👧‍👦, flags: 🇫🇷🇯🇵",
  combining: "e\u0301 vs \u00e9, Å vs A\u030a",
  controls: "tab\tnewline\nnul\u0000 bell\u0007 del\u007f",
  separators: "line\u2028para\u2029end",
  astral: "𝄞 𐐷 \u{10FFFF}",
  quotes: "\"quoted\" \\backslash\\ 'single'",
  nested: { deep: { list: [1, -2.5, true, false, null, "x", { y: [] }], empty: {} } },
  big: 9007199254740991,
  negative: -123456789,
  float: 0.1,
  "ключ с пробелами": "value",
};

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

test("written by Node, read by Python: same data, same revision", async () => {
  const key = "agent:main:interop-node-🚀";
  const written = await client.patch(key, { ...TRICKY, field_unknown_to_everyone: { a: 1 } });
  const read = python(daemon.socketPath, { op: "get", key });
  assert.deepEqual(read.data, written.data);
  assert.equal(read.revision, written.revision);
  assert.equal(JSON.stringify(read.data), JSON.stringify(written.data)); // byte for byte
});

test("written by Python, read by Node: same data, same revision; rewriting it changes nothing", async () => {
  const key = "agent:main:interop-py-日本";
  const written = python(daemon.socketPath, { op: "patch", key, patch: TRICKY });
  const read = await client.get(key);
  assert.deepEqual(read.data, written.data);
  assert.equal(read.revision, written.revision);
  for (const [field, value] of Object.entries(TRICKY)) assert.deepEqual(read.data[field], value, field);
  // Node re-encodes exactly what Python wrote: the same content has the same revision.
  const rewritten = await client.replace(key, read.data);
  assert.equal(rewritten.revision, written.revision);
});

test("Node and Python increment the same entry: revisions chain across clients", async () => {
  const key = "agent:main:interop-counter";
  await client.replace(key, { sessionId: "c", n: 0 });
  for (let i = 0; i < 3; i += 1) {
    const py = python(daemon.socketPath, { op: "update_with", key });
    const node = await client.get(key);
    assert.equal(node.revision, py.revision);
    await client.updateWith(key, (s) => ({ n: s.data.n + 1 }));
  }
  assert.equal((await client.get(key)).data.n, 6);
  assert.equal(python(daemon.socketPath, { op: "get", key }).data.n, 6);
});

test("a lone surrogate is not valid UTF-8: invalid_request, nothing stored", async () => {
  await assert.rejects(client.patch("agent:main:surrogate", { bad: "\ud800" }), InvalidRequestError);
  assert.equal(await client.get("agent:main:surrogate"), null);
});
