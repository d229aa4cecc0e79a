/**
 * The client: one pipelined connection shared by every caller, every operation of the
 * Python client (camelCase), retries that never apply a write twice or out of order.
 *
 * Order is the promise kept here. Request ids grow by one per frame written (wrapping
 * below 2^53), so id order is wire order. When a connection ends while calls are in
 * flight (the daemon restarted, or said it is shutting down or busy), those calls go back
 * to a backlog and are sent again on the next connection — first the ones already sent,
 * in their original order, then the ones made meanwhile — so the daemon, which applies
 * the requests of one connection in order, never applies a later write before an earlier
 * one. Every write carries a `request_token` kept across resends, so a resent write that
 * was already applied is answered, not applied again. Every connection starts with
 * `hello` (pipelined, no extra round trip), which tells the client the daemon's limits.
 *
 * A connection on which a call timed out or was aborted is closed (its other calls are
 * resent on the next one, in order): a late reply can never be taken for another
 * request's. `close()` fails every call in flight at once with ClientClosedError and
 * leaves no socket or timer behind. An idle client (nothing in flight, no watch) does not
 * keep the Node process alive.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";

import {
  BusyError,
  ClientClosedError,
  ConflictError,
  ConnectionLostError,
  DaemonUnavailableError,
  ForbiddenError,
  FrameTooLargeError,
  ProtocolError,
  RequestTimeoutError,
  SessiondError,
  ShuttingDownError,
} from "./errors.js";
import { defaultSocketPath } from "./locations.js";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeRequestFrame,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  MAX_REQUEST_ID,
  PROTOCOL_VERSION,
  type Reply,
  decodeReply,
  replyError,
} from "./protocol.js";
import {
  type Convert,
  type ImportResult,
  type PruneResult,
  type Resolution,
  type ServerInfo,
  type Session,
  type SessionEntry,
  type SessionPage,
  type SessionPatch,
  type WatchEvent,
  type WireWatchEvent,
  toBool,
  toImportResult,
  toPage,
  toPruneResult,
  toRequiredSession,
  toResolution,
  toServerInfo,
  toSession,
  toSessionMap,
  toStats,
  toWatchEvent,
} from "./results.js";
import { RetryPolicy } from "./retry.js";

// -- options ------------------------------------------------------------------------------

export interface ClientOptions {
  /** The daemon's socket path (a `unix://` prefix is allowed). Default: `$SESSIOND_SOCKET`,
   *  else the daemon's default path. */
  socketPath?: string;
  /** Per-call timeout (default 5000 ms; `flush` and `prune` default to 60 s). */
  timeoutMs?: number;
  /** Bound on one connect attempt (default 2000 ms). */
  connectTimeoutMs?: number;
  retry?: RetryPolicy;
  /** Sent in `hello` (informational). */
  clientName?: string;
}

/** Options every call takes. */
export interface CallOptions {
  /** Abort the call: it rejects with `signal.reason`; if it was in flight, its connection
   *  is closed (the other calls on it are resent). */
  signal?: AbortSignal;
  /** This call's timeout (default: the client's). */
  timeoutMs?: number;
}

export interface ReadOptions extends CallOptions {
  /** The store (default: the agent the key names, else `main`). */
  agent?: string;
  /** Only these top-level fields (plus `sessionId` and `updatedAt`); the revision is still
   *  the whole entry's. */
  fields?: readonly string[];
}

export interface WriteOptions extends CallOptions {
  agent?: string;
  /** Apply only if the entry exists and is at this revision (else ConflictError). */
  ifRevision?: string;
  /** Answer only once the change is on disk. */
  durable?: boolean;
}

export interface CreateOptions extends WriteOptions {
  /** Apply only if the entry does not exist (else ConflictError). */
  ifAbsent?: boolean;
}

export interface ListOptions extends CallOptions {
  agent?: string;
  prefix?: string;
  activeMinutes?: number;
  label?: string;
  spawnedBy?: string;
  limit?: number;
  cursor?: string | null;
  fields?: readonly string[];
}

export interface IterListOptions extends Omit<ListOptions, "limit" | "cursor"> {
  /** Entries per page (default: the daemon's, 100). */
  pageSize?: number;
}

export interface UpdateLastRouteOptions extends WriteOptions {
  provider?: string | null;
  to?: string | null;
  accountId?: string | null;
  /** Also move `updatedAt` of an existing entry (a delivery is not user activity). */
  touch?: boolean;
}

export type Scope = "per-sender" | "global";

export interface ResolveOptions extends WriteOptions {
  /** May this sender reset the session (`/new`)? Default true. */
  authorized?: boolean;
  scope?: Scope;
  mainKey?: string;
  idleMinutes?: number;
  resetTriggers?: readonly string[];
}

export interface UpdateWithOptions extends CallOptions {
  agent?: string;
  durable?: boolean;
  /** Give up with ConflictError after this many conflicting attempts (default 100). */
  maxAttempts?: number;
}

export interface WatchOptions {
  agent?: string;
  /** Deliver every change with a higher seq first (a write's `seq`, a list's `seq`, a saved
   *  `position`); default: from now. */
  since?: number | null;
  fields?: readonly string[];
  /** Ends the watch (the iteration rejects with `signal.reason`; unwatch is sent). */
  signal?: AbortSignal;
  /** Timeout until the watch's first event (default: the client's). */
  timeoutMs?: number;
}

export interface AgentOptions extends CallOptions {
  agent?: string;
}

/** `updateWith`'s callback: the current session → a patch, or null/undefined for "no
 *  change" (`{}` is still a write: it moves `updatedAt`). May be async. */
export type UpdateFn = (
  session: Session,
) => SessionPatch | null | undefined | Promise<SessionPatch | null | undefined>;

const FLUSH_TIMEOUT_MS = 60_000;
const HELLO_TIMEOUT_MS = 30_000;
const CONFLICT_BACKOFF_ATTEMPTS = 4;

// -- request tokens -----------------------------------------------------------------------

/** Request tokens: a random per-process prefix and a counter (PROTOCOL.md §8). */
const TOKEN_PREFIX = randomBytes(12).toString("hex");
let tokenCounter = 0;

function newRequestToken(): string {
  tokenCounter += 1;
  return TOKEN_PREFIX + tokenCounter.toString(16);
}

// -- calls --------------------------------------------------------------------------------

/** @internal */
export interface StreamState {
  events: WireWatchEvent[];
  wake: (() => void) | null;
  ended: boolean;
  error: unknown;
}

/** One call: its request, where it is, how it ends. @internal */
export interface Pending {
  readonly op: string;
  readonly request: Record<string, unknown>;
  readonly convert: Convert<unknown>;
  readonly timeoutMs: number;
  /** Creation order: the order of calls never sent. */
  readonly order: number;
  readonly internal: boolean;
  readonly stream: StreamState | null;
  /** The id it was last sent with (its wire order), null before. */
  id: number | null;
  timer: NodeJS.Timeout | null;
  done: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

class Connection {
  readonly decoder: FrameDecoder;
  ready = false;
  dropError: SessiondError | null = null;
  socketError: Error | null = null;
  connectTimer: NodeJS.Timeout | null = null;
  outgoing: Buffer[] = [];
  flushScheduled = false;
  referenced = true;

  constructor(
    readonly socket: net.Socket,
    maxReplyBytes: number,
  ) {
    this.decoder = new FrameDecoder(maxReplyBytes);
  }
}

function wireOrder(calls: Pending[]): Pending[] {
  // Calls sent before first, by their last id; then the rest as they were made.
  return calls.sort((a, b) => {
    if (a.id !== null && b.id !== null) return a.id - b.id;
    if (a.id !== null) return -1;
    if (b.id !== null) return 1;
    return a.order - b.order;
  });
}

function names(fields: readonly string[] | undefined): string[] | undefined {
  return fields === undefined ? undefined : [...fields];
}

function trueOrUndefined(value: boolean | undefined): true | undefined {
  return value === true ? true : undefined;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("This operation was aborted", "AbortError");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// -- the client ---------------------------------------------------------------------------

/**
 * Talks to sessiond. One connection per client, opened on the first call, shared by every
 * concurrent call (pipelined). `await client.close()` when done.
 */
export class Client {
  readonly socketPath: string;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retry: RetryPolicy;
  readonly clientName: string | null;

  private nextId = 1;
  private nextOrder = 1;
  private readonly inFlight = new Map<number, Pending>();
  private backlog: Pending[] = [];
  private conn: Connection | null = null;
  private draining = false;
  private everConnected = false;
  private lostAt: number | null = null;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** User calls not done (streams included): while > 0 the socket keeps Node alive. */
  private active = 0;
  private maxReplyBytes = DEFAULT_MAX_FRAME_BYTES;
  private maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  private info: ServerInfo | null = null;

  constructor(socketPath?: string | ClientOptions, options: ClientOptions = {}) {
    const opts: ClientOptions =
      typeof socketPath === "object" && socketPath !== null ? socketPath : { ...options, socketPath };
    const target = opts.socketPath?.replace(/^unix:\/\//, "");
    this.socketPath = target || defaultSocketPath();
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 2_000;
    this.retry = opts.retry ?? new RetryPolicy();
    this.clientName = opts.clientName ?? null;
  }

  /** What the daemon said in `hello` on the current connection (null before). */
  get serverInfo(): ServerInfo | null {
    return this.info;
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  // -- operations -------------------------------------------------------------------------

  /** Protocol version, server name and version, and every limit of the daemon. */
  hello(options: CallOptions = {}): Promise<ServerInfo> {
    return this.call("hello", { protocol: PROTOCOL_VERSION, client: this.clientName ?? undefined }, toServerInfo, options);
  }

  /** The entry stored under `key`, or null. */
  get(key: string, options: ReadOptions = {}): Promise<Session | null> {
    return this.call("get", { key, agent: options.agent, fields: names(options.fields) }, toSession, options);
  }

  /** The entries of the keys that exist (missing keys are absent from the object). */
  getMany(keys: readonly string[], options: ReadOptions = {}): Promise<Record<string, Session>> {
    return this.call(
      "get_many",
      { keys: [...keys], agent: options.agent, fields: names(options.fields) },
      toSessionMap,
      options,
    );
  }

  /** One page of entries, newest `updatedAt` first; pass `cursor` for the next. */
  list(options: ListOptions = {}): Promise<SessionPage> {
    return this.call(
      "list",
      {
        agent: options.agent,
        prefix: options.prefix,
        active_minutes: options.activeMinutes,
        label: options.label,
        spawned_by: options.spawnedBy,
        limit: options.limit,
        cursor: options.cursor ?? undefined,
        fields: names(options.fields),
      },
      toPage,
      options,
    );
  }

  /** Every matching entry, newest first, one page at a time (see {@link list}). */
  async *iterList(options: IterListOptions = {}): AsyncGenerator<Session, void, undefined> {
    const { pageSize, ...rest } = options;
    let cursor: string | null = null;
    for (;;) {
      const page: SessionPage = await this.list({ ...rest, limit: pageSize, cursor });
      yield* page.items;
      cursor = page.cursor;
      if (cursor === null) return;
    }
  }

  /** Merge `patch` into the entry (creating it); a `null` value deletes a field.
   *  `ifAbsent`: only create (ConflictError if the entry exists). */
  patch(key: string, patch: SessionPatch, options: CreateOptions = {}): Promise<Session> {
    return this.write(
      "patch",
      { key, patch, if_absent: trueOrUndefined(options.ifAbsent), ...writeFields(options) },
      toRequiredSession,
      options,
    );
  }

  /** Merge `patch` only if the entry exists; null if it does not. */
  update(key: string, patch: SessionPatch, options: WriteOptions = {}): Promise<Session | null> {
    return this.write("update", { key, patch, ...writeFields(options) }, toSession, options);
  }

  /** Store `entry` exactly as given (`sessionId` required). */
  replace(key: string, entry: SessionEntry, options: CreateOptions = {}): Promise<Session> {
    return this.write(
      "replace",
      { key, entry, if_absent: trueOrUndefined(options.ifAbsent), ...writeFields(options) },
      toRequiredSession,
      options,
    );
  }

  /** Record the last delivery route; `updatedAt` of an existing entry moves only if `touch`. */
  updateLastRoute(key: string, options: UpdateLastRouteOptions = {}): Promise<Session> {
    return this.write(
      "update_last_route",
      {
        key,
        provider: options.provider ?? undefined,
        to: options.to ?? undefined,
        account_id: options.accountId ?? undefined,
        touch: trueOrUndefined(options.touch),
        ...writeFields(options),
      },
      toRequiredSession,
      options,
    );
  }

  /** Remove the entry; true if it existed. */
  delete(key: string, options: WriteOptions = {}): Promise<boolean> {
    return this.write("delete", { key, ...writeFields(options) }, toBool, options);
  }

  /** Map a message context to its session, creating or renewing it atomically. */
  resolve(ctx: Record<string, unknown>, options: ResolveOptions = {}): Promise<Resolution> {
    return this.write(
      "resolve",
      {
        ctx,
        authorized: options.authorized === false ? false : undefined,
        scope: options.scope,
        main_key: options.mainKey,
        idle_minutes: options.idleMinutes,
        reset_triggers: options.resetTriggers === undefined ? undefined : [...options.resetTriggers],
        ...writeFields(options),
      },
      toResolution,
      options,
    );
  }

  /** Resolve once everything accepted so far is written to the store file(s). */
  flush(options: AgentOptions = {}): Promise<boolean> {
    return this.call("flush", { agent: options.agent }, toBool, {
      ...options,
      timeoutMs: options.timeoutMs ?? FLUSH_TIMEOUT_MS,
    });
  }

  /** The daemon's counters (the wire map as is: snake_case keys). */
  stats(options: AgentOptions = {}): Promise<Record<string, unknown>> {
    return this.call("stats", { agent: options.agent }, toStats, options);
  }

  /** Apply the store's retention rules now (`dryRun`: only say what would go and why). */
  prune(options: AgentOptions & { dryRun?: boolean } = {}): Promise<PruneResult> {
    return this.call("prune", { agent: options.agent, dry_run: trueOrUndefined(options.dryRun) }, toPruneResult, {
      ...options,
      timeoutMs: options.timeoutMs ?? FLUSH_TIMEOUT_MS,
    });
  }

  /**
   * One page of a consistent copy of a store (PROTOCOL.md §6.12): the first call (no
   * `cursor`) takes the copy; the returned cursor pages through that copy whatever changes
   * meanwhile (`seq`: the store's at the copy).
   */
  export(options: AgentOptions & { cursor?: string | null; limit?: number } = {}): Promise<SessionPage> {
    return this.call("export", { agent: options.agent, cursor: options.cursor ?? undefined, limit: options.limit }, toPage, options);
  }

  /**
   * Stage whole entries for one store (PROTOCOL.md §6.13; no `importId` starts an import);
   * with `commit`, every staged entry is stored in one step, durably, exactly as given.
   * Staging is idempotent; a resent commit of an import already applied is refused
   * (`invalid_request`), its entries stored.
   */
  importEntries(
    entries: Record<string, SessionEntry>,
    options: AgentOptions & { importId?: string | null; commit?: boolean } = {},
  ): Promise<ImportResult> {
    return this.call(
      "import",
      { entries, agent: options.agent, import_id: options.importId ?? undefined, commit: trueOrUndefined(options.commit) },
      toImportResult,
      { ...options, timeoutMs: options.timeoutMs ?? (options.commit === true ? FLUSH_TIMEOUT_MS : undefined) },
    );
  }

  /**
   * Read → `fn(session)` → `update` with `ifRevision`, retried (with backoff) on conflict.
   * `fn` returns a patch, or null/undefined for "no change"; it may be async. Resolves to
   * the updated session, the unchanged one, or null if the key does not exist (the
   * original `updateSessionStoreEntry` contract).
   */
  async updateWith(key: string, fn: UpdateFn, options: UpdateWithOptions = {}): Promise<Session | null> {
    const maxAttempts = options.maxAttempts ?? 100;
    const call: CallOptions = { signal: options.signal, timeoutMs: options.timeoutMs };
    for (let attempt = 0; attempt < maxAttempts; attempt += 1) {
      const session = await this.get(key, { ...call, agent: options.agent });
      if (session === null) return null;
      const patch = await fn(session);
      if (patch === null || patch === undefined) return session;
      if (typeof patch !== "object" || Array.isArray(patch)) {
        throw new TypeError(`updateWith callback must return an object, null or undefined, got ${String(patch)}`);
      }
      try {
        return await this.update(key, patch, {
          ...call,
          agent: options.agent,
          durable: options.durable,
          ifRevision: session.revision,
        });
      } catch (error) {
        if (!(error instanceof ConflictError)) throw error;
      }
      options.signal?.throwIfAborted();
      await sleep(this.retry.backoff.delayMs(Math.min(attempt, CONFLICT_BACKOFF_ATTEMPTS)));
    }
    throw new ConflictError(`updateWith(${JSON.stringify(key)}) kept conflicting after ${maxAttempts} attempts`);
  }

  /**
   * Changes under `prefix` in one store (`agent`, default main), as an async iterator of
   * {@link WatchEvent} (`put`, `delete`, `progress`). The watch starts at once; leave the
   * `for await` loop (`break`/`return`) or call `close()` to end it (unwatch is sent).
   * After a reconnect it resumes on its own from the last event it delivered: no gap, no
   * duplicate. Rejects with CompactedError (`oldestSeq`) when `since` is older than the
   * daemon's history: list, then watch from the list's `seq`.
   */
  watch(prefix = "", options: WatchOptions = {}): Watch {
    const stream: StreamState = { events: [], wake: null, ended: false, error: null };
    const request = { prefix, agent: options.agent, since: options.since ?? undefined, fields: names(options.fields) };
    const pending = this.newPending("watch", request, toWatchEvent as Convert<unknown>, options, stream);
    const watch = new Watch(this, pending);
    if (options.signal !== undefined) {
      const signal = options.signal;
      if (signal.aborted) {
        stream.error = abortReason(signal);
        this.finish(pending);
        return watch;
      }
      pending.signal = signal;
      pending.onAbort = () => {
        stream.error = abortReason(signal);
        void watch.return();
      };
      signal.addEventListener("abort", pending.onAbort, { once: true });
    }
    this.submit(pending);
    return watch;
  }

  /** Close the connection; calls in flight fail at once with ClientClosedError, and so do
   *  later calls. Leaves no socket or timer behind. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const calls = [...this.inFlight.values(), ...this.backlog];
    this.inFlight.clear();
    this.backlog = [];
    const error = new ClientClosedError("the client was closed while the call was in flight");
    for (const pending of calls) {
      if (pending.internal) this.clearTimer(pending);
      else this.fail(pending, error);
    }
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) {
      if (conn.connectTimer !== null) clearTimeout(conn.connectTimer);
      conn.socket.destroy();
    }
  }

  // -- internals: calls -------------------------------------------------------------------

  private write<T>(op: string, request: Record<string, unknown>, convert: Convert<T>, options: CallOptions): Promise<T> {
    // A fresh token per call, kept by every resend of it.
    request["request_token"] = newRequestToken();
    return this.call(op, request, convert, options);
  }

  private call<T>(op: string, request: Record<string, unknown>, convert: Convert<T>, options: CallOptions): Promise<T> {
    if (this.closed) return Promise.reject(new ClientClosedError("the client is closed"));
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise<T>((resolve, reject) => {
      const pending = this.newPending(op, request, convert as Convert<unknown>, options, null);
      pending.resolve = resolve as (value: unknown) => void;
      pending.reject = reject;
      if (signal !== undefined) {
        pending.signal = signal;
        pending.onAbort = () => this.aborted(pending, abortReason(signal));
        signal.addEventListener("abort", pending.onAbort, { once: true });
      }
      this.submit(pending);
    });
  }

  private newPending(
    op: string,
    request: Record<string, unknown>,
    convert: Convert<unknown>,
    options: { timeoutMs?: number | undefined },
    stream: StreamState | null,
    internal = false,
  ): Pending {
    const order = this.nextOrder;
    this.nextOrder += 1;
    if (!internal) this.active += 1;
    return {
      op,
      request,
      convert,
      timeoutMs: options.timeoutMs ?? this.timeoutMs,
      order,
      internal,
      stream,
      id: null,
      timer: null,
      done: false,
      resolve: () => undefined,
      reject: () => undefined,
      signal: undefined,
      onAbort: null,
    };
  }

  private submit(pending: Pending): void {
    const conn = this.conn;
    if (conn !== null && conn.ready && !this.draining && this.backlog.length === 0) {
      this.transmit(conn, pending);
      this.reference(conn);
    } else {
      this.backlog.push(pending);
      this.ensureConnecting();
    }
  }

  /** Send `pending` on `conn` now, with the next id. */
  private transmit(conn: Connection, pending: Pending): void {
    const id = this.nextId;
    this.nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
    let frame: Buffer;
    try {
      frame = encodeRequestFrame({ op: pending.op, id, ...pending.request });
    } catch (error) {
      this.fail(pending, error);
      return;
    }
    if (frame.length - FRAME_HEADER_BYTES > this.maxFrameBytes) {
      this.fail(
        pending,
        new FrameTooLargeError(
          `the ${pending.op} request is ${frame.length - FRAME_HEADER_BYTES} bytes, over the daemon's ` +
            `max_frame_bytes (${this.maxFrameBytes}); not sent`,
        ),
      );
      return;
    }
    pending.id = id;
    this.inFlight.set(id, pending);
    this.clearTimer(pending);
    pending.timer = setTimeout(() => this.timedOut(pending), pending.timeoutMs);
    conn.outgoing.push(frame);
    if (!conn.flushScheduled) {
      conn.flushScheduled = true;
      process.nextTick(() => this.flushOutgoing(conn));
    }
  }

  private flushOutgoing(conn: Connection): void {
    conn.flushScheduled = false;
    const frames = conn.outgoing;
    conn.outgoing = [];
    if (this.conn !== conn || frames.length === 0) return;
    conn.socket.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames));
  }

  private clearTimer(pending: Pending): void {
    if (pending.timer !== null) {
      clearTimeout(pending.timer);
      pending.timer = null;
    }
  }

  /** The call is over: no timer, no abort listener, no longer keeps the process alive. */
  private finish(pending: Pending): boolean {
    if (pending.done) return false;
    pending.done = true;
    this.clearTimer(pending);
    if (pending.onAbort !== null && pending.signal !== undefined) {
      pending.signal.removeEventListener("abort", pending.onAbort);
      pending.onAbort = null;
    }
    if (!pending.internal) {
      this.active -= 1;
      if (this.conn !== null) this.reference(this.conn);
    }
    return true;
  }

  private succeed(pending: Pending, value: unknown): void {
    if (this.finish(pending)) pending.resolve(value);
  }

  private fail(pending: Pending, error: unknown): void {
    if (pending.stream !== null) {
      if (pending.stream.error === null) pending.stream.error = error;
      this.finish(pending);
      wake(pending.stream);
      return;
    }
    if (this.finish(pending)) pending.reject(error);
  }

  /** Forget a call wherever it is. Returns whether it was in flight. */
  private forget(pending: Pending): boolean {
    let wasInFlight = false;
    if (pending.id !== null && this.inFlight.get(pending.id) === pending) {
      this.inFlight.delete(pending.id);
      wasInFlight = true;
    }
    const index = this.backlog.indexOf(pending);
    if (index >= 0) this.backlog.splice(index, 1);
    return wasInFlight;
  }

  private aborted(pending: Pending, reason: unknown): void {
    if (pending.done) return;
    const wasInFlight = this.forget(pending);
    this.fail(pending, reason);
    if (wasInFlight && this.conn !== null) {
      this.drop(this.conn, new ConnectionLostError("a call on this connection was aborted"));
    }
  }

  private timedOut(pending: Pending): void {
    pending.timer = null;
    if (pending.done) return;
    this.forget(pending);
    const error = new RequestTimeoutError(`${pending.op} got no reply within ${pending.timeoutMs} ms`);
    if (pending.internal) pending.done = true;
    else this.fail(pending, error);
    if (this.conn !== null) {
      this.drop(this.conn, new ConnectionLostError("an earlier call on this connection timed out"));
    }
  }

  // -- internals: watches -----------------------------------------------------------------

  /** Stop a watch: forget it, and tell the daemon if it is running there. @internal */
  async stopStream(pending: Pending): Promise<void> {
    if (pending.done) return;
    const conn = this.conn;
    const watchId = pending.id;
    const running = this.forget(pending) && conn !== null && conn.ready;
    const stream = pending.stream;
    if (stream !== null) stream.ended = true;
    this.finish(pending);
    if (stream !== null) wake(stream);
    if (running && watchId !== null && !this.closed) {
      try {
        await this.call("unwatch", { watch: watchId }, toBool, {});
      } catch {
        // The watch ends with its connection anyway.
      }
    }
  }

  // -- internals: connections -------------------------------------------------------------

  private ensureConnecting(): void {
    if (this.closed || this.conn !== null || this.reconnectTimer !== null) return;
    if (this.attempts > 0) {
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.connect();
      }, this.retry.backoff.delayMs(this.attempts));
    } else {
      this.connect();
    }
  }

  private connect(): void {
    if (this.closed || this.conn !== null || this.backlog.length === 0) return;
    const socket = net.createConnection({ path: this.socketPath });
    const conn = new Connection(socket, this.maxReplyBytes);
    this.conn = conn;
    conn.connectTimer = setTimeout(() => {
      this.connectFailed(
        conn,
        new DaemonUnavailableError(
          `cannot connect to sessiond at ${this.socketPath}: no answer within ${this.connectTimeoutMs} ms`,
        ),
      );
    }, this.connectTimeoutMs);
    socket.on("connect", () => this.connected(conn));
    socket.on("data", (chunk: Buffer) => this.received(conn, chunk));
    socket.on("error", (error: Error) => {
      conn.socketError = error;
    });
    socket.on("close", () => {
      if (!conn.ready) {
        this.connectFailed(conn, connectError(this.socketPath, conn.socketError));
      } else {
        const reason = conn.socketError?.message ?? "EOF";
        this.lost(conn, conn.dropError ?? new ConnectionLostError(`connection closed: ${reason}`));
      }
    });
  }

  private connectFailed(conn: Connection, error: SessiondError): void {
    if (this.conn !== conn) return;
    this.conn = null;
    if (conn.connectTimer !== null) clearTimeout(conn.connectTimer);
    conn.socket.destroy();
    const now = Date.now();
    this.attempts += 1;
    if (this.lostAt === null) this.lostAt = now;
    if (!RetryPolicy.resendable(error)) {
      this.failAll(this.backlog, error);
      return;
    }
    if (now - this.lostAt < this.retry.budgetMs(this.everConnected)) {
      this.ensureConnecting();
      return;
    }
    this.failAll(this.backlog, error);
  }

  private connected(conn: Connection): void {
    if (this.conn !== conn) return;
    if (conn.connectTimer !== null) {
      clearTimeout(conn.connectTimer);
      conn.connectTimer = null;
    }
    conn.ready = true;
    this.draining = false;
    // hello first, then the backlog in wire order, in one write.
    const hello = this.newPending(
      "hello",
      { protocol: PROTOCOL_VERSION, client: this.clientName ?? undefined },
      toServerInfo as Convert<unknown>,
      { timeoutMs: HELLO_TIMEOUT_MS },
      null,
      true,
    );
    this.transmit(conn, hello);
    const backlog = wireOrder(this.backlog);
    this.backlog = [];
    for (const pending of backlog) this.transmit(conn, pending);
    this.reference(conn);
  }

  /** Close `conn` now; its calls are handled as `error` says (resent or failed). */
  private drop(conn: Connection, error: SessiondError): void {
    if (conn.dropError === null) conn.dropError = error;
    conn.socket.destroy();
    this.lost(conn, conn.dropError);
  }

  private lost(conn: Connection, error: SessiondError): void {
    if (this.conn !== conn) return;
    this.conn = null;
    this.draining = false;
    conn.outgoing = [];
    if (conn.connectTimer !== null) clearTimeout(conn.connectTimer);
    const calls: Pending[] = [];
    for (const pending of this.inFlight.values()) {
      this.clearTimer(pending);
      if (pending.internal) pending.done = true;
      else calls.push(pending);
    }
    this.inFlight.clear();
    const now = Date.now();
    if (this.lostAt === null) this.lostAt = now;
    else this.attempts += 1; // lost again before the daemon answered: back off
    const budget = this.retry.budgetMs(this.everConnected);
    if (!RetryPolicy.resendable(error) || now - this.lostAt >= budget) {
      this.failAll([...calls, ...this.backlog], error);
      return;
    }
    this.backlog = wireOrder([...calls, ...this.backlog]);
    if (this.backlog.length > 0) this.ensureConnecting();
  }

  private failAll(calls: Pending[], error: SessiondError): void {
    for (const pending of calls) this.fail(pending, error);
    this.backlog = this.backlog.filter((pending) => !pending.done);
    this.lostAt = null; // the next call starts a new budget
    this.attempts = 0;
  }

  /** Keep the process alive while calls are waiting; not when the client is idle. */
  private reference(conn: Connection): void {
    const wanted = this.active > 0;
    if (conn.referenced === wanted) return;
    conn.referenced = wanted;
    if (wanted) conn.socket.ref();
    else conn.socket.unref();
  }

  // -- internals: replies -----------------------------------------------------------------

  private received(conn: Connection, chunk: Buffer): void {
    if (this.conn !== conn) return;
    try {
      conn.decoder.feed(chunk, (payload) => {
        if (this.conn === conn) this.onReply(conn, decodeReply(payload));
      });
    } catch (error) {
      if (this.conn === conn) {
        this.drop(conn, error instanceof SessiondError ? error : new ProtocolError(String(error)));
      }
      return;
    }
    if (this.conn === conn && this.draining && this.inFlight.size === 0) {
      this.drop(conn, new ConnectionLostError("the daemon is shutting down"));
    }
  }

  private onReply(conn: Connection, reply: Reply): void {
    if (reply.id === null) {
      // A connection-level error (busy, forbidden, shutting_down, frame_too_large, ...).
      throw replyError(reply) ?? new ProtocolError("a reply without an id");
    }
    const pending = this.inFlight.get(reply.id);
    if (pending === undefined) return; // abandoned (a stopped watch's last events)
    const error = replyError(reply);
    if (error instanceof ShuttingDownError || error instanceof BusyError) {
      // Not applied: nothing more is sent on this connection; resend after reconnecting.
      this.draining = true;
      this.inFlight.delete(reply.id);
      this.clearTimer(pending);
      this.backlog.push(pending);
      return;
    }
    if (pending.stream !== null && error === null) {
      this.streamEvent(pending, pending.stream, reply);
      return;
    }
    this.inFlight.delete(reply.id);
    if (pending.internal) {
      this.helloAnswered(conn, pending, reply, error);
      return;
    }
    if (error !== null) {
      this.fail(pending, error);
      return;
    }
    let value: unknown;
    try {
      value = pending.convert(reply.result, reply.seq);
    } catch (convertError) {
      this.fail(pending, convertError);
      return;
    }
    this.succeed(pending, value);
  }

  private streamEvent(pending: Pending, stream: StreamState, reply: Reply): void {
    const event = toWatchEvent(reply.result, reply.seq);
    this.clearTimer(pending); // started: events come when changes do
    pending.request["since"] = event.seq; // a resend resumes after it
    stream.events.push(event);
    if (event.type === "end") {
      stream.ended = true;
      if (reply.id !== null) this.inFlight.delete(reply.id);
      this.finish(pending);
    }
    wake(stream);
  }

  private helloAnswered(conn: Connection, pending: Pending, reply: Reply, error: SessiondError | null): void {
    this.clearTimer(pending);
    pending.done = true;
    if (error !== null) {
      throw new ProtocolError(`the daemon refused this client's hello: ${error.message}`);
    }
    const info = toServerInfo(reply.result, reply.seq);
    this.info = info;
    this.maxReplyBytes = info.maxReplyBytes;
    this.maxFrameBytes = info.maxFrameBytes;
    conn.decoder.maxFrameBytes = info.maxReplyBytes;
    // The daemon answered: this connection works, and the reconnect budget resets.
    this.everConnected = true;
    this.lostAt = null;
    this.attempts = 0;
  }
}

function wake(stream: StreamState): void {
  const waiter = stream.wake;
  stream.wake = null;
  if (waiter !== null) waiter();
}

function writeFields(options: WriteOptions): Record<string, unknown> {
  return {
    agent: options.agent,
    if_revision: options.ifRevision,
    durable: trueOrUndefined(options.durable),
  };
}

function connectError(socketPath: string, error: Error | null): SessiondError {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const reason = error?.message ?? "connection closed";
  if (code === "EACCES" || code === "EPERM") {
    return new ForbiddenError(`cannot open ${socketPath}: ${reason}`, "forbidden");
  }
  return new DaemonUnavailableError(`cannot connect to sessiond at ${socketPath}: ${reason}`);
}

// -- watch --------------------------------------------------------------------------------

/**
 * A running watch: `for await (const event of watch) { ... }`. Leaving the loop ends it
 * (unwatch is sent); so does `close()`. `position` is the seq of the last event delivered:
 * save it to watch again later from where this one stopped.
 */
export class Watch implements AsyncIterableIterator<WatchEvent> {
  /** The seq of the last event delivered (null before the first). */
  position: number | null = null;
  private finished = false;

  /** @internal */
  constructor(
    private readonly client: Client,
    private readonly pending: Pending,
  ) {}

  [Symbol.asyncIterator](): Watch {
    return this;
  }

  async next(): Promise<IteratorResult<WatchEvent, undefined>> {
    const stream = this.pending.stream as StreamState;
    for (;;) {
      if (this.finished) return { done: true, value: undefined };
      const event = stream.events.shift();
      if (event !== undefined) {
        if (event.type === "end") {
          this.finished = true;
          return { done: true, value: undefined };
        }
        this.position = event.seq;
        return { done: false, value: event as WatchEvent };
      }
      if (stream.error !== null) {
        this.finished = true;
        throw stream.error;
      }
      if (stream.ended) {
        this.finished = true;
        return { done: true, value: undefined };
      }
      await new Promise<void>((resolve) => {
        stream.wake = resolve;
      });
    }
  }

  /** End the watch (what `break` in a `for await` loop calls). */
  async return(): Promise<IteratorResult<WatchEvent, undefined>> {
    const stream = this.pending.stream as StreamState;
    const error = stream.error;
    await this.client.stopStream(this.pending);
    stream.events.length = 0;
    if (error !== null && !this.finished) {
      // An abort: the pending next() (if any) sees the reason.
      stream.error = error;
      wake(stream);
      return { done: true, value: undefined };
    }
    this.finished = true;
    return { done: true, value: undefined };
  }

  /** End the watch. */
  async close(): Promise<void> {
    await this.return();
  }
}
