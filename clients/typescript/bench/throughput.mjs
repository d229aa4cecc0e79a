// Throughput of the TypeScript client (a measurement, not a test): sequential get, sequential
// patch, and patch from 8 processes, against one daemon — and, with --python, the same
// workloads through the Python client (sessiond_client.Client) for comparison.
//
//   npm run build && node bench/throughput.mjs [--seconds 3] [--entries 1000] [--python]
//                                                [--socket PATH]
//
// Without --socket it starts its own daemon (`python -m sessiond serve`, the interpreter from
// $SESSIOND_PYTHON or ../../.venv/bin/python) on a temp dir, journal mode (the default).
// BENCH_NODE_FLAGS="--single-threaded-gc" passes flags to the Node worker processes.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Client } from "../dist/index.js";
import { PYTHON, startDaemon } from "../test/helpers/daemon.mjs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    entries: { type: "string", default: "1000" },
    processes: { type: "string", default: "8" },
    socket: { type: "string" },
    python: { type: "boolean", default: false },
    worker: { type: "string" },
  },
});
const SECONDS = Number(args.seconds);
const ENTRIES = Number(args.entries);
const PROCESSES = Number(args.processes);
const here = fileURLToPath(import.meta.url);

function key(i) {
  return `agent:main:bench:${i}`;
}

/** An entry of ~1.4 KB, like the project's benchmark store. */
function entry(i) {
  return {
    sessionId: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
    updatedAt: Date.now(),
    chatType: "direct",
    lastProvider: "telegram",
    lastTo: `+1555${String(i).padStart(7, "0")}`,
    model: "claude-opus",
    inputTokens: i,
    outputTokens: i * 2,
    skillsSnapshot: { prompt: "x".repeat(1100), skills: [{ name: "search" }, { name: "shell" }] },
  };
}

/** Run `op(i)` back to back for SECONDS; ops/s and latency percentiles (µs). */
async function sequential(op) {
  const cpu0 = process.cpuUsage();
  const latencies = [];
  const end = performance.now() + SECONDS * 1000;
  let i = 0;
  const started = performance.now();
  while (performance.now() < end) {
    const t0 = performance.now();
    await op(i);
    latencies.push(performance.now() - t0);
    i += 1;
  }
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p) => Math.round(latencies[Math.floor((latencies.length - 1) * p)] * 1000);
  const cpu = process.cpuUsage(cpu0);
  return { ops: i, opsPerSec: i / elapsed, p50us: pct(0.5), p99us: pct(0.99), cpuUsPerOp: (cpu.user + cpu.system) / i };
}

// -- a worker process (patch loop for the multi-process workload) -----------------------------

if (args.worker !== undefined) {
  const [socketPath, startAt] = args.worker.split(",");
  const client = new Client(socketPath);
  await client.hello();
  // Warm up (JIT) before the common start, as the single-process workloads do.
  const warmEnd = performance.now() + 500;
  for (let i = 0; performance.now() < warmEnd; i += 1) await client.get(key(i % ENTRIES));
  await new Promise((r) => setTimeout(r, Math.max(0, Number(startAt) - Date.now())));
  const result = await sequential((i) => client.patch(key((i * 7919 + process.pid) % ENTRIES), { inputTokens: i }));
  await client.close();
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

// -- the Python side -----------------------------------------------------------------------------

const PY_BENCH = `
import json, random, resource, sys, time
from sessiond_client import Client
socket_path, workload, seconds, entries, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
with Client(socket_path) as client:
    client.hello()
    time.sleep(max(0.0, start_at - time.time()))
    lat = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    end = time.perf_counter() + seconds
    i = 0
    started = time.perf_counter()
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        k = f"agent:main:bench:{(i * 7919 + random.randrange(1 << 20)) % entries}"
        if workload == "get":
            client.get(k)
        else:
            client.patch(k, {"inputTokens": i})
        lat.append(time.perf_counter() - t0)
        i += 1
    elapsed = time.perf_counter() - started
    r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1e6 / i
lat.sort()
pct = lambda p: round(lat[int((len(lat) - 1) * p)] * 1e6)
print(json.dumps({"ops": i, "opsPerSec": i / elapsed, "p50us": pct(0.5), "p99us": pct(0.99), "cpuUsPerOp": cpu}))
`;

function runProcess(command, argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${command} exited ${code}`))));
  });
}

async function multiProcess(makeArgv) {
  const startAt = Date.now() + 2500;
  const results = await Promise.all(Array.from({ length: PROCESSES }, () => runProcess(...makeArgv(startAt))));
  const total = results.reduce((sum, r) => sum + r.opsPerSec, 0);
  const p50 = Math.round(results.reduce((sum, r) => sum + r.p50us, 0) / results.length);
  const cpu = results.reduce((sum, r) => sum + r.cpuUsPerOp, 0) / results.length;
  return { opsPerSec: total, p50us: p50, p99us: Math.max(...results.map((r) => r.p99us)), cpuUsPerOp: cpu };
}

// -- main --------------------------------------------------------------------------------------------

const daemon = args.socket === undefined ? await startDaemon() : null;
const socketPath = args.socket ?? daemon.socketPath;
try {
  const client = new Client(socketPath);
  for (let i = 0; i < ENTRIES; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, ENTRIES - i) }, (_, j) => client.replace(key(i + j), entry(i + j))));
  }
  const info = await client.hello();
  const rows = [];
  // Warm up (JIT, daemon caches), then measure.
  await sequential((i) => client.get(key(i % ENTRIES)));
  rows.push(["node", "sequential get", await sequential((i) => client.get(key((i * 7919) % ENTRIES)))]);
  rows.push(["node", "sequential patch", await sequential((i) => client.patch(key((i * 7919) % ENTRIES), { inputTokens: i }))]);
  await client.close();
  rows.push([
    "node",
    `patch from ${PROCESSES} processes`,
    await multiProcess((startAt) => [process.execPath, [...(process.env.BENCH_NODE_FLAGS ? process.env.BENCH_NODE_FLAGS.split(" ") : []), here, "--worker", `${socketPath},${startAt}`, "--seconds", String(SECONDS), "--entries", String(ENTRIES)]]),
  ]);
  if (args.python) {
    const py = (workload) => (startAt) => [PYTHON, ["-c", PY_BENCH, socketPath, workload, String(SECONDS), String(ENTRIES), String(startAt / 1000)]];
    rows.push(["python", "sequential get", await runProcess(...py("get")(Date.now()))]);
    rows.push(["python", "sequential patch", await runProcess(...py("patch")(Date.now()))]);
    rows.push(["python", `patch from ${PROCESSES} processes`, await multiProcess(py("patch"))]);
  }
  console.log(`sessiond ${info.version}, ${ENTRIES} entries of ~1.4 KB, ${SECONDS} s per workload, node ${process.version}`);
  console.log("| client | workload | ops/s | p50 | p99 | client CPU per op |");
  console.log("|---|---|---|---|---|---|");
  for (const [who, workload, r] of rows) {
    const ops = Math.round(r.opsPerSec).toLocaleString("en");
    console.log(`| ${who} | ${workload} | ${ops} | ${r.p50us} µs | ${r.p99us} µs | ${Math.round(r.cpuUsPerOp)} µs |`);
  }
} finally {
  await daemon?.kill();
}
