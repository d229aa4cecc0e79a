/**
 * Where the daemon's socket is by default — the same rules as the daemon and the Python
 * client (README "Where things live"): `SESSIOND_SOCKET` > `$RUNTIME_DIRECTORY/sessiond.sock`
 * > `$XDG_RUNTIME_DIR/sessiond.sock` > `<state dir>/sessiond.sock`, with the state dir
 * `SESSIOND_STATE_DIR` > `$STATE_DIRECTORY` > `$XDG_STATE_HOME/sessiond` >
 * `~/.local/state/sessiond`. Empty variables count as unset; systemd's colon-joined lists
 * use their first path; relative `XDG_*` values are ignored. Pure: no I/O.
 */
import os from "node:os";
import path from "node:path";

export const SOCKET_NAME = "sessiond.sock";

type Env = Readonly<Record<string, string | undefined>>;

function firstOf(value: string | undefined): string {
  return value !== undefined && value.trim() !== "" ? (value.split(":", 1)[0] ?? "") : "";
}

function absoluteOrEmpty(value: string | undefined): string {
  return value !== undefined && path.isAbsolute(value) ? value : "";
}

export function defaultStateDir(env: Env = process.env, home: string = os.homedir()): string {
  const explicit = env["SESSIOND_STATE_DIR"];
  if (explicit) return explicit;
  const systemdState = firstOf(env["STATE_DIRECTORY"]);
  if (systemdState) return systemdState;
  const xdgState = absoluteOrEmpty(env["XDG_STATE_HOME"]);
  if (xdgState) return path.join(xdgState, "sessiond");
  return path.join(home, ".local", "state", "sessiond");
}

export function defaultSocketPath(env: Env = process.env, home: string = os.homedir()): string {
  const explicit = env["SESSIOND_SOCKET"];
  if (explicit) return explicit;
  const runtimeDir = firstOf(env["RUNTIME_DIRECTORY"]);
  if (runtimeDir) return path.join(runtimeDir, SOCKET_NAME);
  const xdgRuntime = absoluteOrEmpty(env["XDG_RUNTIME_DIR"]);
  if (xdgRuntime) return path.join(xdgRuntime, SOCKET_NAME);
  return path.join(defaultStateDir(env, home), SOCKET_NAME);
}
