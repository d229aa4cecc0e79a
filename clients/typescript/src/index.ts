/**
 * sessiond-client: talk to the sessiond session store from Node bot processes.
 *
 * ```ts
 * import { Client } from "sessiond-client";
 * const sessions = new Client(); // $SESSIOND_SOCKET
 * const s = await sessions.patch("agent:main:main", { lastTo: "+15551234567" });
 * await sessions.close();
 * ```
 *
 * The gateway-shaped functions (`updateSessionStoreEntry`, `updateLastRoute`, ...) are in
 * `sessiond-client/gateway`.
 */
export {
  Client,
  Watch,
  type AgentOptions,
  type CallOptions,
  type ClientOptions,
  type CreateOptions,
  type IterListOptions,
  type ListOptions,
  type ReadOptions,
  type ResolveOptions,
  type Scope,
  type UpdateFn,
  type UpdateLastRouteOptions,
  type UpdateWithOptions,
  type WatchOptions,
  type WriteOptions,
} from "./client.js";
export {
  BusyError,
  ClientClosedError,
  CompactedError,
  ConflictError,
  ConnectionLostError,
  DaemonUnavailableError,
  ERROR_CODES,
  ForbiddenError,
  FrameTooLargeError,
  InternalError,
  InvalidRequestError,
  LaggedError,
  NotFoundError,
  ProtocolError,
  RequestTimeoutError,
  ServerError,
  SessiondError,
  ShuttingDownError,
  TransportError,
  UnavailableError,
  UnknownOpError,
  serverErrorFor,
} from "./errors.js";
export { defaultSocketPath, defaultStateDir } from "./locations.js";
export { PROTOCOL_VERSION } from "./protocol.js";
export {
  Session,
  type ImportResult,
  type PrunedEntry,
  type PruneResult,
  type Resolution,
  type ServerInfo,
  type SessionEntry,
  type SessionPage,
  type SessionPatch,
  type WatchEvent,
} from "./results.js";
export { Backoff, RetryPolicy } from "./retry.js";
