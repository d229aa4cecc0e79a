/**
 * `sessiond-client/gateway`: the functions a bot process used from the clawdbot gateway's
 * `src/config/sessions.ts` (2026-01-10) and `initSessionState`
 * (`src/auto-reply/reply/session.ts`), with the same names and argument shapes, backed by
 * the daemon instead of a JSON file under a polling lock.
 *
 * **Which store.** The gateway passed a `storePath`; the daemon names stores by agent. The
 * agent is taken from the path: `.../agents/<id>/sessions/sessions.json` → `<id>` (made a
 * valid agent id with `normalizeAgentId` if it is not one), any other path → `main`. The
 * daemon serves its own state directory: the path only selects the agent, nothing is read
 * from or written to that file by this module.
 *
 * **Which daemon.** One shared {@link Client} per process, created on first use for
 * `$SESSIOND_SOCKET` (or the daemon's default path); {@link configureSessiond} replaces it,
 * {@link closeSessiond} closes it. An idle client does not keep the process alive.
 *
 * What cannot be kept: whole-store writes (`saveSessionStore`, `updateSessionStore`) would
 * overwrite every other process's changes; they throw {@link UnsupportedGatewayOperationError}
 * naming the safe equivalent.
 */
import os from "node:os";
import path from "node:path";

import { Client, type Scope } from "./client.js";
import { SessiondError } from "./errors.js";
import { setOwn } from "./protocol.js";
import {
  DEFAULT_AGENT_ID,
  type MsgContextLike,
  isValidAgentId,
  normalizeAgentId,
  normalizeMainKey,
  resolveAgentIdFromSessionKey,
} from "./keys.js";
import type { SessionEntry, SessionPatch } from "./results.js";

export {
  DEFAULT_AGENT_ID,
  DEFAULT_IDLE_MINUTES,
  DEFAULT_MAIN_KEY,
  DEFAULT_RESET_TRIGGER,
  DEFAULT_RESET_TRIGGERS,
  buildAgentMainSessionKey,
  deriveSessionKey,
  normalizeAgentId,
  normalizeE164,
  normalizeMainKey,
  parseAgentSessionKey,
  resolveAgentIdFromSessionKey,
  resolveGroupSessionKey,
  resolveSessionKey,
  type GroupKeyResolution,
  type MsgContextLike as MsgContext,
  type SessionScope,
} from "./keys.js";
export type { SessionEntry } from "./results.js";

/** A gateway function whose behaviour the daemon cannot keep (whole-store writes). */
export class UnsupportedGatewayOperationError extends SessiondError {}

// -- the shared client ----------------------------------------------------------------------

let shared: Client | null = null;

/** Use this client (or a new one for `socketPath`) for every gateway function. */
export function configureSessiond(options: { client?: Client; socketPath?: string } = {}): Client {
  shared = options.client ?? new Client(options.socketPath);
  return shared;
}

/** The client the gateway functions use (created on first use). */
export function getSessiondClient(): Client {
  if (shared === null || shared.isClosed) shared = new Client();
  return shared;
}

/** Close the shared client (calls in flight fail with ClientClosedError). */
export async function closeSessiond(): Promise<void> {
  const client = shared;
  shared = null;
  if (client !== null) await client.close();
}

// -- store paths ------------------------------------------------------------------------------

const AGENT_STORE_PATH = /(?:^|[\\/])agents[\\/]([^\\/]+)[\\/]sessions[\\/]sessions\.json$/;

/** The agent a gateway store path names: `.../agents/<id>/sessions/sessions.json` → `<id>`
 *  (normalised if it is not a valid agent id), any other path → `main`. */
export function agentIdFromStorePath(storePath: string): string {
  const match = AGENT_STORE_PATH.exec(storePath.trim());
  const id = match?.[1];
  if (id === undefined) return DEFAULT_AGENT_ID;
  return isValidAgentId(id) ? id : normalizeAgentId(id);
}

function expandHome(value: string): string {
  return value.replace(/^~(?=$|[\\/])/, os.homedir());
}

/** The gateway's state directory: `$CLAWDBOT_STATE_DIR`, else `$CLAWDIS_STATE_DIR`, else
 *  `~/.clawdbot`. */
export function resolveStateDir(env: NodeJS.ProcessEnv = process.env): string {
  for (const name of ["CLAWDBOT_STATE_DIR", "CLAWDIS_STATE_DIR"]) {
    const value = env[name]?.trim();
    if (value) return path.resolve(expandHome(value));
  }
  return path.join(os.homedir(), ".clawdbot");
}

/** The gateway's store path of an agent (`session.store` with `{agentId}`, `~` expanded;
 *  default `<state dir>/agents/<id>/sessions/sessions.json`). Pure. */
export function resolveStorePath(store?: string, opts?: { agentId?: string }): string {
  const agentId = normalizeAgentId(opts?.agentId ?? DEFAULT_AGENT_ID);
  if (!store) return path.join(resolveStateDir(), "agents", agentId, "sessions", "sessions.json");
  return path.resolve(expandHome(store.replaceAll("{agentId}", agentId)));
}

// -- reads ------------------------------------------------------------------------------------

/**
 * Every entry of the store, as the object `{sessionKey: entry}` the gateway's file held.
 * Read-only (changing the object changes nothing). Unlike the original it is async: it
 * pages through the daemon's `list` (1000 entries a page).
 */
export async function loadSessionStore(storePath: string): Promise<Record<string, SessionEntry>> {
  const client = getSessiondClient();
  const store: Record<string, SessionEntry> = {};
  for await (const session of client.iterList({ agent: agentIdFromStorePath(storePath), pageSize: 1000 })) {
    setOwn(store, session.key, session.data);
  }
  return store;
}

/** The entry's `updatedAt`, or undefined (no entry, or the daemon unreachable). */
export async function readSessionUpdatedAt(params: { storePath: string; sessionKey: string }): Promise<number | undefined> {
  try {
    const session = await getSessiondClient().get(params.sessionKey, {
      agent: agentIdFromStorePath(params.storePath),
      fields: ["updatedAt"],
    });
    const value = session?.data.updatedAt;
    return typeof value === "number" ? value : undefined;
  } catch {
    return undefined;
  }
}

// -- writes -----------------------------------------------------------------------------------

/**
 * Not supported: writing the whole store would overwrite the changes other processes made
 * since it was read. Throws; use `replace` per entry (or `updateSessionStoreEntry`).
 */
export async function saveSessionStore(storePath: string, store: Record<string, SessionEntry>): Promise<never> {
  void store;
  throw new UnsupportedGatewayOperationError(
    `saveSessionStore(${JSON.stringify(storePath)}) is not supported with sessiond: writing the whole store ` +
      "would overwrite every change other processes made since it was read. Write the entries you changed " +
      "instead: updateSessionStoreEntry({storePath, sessionKey, update}) (read-modify-write, safe across " +
      "processes), upsertSessionStoreEntry({storePath, sessionKey, patch}), or client.replace(key, entry, " +
      "{ifRevision}) per entry.",
  );
}

/** Not supported, for the same reason as {@link saveSessionStore}. Throws. */
export async function updateSessionStore(storePath: string, mutator: (store: Record<string, SessionEntry>) => unknown): Promise<never> {
  void mutator;
  throw new UnsupportedGatewayOperationError(
    `updateSessionStore(${JSON.stringify(storePath)}) is not supported with sessiond: a whole-store mutator ` +
      "cannot be applied atomically. Change entries one at a time with updateSessionStoreEntry({storePath, " +
      "sessionKey, update}) (it retries on conflict), or client.updateWith(key, fn).",
  );
}

/**
 * Read → `update(entry)` → merge, atomically per entry (the daemon's compare-and-set,
 * retried on conflict: `update` may run more than once, keep it free of side effects).
 * Resolves to the merged entry, the unchanged entry when `update` returns null/undefined,
 * or null when there is no entry (`update` is not called then).
 */
export async function updateSessionStoreEntry(params: {
  storePath: string;
  sessionKey: string;
  update: (entry: SessionEntry) => Promise<SessionPatch | null | undefined> | SessionPatch | null | undefined;
}): Promise<SessionEntry | null> {
  const session = await getSessiondClient().updateWith(params.sessionKey, (current) => params.update(current.data), {
    agent: agentIdFromStorePath(params.storePath),
  });
  return session === null ? null : session.data;
}

/** Merge `patch` into the entry, creating it if missing. */
export async function upsertSessionStoreEntry(params: {
  storePath: string;
  sessionKey: string;
  patch: SessionPatch;
}): Promise<SessionEntry> {
  const session = await getSessiondClient().patch(params.sessionKey, params.patch, {
    agent: agentIdFromStorePath(params.storePath),
  });
  return session.data;
}

/**
 * Record where the last reply went (`lastProvider`, `lastTo`, `lastAccountId`), creating
 * the entry if missing. `provider` (the 2026-01-10 name) or `channel` (later gateways).
 * A blank `to` removes `lastTo`; a blank `accountId` keeps the previous one. Unlike the
 * original, `updatedAt` of an existing entry moves only with `touch: true`: a delivery is
 * not user activity, and the idle reset of `initSessionState` reads `updatedAt`.
 */
export async function updateLastRoute(params: {
  storePath: string;
  sessionKey: string;
  provider?: string;
  channel?: string;
  to?: string;
  accountId?: string;
  touch?: boolean;
}): Promise<SessionEntry> {
  const session = await getSessiondClient().updateLastRoute(params.sessionKey, {
    agent: agentIdFromStorePath(params.storePath),
    provider: params.provider ?? params.channel ?? null,
    to: params.to ?? null,
    accountId: params.accountId ?? null,
    touch: params.touch === true,
  });
  return session.data;
}

// -- session init -------------------------------------------------------------------------------

const RESOLVE_CTX_FIELDS = [
  "From",
  "To",
  "ChatType",
  "Provider",
  "SessionKey",
  "GroupSubject",
  "GroupRoom",
  "GroupSpace",
  "ThreadLabel",
  "MessageThreadId",
  "CommandBody",
  "RawBody",
  "Body",
] as const;

/** The part of the gateway's config `initSessionState` reads. */
export interface GatewaySessionConfig {
  session?: {
    scope?: Scope;
    mainKey?: string;
    idleMinutes?: number;
    resetTriggers?: string[];
    store?: string;
  };
}

export interface SessionInitResult {
  /** `ctx` plus `BodyStripped`, `SessionId` and `IsNewSession` ("true"/"false"). */
  sessionCtx: MsgContextLike & { BodyStripped?: string; SessionId: string; IsNewSession: string };
  sessionEntry: SessionEntry;
  sessionKey: string;
  sessionId: string;
  isNewSession: boolean;
  resetTriggered: boolean;
  systemSent: boolean;
  abortedLastRun: boolean;
  storePath: string;
  sessionScope: Scope;
  isGroup: boolean;
  bodyStripped?: string;
  /** The entry's revision (for `ifRevision` on a later write). */
  revision: string;
}

/**
 * Resolve the session of an incoming message and create or renew it — one atomic daemon
 * `resolve` instead of load → decide → save of the whole store. Same parameters as the
 * gateway's (`ctx`, `cfg`, `commandAuthorized`); `commandAuthorized` is whether the sender
 * may reset the session. The agent is the one `ctx.SessionKey` names (else `main`), or the
 * one of `storePath` when given. `sessionStore` (the whole store) is not returned: read it
 * with `loadSessionStore` if needed.
 */
export async function initSessionState(params: {
  ctx: MsgContextLike;
  cfg?: GatewaySessionConfig;
  commandAuthorized: boolean;
  storePath?: string;
}): Promise<SessionInitResult> {
  const { ctx, commandAuthorized } = params;
  const sessionCfg = params.cfg?.session;
  const agentId =
    params.storePath !== undefined ? agentIdFromStorePath(params.storePath) : resolveAgentIdFromSessionKey(ctx.SessionKey);
  const sessionScope: Scope = sessionCfg?.scope ?? "per-sender";
  const storePath = params.storePath ?? resolveStorePath(sessionCfg?.store, { agentId });
  // Only what resolve reads (PROTOCOL.md §6.7): a real MsgContext may carry values outside
  // the value model (media buffers, callbacks) that would make the whole request invalid.
  const wireCtx: Record<string, unknown> = {};
  for (const name of RESOLVE_CTX_FIELDS) {
    if (ctx[name] !== undefined && ctx[name] !== null) wireCtx[name] = ctx[name];
  }
  // Settings the config leaves out are the daemon's (its [session] defaults are the
  // gateway's: per-sender, main, 60 minutes, /new and /reset).
  const resolution = await getSessiondClient().resolve(wireCtx, {
    agent: agentId,
    authorized: commandAuthorized,
    scope: sessionCfg?.scope,
    mainKey: sessionCfg?.mainKey === undefined ? undefined : normalizeMainKey(sessionCfg.mainKey),
    idleMinutes: sessionCfg?.idleMinutes === undefined ? undefined : Math.max(sessionCfg.idleMinutes, 1),
    resetTriggers: sessionCfg?.resetTriggers?.length ? sessionCfg.resetTriggers : undefined,
  });
  const entry = resolution.session.data;
  const bodyStripped = resolution.bodyStripped ?? undefined;
  const chatType = typeof ctx.ChatType === "string" ? ctx.ChatType.trim().toLowerCase() : "";
  const result: SessionInitResult = {
    sessionCtx: {
      ...ctx,
      BodyStripped: bodyStripped ?? ctx.Body,
      SessionId: resolution.sessionId,
      IsNewSession: resolution.isNew ? "true" : "false",
    },
    sessionEntry: entry,
    sessionKey: resolution.sessionKey,
    sessionId: resolution.sessionId,
    isNewSession: resolution.isNew,
    resetTriggered: resolution.resetTriggered,
    systemSent: entry.systemSent === true,
    abortedLastRun: entry.abortedLastRun === true,
    storePath,
    sessionScope,
    isGroup: chatType === "group" || entry.chatType === "group" || entry.chatType === "room",
    revision: resolution.session.revision,
  };
  if (bodyStripped !== undefined) result.bodyStripped = bodyStripped;
  return result;
}
