/**
 * Typed results. Each result keeps the entry exactly as stored (`data`: the JSON object
 * with camelCase names, unknown fields included). Converters turn raw wire results into
 * these and throw {@link ProtocolError} for a shape that is not the protocol's.
 */
import { ProtocolError } from "./errors.js";
import { setOwn } from "./protocol.js";

/** The fields the daemon knows (PROTOCOL.md §4); any other field is kept as given. */
export interface SessionEntry {
  sessionId?: string;
  updatedAt?: number;
  chatType?: "direct" | "group" | "room";
  sessionFile?: string;
  spawnedBy?: string;
  label?: string;
  displayName?: string;
  provider?: string;
  subject?: string;
  room?: string;
  space?: string;
  lastProvider?: string;
  lastTo?: string;
  lastAccountId?: string;
  systemSent?: boolean;
  abortedLastRun?: boolean;
  groupActivationNeedsSystemIntro?: boolean;
  thinkingLevel?: string;
  verboseLevel?: string;
  reasoningLevel?: string;
  elevatedLevel?: string;
  responseUsage?: string;
  providerOverride?: string;
  modelOverride?: string;
  authProfileOverride?: string;
  groupActivation?: string;
  sendPolicy?: string;
  queueMode?: string;
  queueDrop?: string;
  modelProvider?: string;
  model?: string;
  claudeCliSessionId?: string;
  queueDebounceMs?: number;
  queueCap?: number;
  inputTokens?: number;
  outputTokens?: number;
  totalTokens?: number;
  contextTokens?: number;
  compactionCount?: number;
  skillsSnapshot?: Record<string, unknown>;
  [field: string]: unknown;
}

/** A patch: fields to set; `null` deletes a field. */
export type SessionPatch = { [field: string]: unknown } & Partial<
  { [K in keyof SessionEntry]: SessionEntry[K] | null }
>;

/** One stored entry: its key, the stored object, its revision (for `ifRevision`), and for
 *  the result of a write the store's `seq` after it (null for reads). */
export class Session {
  constructor(
    readonly key: string,
    readonly data: SessionEntry,
    readonly revision: string,
    readonly seq: number | null = null,
  ) {}

  /** `data.sessionId` when it is a string. */
  get sessionId(): string | null {
    const value = this.data.sessionId;
    return typeof value === "string" ? value : null;
  }

  /** `data.updatedAt` when it is a number. */
  get updatedAt(): number | null {
    const value = this.data.updatedAt;
    return typeof value === "number" ? value : null;
  }
}

/** One page of `list`: newest first; pass `cursor` back for the next page (null: this was
 *  the last). `seq`: the store's sequence number the page reflects. */
export interface SessionPage {
  items: Session[];
  cursor: string | null;
  seq: number;
}

/** What `resolve` decided for a message: which session, and whether it is new. */
export interface Resolution {
  sessionKey: string;
  sessionId: string;
  isNew: boolean;
  resetTriggered: boolean;
  bodyStripped: string | null;
  /** The entry after the resolve (its `seq` is the write's). */
  session: Session;
}

/** What `hello` says: the protocol spoken, the daemon's version, and its limits. */
export interface ServerInfo {
  protocol: number;
  protocols: number[];
  server: string;
  version: string;
  maxFrameBytes: number;
  maxReplyBytes: number;
  maxKeyBytes: number;
  maxEntryBytes: number;
  maxKeysPerRequest: number;
  maxListLimit: number;
  maxDepth: number;
  maxFields: number;
  maxInflightPerConnection: number;
}

/** One change a watch delivers: `put` (`entry` is the stored object, as `Session.data`),
 *  `delete` (`entry` null), or `progress`: no change, the store is at `seq` — a position to
 *  save and to watch again from. */
export interface WatchEvent {
  type: "put" | "delete" | "progress";
  seq: number;
  key: string | null;
  entry: SessionEntry | null;
  revision: string | null;
}

export interface PrunedEntry {
  key: string;
  reason: string;
  updatedAt: number | null;
}

/** What retention did (or, dry run, would do). */
export interface PruneResult {
  mode: "off" | "warn" | "enforce" | string;
  dryRun: boolean;
  pruned: PrunedEntry[];
  kept: PrunedEntry[];
  entries: number;
  overCap: boolean;
  archive: string | null;
}

// -- converters ---------------------------------------------------------------------------

function bad(what: string, value: unknown): never {
  let shown: string;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  throw new ProtocolError(`unexpected result shape: ${what} (got ${shown.slice(0, 200)})`);
}

function record(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) bad(what, value);
  return value as Record<string, unknown>;
}

function str(value: unknown, what: string): string {
  if (typeof value !== "string") bad(what, value);
  return value;
}

function int(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) bad(what, value);
  return value;
}

function num(value: unknown, what: string): number {
  if (typeof value !== "number") bad(what, value);
  return value;
}

function bool(value: unknown, what: string): boolean {
  if (typeof value !== "boolean") bad(what, value);
  return value;
}

function optStr(value: unknown, what: string): string | null {
  return value === null || value === undefined ? null : str(value, what);
}

function optNum(value: unknown, what: string): number | null {
  return value === null || value === undefined ? null : num(value, what);
}

function entryOf(value: unknown, what: string): SessionEntry {
  return record(value, what) as SessionEntry;
}

export type Convert<T> = (result: unknown, seq: number | null) => T;

export const toSession: Convert<Session | null> = (result, seq) => {
  if (result === null || result === undefined) return null;
  const r = record(result, "an entry result");
  return new Session(
    str(r["key"], "key"),
    entryOf(r["entry"], "entry"),
    str(r["revision"], "revision"),
    seq,
  );
};

export const toRequiredSession: Convert<Session> = (result, seq) => {
  const session = toSession(result, seq);
  if (session === null) throw new ProtocolError("the daemon returned no entry where one is always returned");
  return session;
};

export const toSessionMap: Convert<Record<string, Session>> = (result) => {
  const r = record(result, "a get_many result");
  const out: Record<string, Session> = {};
  for (const [key, value] of Object.entries(r)) {
    const ref = record(value, "a get_many entry");
    setOwn(out, key, new Session(key, entryOf(ref["entry"], "entry"), str(ref["revision"], "revision")));
  }
  return out;
};

export const toPage: Convert<SessionPage> = (result) => {
  const r = record(result, "a list result");
  const items = r["items"];
  if (!Array.isArray(items)) bad("list items", items);
  return {
    items: items.map((item) => toRequiredSession(item, null)),
    cursor: optStr(r["cursor"], "cursor"),
    seq: r["seq"] === undefined || r["seq"] === null ? 0 : int(r["seq"], "seq"),
  };
};

export const toResolution: Convert<Resolution> = (result, seq) => {
  const r = record(result, "a resolve result");
  const sessionKey = str(r["session_key"], "session_key");
  return {
    sessionKey,
    sessionId: str(r["session_id"], "session_id"),
    isNew: bool(r["is_new"], "is_new"),
    resetTriggered: bool(r["reset_triggered"], "reset_triggered"),
    bodyStripped: optStr(r["body_stripped"], "body_stripped"),
    session: new Session(sessionKey, entryOf(r["entry"], "entry"), str(r["revision"], "revision"), seq),
  };
};

function intOr(value: unknown, fallback: number, what: string): number {
  return value === undefined || value === null ? fallback : int(value, what);
}

export const toServerInfo: Convert<ServerInfo> = (result) => {
  const r = record(result, "a hello result");
  const protocols = r["protocols"];
  return {
    protocol: int(r["protocol"], "protocol"),
    protocols: Array.isArray(protocols) ? protocols.map((p) => int(p, "protocols")) : [1],
    server: str(r["server"], "server"),
    version: str(r["version"], "version"),
    maxFrameBytes: int(r["max_frame_bytes"], "max_frame_bytes"),
    maxReplyBytes: intOr(r["max_reply_bytes"], 16 * 1024 * 1024, "max_reply_bytes"),
    maxKeyBytes: intOr(r["max_key_bytes"], 1024, "max_key_bytes"),
    maxEntryBytes: intOr(r["max_entry_bytes"], 1024 * 1024, "max_entry_bytes"),
    maxKeysPerRequest: intOr(r["max_keys_per_request"], 1000, "max_keys_per_request"),
    maxListLimit: intOr(r["max_list_limit"], 1000, "max_list_limit"),
    maxDepth: intOr(r["max_depth"], 32, "max_depth"),
    maxFields: intOr(r["max_fields"], 10_000, "max_fields"),
    maxInflightPerConnection: intOr(r["max_inflight_per_connection"], 256, "max_inflight_per_connection"),
  };
};

export const toBool: Convert<boolean> = (result) => bool(result, "a boolean result");

export const toStats: Convert<Record<string, unknown>> = (result) => record(result, "a stats result");

/** A watch reply's event; `end` is kept internally (it ends the iteration). */
export interface WireWatchEvent {
  type: "put" | "delete" | "progress" | "end";
  seq: number;
  key: string | null;
  entry: SessionEntry | null;
  revision: string | null;
}

export const toWatchEvent: Convert<WireWatchEvent> = (result) => {
  const r = record(result, "a watch event");
  const type = r["type"];
  if (type !== "put" && type !== "delete" && type !== "progress" && type !== "end") {
    bad("watch event type", type);
  }
  return {
    type,
    seq: int(r["seq"], "seq"),
    key: optStr(r["key"], "key"),
    entry: r["entry"] === undefined || r["entry"] === null ? null : entryOf(r["entry"], "entry"),
    revision: optStr(r["revision"], "revision"),
  };
};

function prunedEntries(value: unknown, what: string): PrunedEntry[] {
  if (!Array.isArray(value)) bad(what, value);
  return value.map((item) => {
    const r = record(item, what);
    return {
      key: str(r["key"], "key"),
      reason: str(r["reason"], "reason"),
      updatedAt: optNum(r["updated_at"], "updated_at"),
    };
  });
}

export const toPruneResult: Convert<PruneResult> = (result) => {
  const r = record(result, "a prune result");
  return {
    mode: str(r["mode"], "mode"),
    dryRun: bool(r["dry_run"], "dry_run"),
    pruned: prunedEntries(r["pruned"], "pruned"),
    kept: prunedEntries(r["kept"], "kept"),
    entries: int(r["entries"], "entries"),
    overCap: r["over_cap"] === undefined ? false : bool(r["over_cap"], "over_cap"),
    archive: optStr(r["archive"], "archive"),
  };
};

/** What an `import` request did: its id (pass it to the next request), the entries staged
 *  so far, and after the commit the entries stored and the store's `seq`. */
export interface ImportResult {
  importId: string;
  staged: number;
  imported: number;
  seq: number | null;
}

export const toImportResult: Convert<ImportResult> = (result) => {
  const r = record(result, "an import result");
  return {
    importId: str(r["import_id"], "import_id"),
    staged: int(r["staged"], "staged"),
    imported: r["imported"] === undefined || r["imported"] === null ? 0 : int(r["imported"], "imported"),
    seq: r["seq"] === undefined || r["seq"] === null ? null : int(r["seq"], "seq"),
  };
};
