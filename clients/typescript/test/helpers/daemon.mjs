// Run real `sessiond serve` processes for the tests: a short temp dir under /tmp (AF_UNIX
// paths are limited to ~107 bytes), wait until it answers hello, stop it with SIGTERM
// (graceful) or SIGKILL (crash). Every daemon started is killed when the test process exits.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_DIR = path.resolve(here, "..", "..");
const REPO_ROOT = path.resolve(PACKAGE_DIR, "..", "..");

/** The Python with the daemon installed: $SESSIOND_PYTHON, else the repository's venv. */
export const PYTHON = process.env.SESSIOND_PYTHON || path.join(REPO_ROOT, ".venv", "bin", "python");

const live = new Set();
const tempDirs = new Set();
function killAll() {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  if (process.env.SESSIOND_KEEP_TEST_DIRS) return;
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
}
process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

/** A fresh directory with a short path (removed when the process exits, unless
 *  $SESSIOND_KEEP_TEST_DIRS is set). */
export function shortTempDir() {
  const dir = fs.mkdtempSync("/tmp/sdnode-");
  tempDirs.add(dir);
  return dir;
}

function tomlValue(value) {
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(", ")}]`;
  throw new TypeError(`cannot write ${value} as TOML`);
}

export function tomlOf(config) {
  const lines = [];
  for (const [k, v] of Object.entries(config)) {
    if (typeof v !== "object" || Array.isArray(v)) lines.push(`${k} = ${tomlValue(v)}`);
  }
  for (const [table, values] of Object.entries(config)) {
    if (typeof values === "object" && !Array.isArray(values)) {
      lines.push(`[${table}]`);
      for (const [k, v] of Object.entries(values)) lines.push(`${k} = ${tomlValue(v)}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** Answers hello on `socketPath`? (a raw frame, no client involved) */
function probe(socketPath) {
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: socketPath });
    const timer = setTimeout(() => done(false), 1000);
    let buffered = Buffer.alloc(0);
    function done(ok) {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    }
    socket.on("error", () => done(false));
    socket.on("connect", () => {
      // {"op": "hello", "id": 1}
      const payload = Buffer.from([0x82, 0xa2, 0x6f, 0x70, 0xa5, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0xa2, 0x69, 0x64, 0x01]);
      const header = Buffer.alloc(4);
      header.writeUInt32BE(payload.length);
      socket.write(Buffer.concat([header, payload]));
    });
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) done(true);
    });
  });
}

export class Daemon {
  constructor(root = shortTempDir(), config = {}) {
    this.root = root;
    this.stateDir = path.join(root, "state");
    this.socketPath = path.join(root, "s.sock");
    this.configPath = path.join(root, "sessiond.toml");
    this.logPath = path.join(root, "daemon.log");
    fs.writeFileSync(this.configPath, tomlOf(config));
    this.child = null;
  }

  storePath(agent = "main") {
    return path.join(this.stateDir, "agents", agent, "sessions", "sessions.json");
  }

  async start() {
    const log = fs.openSync(this.logPath, "a");
    const child = spawn(
      PYTHON,
      ["-m", "sessiond", "serve", "--state-dir", this.stateDir, "--socket", this.socketPath, "--config", this.configPath],
      { stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    this.child = child;
    live.add(child);
    child.once("exit", () => live.delete(child));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`sessiond exited (${child.exitCode ?? child.signalCode}):\n${this.log()}`);
      }
      if (fs.existsSync(this.socketPath) && (await probe(this.socketPath))) return this;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`sessiond did not become ready:\n${this.log()}`);
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, "utf8");
    } catch {
      return "";
    }
  }

  /** Stop with `signal` and wait for the exit. */
  async stop(signal = "SIGTERM") {
    const child = this.child;
    if (child === null) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await exited;
  }

  kill() {
    return this.stop("SIGKILL");
  }

  async restart(signal = "SIGTERM") {
    await this.stop(signal);
    return this.start();
  }
}

/** Start a daemon for a test file; stopped (SIGKILL) by the returned cleanup. */
export async function startDaemon(config = {}) {
  const daemon = new Daemon(shortTempDir(), config);
  await daemon.start();
  return daemon;
}

/** Run a Python snippet with the daemon's interpreter; returns stdout (throws on failure). */
export function runPython(code, args = [], input = undefined) {
  const result = spawnSync(PYTHON, ["-c", code, ...args], { encoding: "utf8", input, timeout: 60_000 });
  if (result.status !== 0) {
    throw new Error(`python failed (${result.status}):\n${result.stderr}\n${result.stdout}`);
  }
  return result.stdout;
}
